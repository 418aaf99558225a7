"""nslab: a small laboratory of network namespaces for connwatch's system tests.

One `Lab` is four namespaces wired like this (s = the lab's index, 1..250):

    D (connwatchd) eth0 10.203.s.1/30 --- d0 10.203.s.2/30  R (router)
                                          p0 10.203.s.5/30 --- eth0 10.203.s.6/30  P (the peer)
                                          h0 10.203.s.9/30 --- eth0 10.203.s.10/30 H (a healthy peer)

Every address lives inside these namespaces; each namespace routes only
10.203.s.0/24, so no packet can leave them (the host's resolver and networks
are unreachable from D). Every veth end has a fixed MAC and every neighbour is
a permanent entry: no ARP runs, so a dead link is silent (no ICMP "host
unreachable" from a failed neighbour resolution) unless a test adds a route
that makes R answer with ICMP. See docs/FAULTS.md.

Also here: processes started in a namespace (their output captured with the
arrival time of each line), an HTTP client and raw sockets created inside a
namespace (a helper thread calls setns(2); a socket keeps the namespace it was
created in), a packet capture with kernel timestamps, logfmt and Prometheus
text parsers, and a registry that removes every namespace and ends every
process this run started, also on SIGINT/SIGTERM. Namespaces left by a run
that was SIGKILLed are removed by the next run (their names carry the PID).

Only the Python standard library is used.
"""

import calendar
import ctypes
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD on x86_64 and arm64: struct timespec, CLOCK_REALTIME.
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

RUN_PREFIX = "cwst"
RUN_ID = f"{RUN_PREFIX}{os.getpid()}"

_libc = ctypes.CDLL(None, use_errno=True)


def now_ns():
    return time.time_ns()


class Failure(Exception):
    """A check failed: the message says what was expected and what was seen."""


def ms(ns):
    return ns / 1e6


# ---------------------------------------------------------------------------
# Registry of what this run created, torn down at exit and on signals.

class _Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.namespaces = []
        self.procs = []

    def add_ns(self, name):
        with self.lock:
            self.namespaces.append(name)

    def drop_ns(self, name):
        with self.lock:
            if name in self.namespaces:
                self.namespaces.remove(name)

    def add_proc(self, proc):
        with self.lock:
            self.procs.append(proc)

    def cleanup(self):
        with self.lock:
            procs, self.procs = self.procs, []
            namespaces, self.namespaces = self.namespaces, []
        for p in procs:
            if p.poll() is None:
                try:
                    p.kill()  # by its own pid, never by name
                except OSError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


REGISTRY = _Registry()


def install_cleanup_handlers():
    def on_signal(signum, frame):
        sys.stderr.write(f"\nsystem tests: signal {signum}: removing namespaces and processes\n")
        REGISTRY.cleanup()
        os._exit(128 + signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def remove_stale_namespaces():
    """Removes namespaces of earlier runs whose process is gone (a SIGKILLed run)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    removed = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{RUN_PREFIX}(\d+)-", name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, check=False)
        removed.append(name)
    return removed


def namespaces_available():
    """("", ) when a namespace can be created, else why not."""
    probe = f"{RUN_ID}-probe"
    try:
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if r.returncode != 0:
        return f"'ip netns add' failed (uid {os.getuid()}): {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return ""


def run(argv, check=True, timeout=20):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Failure(f"command failed ({r.returncode}): {' '.join(argv)}: {r.stderr.strip()}")
    return r


# ---------------------------------------------------------------------------
# Sockets inside a namespace.

def in_netns(ns, fn):
    """Runs fn() on a fresh thread that has joined namespace `ns`; returns its value."""
    box = {}

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns {ns}: {os.strerror(e)}")
                box["value"] = fn()
            finally:
                os.close(fd)
        except BaseException as e:  # handed to the caller
            box["error"] = e
    t = threading.Thread(target=body, name=f"setns-{ns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class _NsWorker:
    """A thread that joined one namespace and creates sockets there on request,
    so that polling /metrics does not start a thread per request."""

    def __init__(self, ns):
        import queue
        self.ns = ns
        self.requests = queue.Queue()
        self.ready = threading.Event()
        self.error = None
        threading.Thread(target=self._run, name=f"ns-{ns}", daemon=True).start()
        self.ready.wait()
        if self.error:
            raise self.error

    def _run(self):
        try:
            fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns {self.ns}: {os.strerror(e)}")
            finally:
                os.close(fd)
        except OSError as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        while True:
            item = self.requests.get()
            if item is None:
                return  # the thread, and its hold on the namespace, end
            fn, box, done = item
            try:
                box["value"] = fn()
            except BaseException as e:  # handed to the caller
                box["error"] = e
            done.set()

    def call(self, fn):
        box, done = {}, threading.Event()
        self.requests.put((fn, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]


_workers = {}
_workers_lock = threading.Lock()


def forget_ns(ns):
    """Ends the socket worker of a namespace that is being deleted."""
    with _workers_lock:
        worker = _workers.pop(ns, None)
    if worker is not None:
        worker.requests.put(None)


def ns_socket(ns, family, kind, proto=0):
    """A socket created inside namespace `ns` (for namespaces that are never
    recreated under the same name: the worker keeps the first one)."""
    with _workers_lock:
        worker = _workers.get(ns)
        if worker is None:
            worker = _workers[ns] = _NsWorker(ns)
    return worker.call(lambda: socket.socket(family, kind, proto))


class HttpResponse:
    def __init__(self, status, body):
        self.status = status
        self.body = body


def http_get(ns, port, path, timeout=3.0):
    s = ns_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return HttpResponse(status, body.decode(errors="replace"))


# ---------------------------------------------------------------------------
# Parsers.

_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """One scrape of /metrics: value(name, **labels) and sum(name, **labels)."""

    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, labels dict, float)
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _METRIC_RE.match(line)
            if not m:
                continue
            labels = dict(_LABEL_RE.findall(m.group(3) or ""))
            try:
                value = float(m.group(4))
            except ValueError:
                continue
            self.samples.append((m.group(1), labels, value))

        self._index = {}  # (name, target) and (name, None) -> [(labels, value)]
        for n, l, v in self.samples:
            self._index.setdefault((n, None), []).append((l, v))
            if "target" in l:
                self._index.setdefault((n, l["target"]), []).append((l, v))

    def select(self, name, **labels):
        candidates = self._index.get((name, labels.get("target")), [])
        return [(l, v) for l, v in candidates if all(l.get(k) == want for k, want in labels.items())]

    def value(self, name, **labels):
        """The one sample's value, or None when absent."""
        found = self.select(name, **labels)
        return found[0][1] if found else None

    def sum(self, name, **labels):
        return sum(v for _, v in self.select(name, **labels))

    def by_reason(self, name, target, **labels):
        """{reason: count} of one target (`endpoint=...` for one endpoint of a
        target with addresses: all; endpoint=None: a series without one)."""
        return {l["reason"]: int(v) for l, v in self.select(name, target=target, **labels)
                if "reason" in l}


_LOGFMT_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    out = {}
    for k, v in _LOGFMT_RE.findall(line):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[k] = v
    return out


def parse_ts_ns(ts):
    """'2026-11-25T14:46:23.254Z' -> ns since the epoch."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$", ts)
    if not m:
        raise ValueError(f"bad timestamp {ts!r}")
    secs = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    frac = m.group(7) or "0"
    return secs * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


# ---------------------------------------------------------------------------
# Processes.

class Proc:
    """A child process; its stdout and stderr are read line by line into
    `lines` as (arrival ns, text), and copied to a log file."""

    def __init__(self, argv, log_path, name):
        self.name = name
        self.argv = argv
        self.log = open(log_path, "a", buffering=1)
        self.log.write(f"# {' '.join(argv)}\n")
        # setpriv --pdeathsig: the child dies with the thread that started it,
        # so even a SIGKILLed harness leaves no process behind.
        self.popen = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--"] + argv,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        REGISTRY.add_proc(self.popen)
        self.pid = self.popen.pid
        self.lines = []
        self.cv = threading.Condition()
        self.eof = False
        try:
            import fcntl
            fcntl.fcntl(self.popen.stdout.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ: 1 MiB
        except OSError:
            pass
        self.reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self.reader.start()

    def _read(self):
        fd = self.popen.stdout.fileno()
        partial = b""
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                chunk = b""
            t = now_ns()
            if not chunk:
                break
            partial += chunk
            *complete, partial = partial.split(b"\n")
            if complete:
                texts = [c.decode(errors="replace") for c in complete]
                with self.cv:
                    self.lines.extend((t, x) for x in texts)
                    self.cv.notify_all()
                for x in texts:
                    self.log.write(x + "\n")
        with self.cv:
            if partial:
                self.lines.append((now_ns(), partial.decode(errors="replace")))
            self.eof = True
            self.cv.notify_all()

    def alive(self):
        return self.popen.poll() is None

    def wait_line(self, pred, timeout, start=0):
        """The first line from index `start` for which pred(text) holds, or None."""
        deadline = time.monotonic() + timeout
        with self.cv:
            i = start
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i][1]):
                        return self.lines[i][1]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cv.wait(left)

    def snapshot(self):
        with self.cv:
            return list(self.lines)

    def tail(self, n=40):
        return "\n".join(x for _, x in self.snapshot()[-n:])

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signals the process and waits; returns its exit code (None if it had to be killed)."""
        if self.alive():
            os.kill(self.pid, sig)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                return None
        return self.popen.returncode

    def close(self):
        if self.alive():
            self.popen.kill()
        self.popen.wait()
        self.reader.join(timeout=5)
        self.log.close()


def wait_for(cond, timeout, what, seen=lambda: "", poll=0.005):
    """Polls cond() until it returns a true value or `timeout` s pass; the pause
    between polls is not synchronisation, the deadline is. Raises Failure with
    `what` (the expectation) and seen() (the last observation)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:g}s waiting for {what}; saw: {seen()}")
        time.sleep(poll)


# ---------------------------------------------------------------------------
# The namespaces.

class Lab:
    """Four namespaces (see the module comment) for one scenario."""

    def __init__(self, index, workdir):
        if not 1 <= index <= 250:
            raise ValueError("lab index out of range")
        self.s = index
        self.workdir = workdir
        base = f"{RUN_ID}-{index}"
        self.D, self.R, self.P, self.H = (base + "d", base + "r", base + "p", base + "h")
        self.d_ip = f"10.203.{index}.1"
        self.r_d_ip = f"10.203.{index}.2"
        self.r_p_ip = f"10.203.{index}.5"
        self.p_ip = f"10.203.{index}.6"
        self.r_h_ip = f"10.203.{index}.9"
        self.h_ip = f"10.203.{index}.10"
        self.subnet = f"10.203.{index}.0/24"
        self.log_path = os.path.join(workdir, "lab.log")

    def mac(self, link, side):
        return f"02:cb:{self.s:02x}:{link:02x}:{side:02x}:01"

    def ip(self, ns, *args, check=True):
        argv = ["ip", "-n", ns] + list(args)
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {' '.join(argv)}\n")
        return run(argv, check=check)

    def sysctl(self, ns, key, value):
        run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])

    def _add_ns(self, ns):
        REGISTRY.add_ns(ns)
        run(["ip", "netns", "add", ns])
        self.ip(ns, "link", "set", "lo", "up")

    def create(self):
        for ns in (self.D, self.R, self.P, self.H):
            self._add_ns(ns)
        self.sysctl(self.R, "net.ipv4.ip_forward", 1)
        # D <-> R
        self.ip(self.D, "link", "add", "eth0", "address", self.mac(1, 1), "type", "veth",
                "peer", "name", "d0", "netns", self.R, "address", self.mac(1, 2))
        self._addr(self.D, "eth0", self.d_ip)
        self._addr(self.R, "d0", self.r_d_ip)
        self.ip(self.D, "route", "add", self.subnet, "via", self.r_d_ip)
        self.ip(self.D, "neigh", "replace", self.r_d_ip, "lladdr", self.mac(1, 2), "dev", "eth0",
                "nud", "permanent")
        self.ip(self.R, "neigh", "replace", self.d_ip, "lladdr", self.mac(1, 1), "dev", "d0",
                "nud", "permanent")
        self._wire_peer()
        # R <-> H
        self.ip(self.R, "link", "add", "h0", "address", self.mac(3, 2), "type", "veth",
                "peer", "name", "eth0", "netns", self.H, "address", self.mac(3, 1))
        self._addr(self.R, "h0", self.r_h_ip)
        self._addr(self.H, "eth0", self.h_ip)
        self.ip(self.H, "route", "add", self.subnet, "via", self.r_h_ip)
        self.ip(self.R, "neigh", "replace", self.h_ip, "lladdr", self.mac(3, 1), "dev", "h0",
                "nud", "permanent")
        self.ip(self.H, "neigh", "replace", self.r_h_ip, "lladdr", self.mac(3, 2), "dev", "eth0",
                "nud", "permanent")

    def _addr(self, ns, dev, ip):
        self.ip(ns, "addr", "add", f"{ip}/30", "dev", dev)
        self.ip(ns, "link", "set", dev, "up")

    def _wire_peer(self):
        """R <-> P: the link the faults are made on."""
        self.ip(self.R, "link", "add", "p0", "address", self.mac(2, 2), "type", "veth",
                "peer", "name", "eth0", "netns", self.P, "address", self.mac(2, 1))
        self._addr(self.R, "p0", self.r_p_ip)
        self._addr(self.P, "eth0", self.p_ip)
        self.ip(self.P, "route", "add", self.subnet, "via", self.r_p_ip)
        self.ip(self.R, "neigh", "replace", self.p_ip, "lladdr", self.mac(2, 1), "dev", "p0",
                "nud", "permanent")
        self.ip(self.P, "neigh", "replace", self.r_p_ip, "lladdr", self.mac(2, 2), "dev", "eth0",
                "nud", "permanent")

    def delete_peer_ns(self):
        """Deletes namespace P's name and the R <-> P link (both veth ends go at
        once). NOTE: the namespace itself lives on, unnamed, while anything holds
        it: a TCP socket orphaned in FIN_WAIT1 behind a dead link does, for up to
        a minute. A new namespace of the same name can be made right away."""
        run(["ip", "netns", "del", self.P])
        REGISTRY.drop_ns(self.P)
        self.ip(self.R, "link", "del", "p0")

    def recreate_peer_ns(self):
        self._add_ns(self.P)
        self._wire_peer()

    def destroy(self):
        for ns in (self.D, self.R, self.P, self.H):
            forget_ns(ns)
            run(["ip", "netns", "del", ns], check=False)
            REGISTRY.drop_ns(ns)


# ---------------------------------------------------------------------------
# connwatchd and connwatch-peer.

class Daemon:
    """connwatchd in namespace D, serving HTTP on 127.0.0.1:9798 there."""

    PORT = 9798

    def __init__(self, binary, lab, workdir, config, nofile=None, extra=(), name="connwatchd"):
        self.lab = lab
        self.ns = lab.D
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        argv = ["ip", "netns", "exec", self.ns]
        if nofile is not None:
            soft_hard = nofile if ":" in str(nofile) else f"{nofile}:{nofile}"
            argv += ["prlimit", f"--nofile={soft_hard}", "--"]
        argv += [binary, f"--config.file={self.config_path}", "--storage.path=",
                 f"--web.listen-address=127.0.0.1:{self.PORT}", "--log.level=info"] + list(extra)
        self.argv = argv
        self._parse_lock = threading.Lock()
        self._parsed_upto = 0
        self._events = []
        self.proc = Proc(argv, os.path.join(workdir, f"{name}.log"), name)
        line = self.proc.wait_line(lambda l: "msg=listening" in l or "level=error" in l, 10)
        if line is None or "msg=listening" not in line:
            raise Failure(f"connwatchd did not start: expected a 'msg=listening' line, got:\n"
                          f"{self.proc.tail()}")
        # NOTE: HTTP is served before the event loop runs; until it does,
        # /metrics answers 503 ("snapshot unavailable"). /-/healthy says when
        # the loop runs.
        wait_for(lambda: self._healthy(), 10, "/-/healthy to answer 200", self.proc.tail)

    def _healthy(self):
        try:
            return self.get("/-/healthy", timeout=1).status == 200
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid

    def get(self, path, timeout=3.0):
        return http_get(self.ns, self.PORT, path, timeout)

    def metrics(self):
        r = self.get("/metrics")
        if r.status != 200:
            raise Failure(f"/metrics answered {r.status}")
        return Metrics(r.body)

    def try_metrics(self):
        try:
            return self.metrics()
        except (OSError, Failure):
            return None

    def targets(self):
        r = self.get("/api/v1/targets")
        if r.status != 200:
            raise Failure(f"/api/v1/targets answered {r.status}")
        return {t["name"]: t for t in json.loads(r.body)["data"]["targets"]}

    def connections(self):
        """/api/v1/targets by (name, endpoint): one entry per connection
        (endpoint None for a target with addresses: first)."""
        r = self.get("/api/v1/targets")
        if r.status != 200:
            raise Failure(f"/api/v1/targets answered {r.status}")
        return {(t["name"], t.get("endpoint")): t for t in json.loads(r.body)["data"]["targets"]}

    def _parsed(self):
        """Every event line so far, parsed once, with 'ts_ns' and 'arrival_ns'."""
        lines = self.proc.snapshot()
        with self._parse_lock:
            for arrival, line in lines[self._parsed_upto:]:
                if " event=" in line:
                    e = parse_logfmt(line)
                    e["ts_ns"] = parse_ts_ns(e["ts"])
                    e["arrival_ns"] = arrival
                    self._events.append(e)
            self._parsed_upto = len(lines)
            return list(self._events)

    def events(self, kind=None, target=None, since_ns=0):
        """Parsed event lines of the log (optionally of one kind and target, and
        with ts >= since_ns)."""
        return [e for e in self._parsed()
                if (kind is None or e.get("event") == kind)
                and (target is None or e.get("target") == target)
                and e["ts_ns"] >= since_ns]

    def wait_events(self, desc, pred, count, timeout):
        """Waits until `count` events satisfy pred; returns them (log order)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self._parsed() if pred(e)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self.proc.alive():
                last = self._parsed()[-6:]
                seen = "; ".join(f"{e.get('event')} {e.get('target')} {e.get('reason', '')}"
                                 for e in last) or "no events"
                state = "" if self.proc.alive() else f" (connwatchd exited: {self.proc.popen.poll()})"
                raise Failure(f"timed out after {timeout:g}s waiting for {count} x {desc}; "
                              f"saw {len(found)}{state}; last events: {seen}")
            with self.proc.cv:
                n = len(self.proc.lines)
                self.proc.cv.wait_for(lambda: len(self.proc.lines) > n or self.proc.eof,
                                      min(left, 0.5))

    def wait_event(self, desc, pred, timeout):
        return self.wait_events(desc, pred, 1, timeout)[0]

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            fields = dict(l.split(":", 1) for l in f if ":" in l)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def wait_metric(self, desc, pred, timeout, poll=0.005):
        """Scrapes until pred(Metrics) holds; returns that scrape."""
        last = [None]

        def cond():
            m = self.try_metrics()
            last[0] = m
            return m if (m is not None and pred(m)) else None
        return wait_for(cond, timeout, desc,
                        lambda: "no scrape" if last[0] is None else _excerpt(last[0].text), poll)


def _excerpt(text, pattern="connwatch_target_(up|connects|disconnects|connect_failures)"):
    lines = [l for l in text.splitlines() if re.match(pattern, l)]
    return "\n  " + "\n  ".join(lines[:30]) + ("\n  ..." if len(lines) > 30 else "")


class Peer:
    """connwatch-peer in a namespace, driven through its control socket."""

    def __init__(self, binary, ns, workdir, listen, mode="hold", extra=(), name="peer",
                 wait_ready=True):
        self.ns = ns
        self.control = os.path.join(workdir, f"{name}.ctl")
        self.ready = os.path.join(workdir, f"{name}.ready")
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        argv = ["ip", "netns", "exec", ns, binary, "--mode", mode, "--control", self.control,
                "--ready-file", self.ready] + list(extra)
        for l in ([listen] if isinstance(listen, str) else listen):
            argv += ["--listen", l]
        self.proc = Proc(argv, os.path.join(workdir, f"{name}.log"), name)
        if wait_ready:
            wait_for(lambda: os.path.exists(self.ready) or not self.proc.alive(), 10,
                     f"{name} to write its ready file", self.proc.tail)
            if not self.proc.alive():
                raise Failure(f"{name} exited: {self.proc.tail()}")

    def ctl(self, command, timeout=10.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.control)
            s.sendall(command.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        finally:
            s.close()
        reply = data.decode().strip()
        if not reply.startswith("ok"):
            raise Failure(f"peer command {command!r}: expected 'ok ...', got {reply!r}")
        return reply

    def stats(self):
        reply = self.ctl("stats")
        return {k: v for k, v in (w.split("=", 1) for w in reply.split()[1:] if "=" in w)}

    def open_connections(self):
        return int(self.stats()["open"])


# ---------------------------------------------------------------------------
# Packet capture.

class Packet:
    """A TCP segment, or an ICMP error (icmp_type set; sport/dport then are
    the ports of the TCP segment it quotes)."""
    __slots__ = ("t_ns", "outgoing", "src", "sport", "dst", "dport", "flags", "window", "length",
                 "icmp_type", "icmp_code")

    def __init__(self, **kw):
        self.icmp_type = None
        self.icmp_code = None
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def syn(self):
        return self.icmp_type is None and bool(self.flags & 0x02) and not self.flags & 0x10

    @property
    def rst(self):
        return bool(self.flags & 0x04)

    def __repr__(self):
        names = "".join(c for c, bit in zip("FSRPAU", (1, 2, 4, 8, 16, 32)) if self.flags & bit)
        return (f"{'out' if self.outgoing else 'in'} {self.src}:{self.sport}>{self.dst}:{self.dport}"
                f" [{names}] win={self.window} len={self.length}")


def _attach_fin_filter(sock, src_ip):
    """Classic BPF: IPv4, TCP, source src_ip, FIN set (IP header without options)."""
    ip = struct.unpack("!I", socket.inet_aton(src_ip))[0]
    prog = [
        (0x28, 0, 0, 12),      # ldh [12]: ethertype
        (0x15, 0, 7, 0x0800),  # IPv4?
        (0x30, 0, 0, 23),      # ldb [23]: protocol
        (0x15, 0, 5, 6),       # TCP?
        (0x20, 0, 0, 26),      # ld [26]: source address
        (0x15, 0, 3, ip),
        (0x30, 0, 0, 47),      # ldb [47]: TCP flags
        (0x45, 0, 1, 0x01),    # FIN?
        (0x06, 0, 0, 256),     # accept 256 bytes
        (0x06, 0, 0, 0),       # drop
    ]
    insns = b"".join(struct.pack("HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER copies the program


class Capture:
    """TCP/IPv4 packets seen on one interface of a namespace, with the kernel's
    CLOCK_REALTIME timestamp of each (the clock connwatchd's ts= uses)."""

    def __init__(self, ns, ifname, fin_from=None):
        """fin_from: keep only TCP segments with FIN from this IPv4 address (a
        kernel filter, so a burst of other packets costs the harness nothing)."""
        def make():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            if fin_from:
                _attach_fin_filter(s, fin_from)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind((ifname, ETH_P_ALL))
            return s
        self.sock = in_netns(ns, make)
        self.sock.settimeout(0.02)
        self.packets = []
        self.idle_passes = 0  # recv timeouts: the socket's queue was empty
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, name=f"capture-{ns}", daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, anc, _, addr = self.sock.recvmsg(256, socket.CMSG_SPACE(16))
            except socket.timeout:
                with self.lock:
                    self.idle_passes += 1
                continue
            except OSError:
                break
            t = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    t = sec * 1_000_000_000 + nsec
            if t is None:
                t = now_ns()
            if len(data) < 14 + 20 or data[12:14] != b"\x08\x00":
                continue
            ip = data[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] == 1 and len(ip) >= ihl + 8 + 20 + 4:
                inner = ip[ihl + 8:]
                inner_ihl = (inner[0] & 0x0F) * 4
                if inner[9] == 6 and len(inner) >= inner_ihl + 4:
                    sport, dport = struct.unpack("!HH", inner[inner_ihl:inner_ihl + 4])
                    p = Packet(t_ns=t, outgoing=addr[2] == PACKET_OUTGOING,
                               src=socket.inet_ntoa(ip[12:16]), dst=socket.inet_ntoa(ip[16:20]),
                               sport=sport, dport=dport, flags=0, window=0, length=0,
                               icmp_type=ip[ihl], icmp_code=ip[ihl + 1])
                    with self.lock:
                        self.packets.append(p)
                continue
            if ip[9] != 6 or len(ip) < ihl + 16:
                continue
            total = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:]
            sport, dport = struct.unpack("!HH", tcp[:4])
            doff = (tcp[12] >> 4) * 4
            p = Packet(t_ns=t, outgoing=addr[2] == PACKET_OUTGOING,
                       src=socket.inet_ntoa(ip[12:16]), sport=sport,
                       dst=socket.inet_ntoa(ip[16:20]), dport=dport, flags=tcp[13],
                       window=struct.unpack("!H", tcp[14:16])[0], length=total - ihl - doff)
            with self.lock:
                self.packets.append(p)

    def select(self, pred=lambda p: True):
        with self.lock:
            return [p for p in self.packets if pred(p)]

    def sync(self, timeout=3.0):
        """Returns once every packet the kernel queued before the call has been
        parsed (the thread then found its queue empty)."""
        with self.lock:
            start = self.idle_passes
        wait_for(lambda: self.idle_passes >= start + 2 or not self.thread.is_alive(), timeout,
                 "the capture to catch up")

    def wait_select(self, pred, count, timeout=3.0, what="packets"):
        """select(pred) once it holds `count` packets: the capture thread may
        lag behind the daemon's log by a few ms."""
        found = []

        def enough():
            found[:] = self.select(pred)
            return len(found) >= count
        wait_for(enough, timeout, f"{count} {what} in the capture", lambda: f"{len(found)}")
        return found

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()
