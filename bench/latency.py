#!/usr/bin/env python3
"""Detection latency of connwatchd on loopback: how long after a peer closes
(FIN), resets (RST) or is killed connwatchd logs the disconnect.

    ulimit -n 20000   # 10,000 held connections need 10,000 fds in each process
    bench/latency.py --daemon build/connwatchd [--counts 1,1000,10000] [--rounds 200]

For each count N of held connections it starts a small peer (this file with
--serve: one epoll loop in Python, listening on 127.0.0.1) and connwatchd
with N targets. Every target connects from its own source address
(127.1.x.y), so the peer knows which target each connection belongs to. Then:

  single FIN / RST  `rounds` times: the peer closes one connection connwatchd
                    reports up, chosen at random, and stamps CLOCK_REALTIME
                    just before close();
                    the latency is connwatchd's event time minus that stamp.
  all FIN / all RST (N > 1) the peer closes every connection in one loop,
                    stamping each; latency per connection as above, and the
                    time until the last one was reported, counted from the
                    first close.
  kill              SIGKILL of the peer holding all N; the kernel closes its
                    sockets (FIN); time from kill() until each was reported.

connwatchd's event time is read two ways:
  ts     the ts= field of its event line: CLOCK_REALTIME rounded to the
         millisecond (so single values are +-0.5 ms). If the log carries a
         ts_ns= field (nanoseconds), that is used instead.
  line   when this script read the line from connwatchd's stderr pipe
         (CLOCK_REALTIME, microseconds): an upper bound that adds the write,
         the pipe and this process's wake-up to the detection.

Output: a table of p50 / p99 / max per case, and --json FILE for the raw
figures. Only loopback is used; no root needed (ulimit -n permitting).
"""

import argparse
import json
import os
import random
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------
# The peer (--serve): holds connections, closes them on command.

def serve(port):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(4096)
    lst.setblocking(False)
    ep = select.epoll()
    ep.register(lst.fileno(), select.EPOLLIN)
    stdin = sys.stdin.fileno()
    ep.register(stdin, select.EPOLLIN)
    by_fd = {}   # fd -> (ip, socket)
    by_ip = {}   # client ip -> fd
    linger0 = struct.pack("ii", 1, 0)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    pending = b""

    def close(fd, how):
        ip, s = by_fd.pop(fd)
        by_ip.pop(ip, None)
        if how == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
        t = time.time_ns()
        s.close()  # epoll forgets a closed fd by itself
        return ip, t

    while True:
        for fd, ev in ep.poll():
            if fd == lst.fileno():
                while True:
                    try:
                        s, addr = lst.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    old = by_ip.get(addr[0])
                    if old is not None:
                        close(old, "fin")
                    by_fd[s.fileno()] = (addr[0], s)
                    by_ip[addr[0]] = s.fileno()
                    ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
            elif fd == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    return
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    words = line.decode().split()
                    if not words:
                        continue
                    if words[0] == "count":
                        out.write(f"count {len(by_fd)}\n")
                    elif words[0] == "close":
                        if words[1] not in by_ip:
                            out.write("none\n")
                        else:
                            ip, t = close(by_ip[words[1]], words[2])
                            out.write(f"closed {ip} {t}\n")
                    elif words[0] == "closeall":
                        closed = [close(fd, words[1]) for fd in list(by_fd)]
                        out.write("closedall " + " ".join(f"{ip}={t}" for ip, t in closed) + "\n")
                    out.flush()
            elif fd in by_fd:
                # connwatchd closed its end (or sent bytes: drain them).
                try:
                    data = by_fd[fd][1].recv(65536)
                except OSError:
                    data = b""
                if not data:
                    ip, s = by_fd.pop(fd)
                    by_ip.pop(ip, None)
                    s.close()


# ---------------------------------------------------------------------------
# The orchestrator.

def source_ip(i):
    return f"127.1.{i // 250}.{i % 250 + 1}"


def target_name(i):
    return f"b{i:05d}"


def side_ip(i):
    return f"127.2.{i // 250}.{i % 250 + 1}"


def side_name(i):
    return f"s{i:05d}"


_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d+)Z")


def ts_to_ns(ts):
    import calendar
    m = _TS.match(ts)
    secs = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    return secs * 1_000_000_000 + int(m.group(7).ljust(9, "0")[:9])


class Daemon:
    """connwatchd, its event lines parsed as they arrive."""

    def __init__(self, binary, config_path, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary, f"--config.file={config_path}", "--storage.path=",
                                      "--web.listen-address=127.0.0.1:0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import fcntl
            fcntl.fcntl(self.proc.stderr.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            pass
        self.cv = threading.Condition()
        self.disconnects = []  # (target, reason, ts_ns, line_ns)
        self.connects = 0
        self.up = set()  # targets whose last event was a connect
        self.ts_field = "ts"
        self.port = None
        self.attempts = []  # (target, line_ns) of connect and connect_failure events
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        fd = self.proc.stderr.fileno()
        partial = b""
        while True:
            chunk = os.read(fd, 1 << 20)
            t = time.time_ns()
            if not chunk:
                return
            self.log.write(chunk.decode(errors="replace"))
            partial += chunk
            *lines, partial = partial.split(b"\n")
            with self.cv:
                for raw in lines:
                    if self.port is None and b"msg=listening" in raw:
                        m = re.search(rb" port=(\d+)", raw)
                        if m:
                            self.port = int(m.group(1))
                    if b" event=" not in raw:
                        continue
                    f = dict((k, v.strip('"')) for k, v in _LOGFMT.findall(raw.decode()))
                    if f.get("event") in ("connect", "connect_failure"):
                        self.attempts.append((f["target"], t))
                    if f.get("event") == "connect":
                        self.connects += 1
                        self.up.add(f["target"])
                    elif f.get("event") in ("disconnect", "connect_failure"):
                        self.up.discard(f["target"])
                    if f.get("event") != "disconnect":
                        continue
                    if "ts_ns" in f:
                        self.ts_field = "ts_ns"
                        ts = int(f["ts_ns"])
                    else:
                        ts = ts_to_ns(f["ts"])
                    self.disconnects.append((f["target"], f.get("reason"), ts, t))
                self.cv.notify_all()

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"timed out waiting for {what}")
                self.cv.wait(min(left, 0.5))

    def metrics(self):
        """The loop-iteration histogram from /metrics: {le: count} and count."""
        import urllib.request
        self.wait(lambda: self.port is not None, 30, "the listening line")
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30).read()
        buckets, count = {}, 0
        for line in body.decode().splitlines():
            m = re.match(r'connwatch_event_loop_busy_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
            if m:
                buckets[float(m.group(1))] = float(m.group(2))
            elif line.startswith("connwatch_event_loop_busy_seconds_count "):
                count = float(line.split()[1])
        return buckets, count

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


class Peer:
    def __init__(self, port):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve",
                                      "--port", str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the peer did not start")

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def count(self):
        return int(self.ask("count")[1])

    def kill(self):
        """SIGKILL; returns CLOCK_REALTIME once the process is reaped, by which
        time the kernel has closed all its sockets."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return time.time_ns()


def cpu_ms(pid):
    """utime + stime of a process, in ms (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def loop_stalls(before, after):
    """Loop iterations between two metrics() readings: how many took over
    10 ms, and the bucket (lower, upper] in ms that holds the longest one."""
    (b0, c0), (b1, c1) = before, after
    n = c1 - c0
    over = n - (b1[0.01] - b0[0.01])
    lower = 0.0
    for le in sorted(b1):
        if b1[le] - b0[le] >= n:
            return {"iterations": int(n), "over_10ms": int(over),
                    "max_ms": [lower * 1000, le * 1000 if le != float("inf") else None]}
        lower = le
    return {"iterations": int(n), "over_10ms": int(over), "max_ms": [lower * 1000, None]}


class PerfRecord:
    """perf record -g on connwatchd for the length of a with-block (--perf)."""

    def __init__(self, directory, name, pid):
        self.proc = None
        if not directory:
            return
        os.makedirs(directory, exist_ok=True)
        # CLOCK_MONOTONIC timestamps: the JSON's mono_start / mono_reported
        # of the burst select its samples (perf report --time a,b).
        self.proc = subprocess.Popen(["perf", "record", "-g", "-F", "2000", "-k", "CLOCK_MONOTONIC",
                                      "-p", str(pid),
                                      "-o", os.path.join(directory, name + ".data")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # perf attaches (not a synchronisation the figures depend on)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)


class SideCloser:
    """Closes connections of the side group one at a time (FIN), every
    `every` seconds, while a burst of the main group is being handled; the
    latency of each from the peer's stamp to connwatchd's ts."""

    def __init__(self, peer, daemon, ips, every=0.005):
        self.peer, self.daemon, self.ips, self.every = peer, daemon, ips, every
        self.stamps = []  # (target, t_ns)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            with self.daemon.cv:
                up = [t for t in self.daemon.up if t.startswith("s")]
            if up:
                target = random.choice(up)
                reply = self.peer.ask(f"close {self.ips[target]} fin")
                if reply and reply[0] == "closed":
                    self.stamps.append((target, int(reply[2])))
                    with self.daemon.cv:
                        self.daemon.up.discard(target)
            self.stop.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def latencies(self, mark):
        lat = []
        self.daemon.wait(lambda: all(self._found(t, ts, mark) for t, ts in self.stamps), 10,
                         "the side group's disconnects")
        for t, ts in self.stamps:
            lat.append((self._found(t, ts, mark)[2] - ts) / 1e6)
        return lat

    def _found(self, target, t, mark):
        for d in self.daemon.disconnects[mark:]:
            if d[0] == target and d[2] >= t - 1_000_000 and d[3] >= t:
                return d
        return None


def stats(values):
    s = sorted(values)
    if not s:
        return None

    def rank(p):  # nearest rank
        return s[min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))]
    return {"n": len(s), "p50": rank(50), "p99": rank(99), "max": s[-1]}


def wait_until(cond, timeout, what, poll=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll)


def reconnected_all(daemon, targets, after_ns):
    """Every one of `targets` made a connect attempt after after_ns."""
    seen = {t for t, line_ns in daemon.attempts if line_ns >= after_ns}
    return all(t in seen for t in targets)


def run_count(args, n, workdir, run=0):
    results = {}
    side = args.side if n > 1 else 0
    port = args.port
    ip_to_target = {source_ip(i): target_name(i) for i in range(n)}
    cfg = os.path.join(workdir, f"n{n}.yaml")
    with open(cfg, "w") as f:
        jitter = max(1, n // 4000)
        # One connection is closed over and over: reconnect at once. Many:
        # every round closes another, so the default backoff (500ms..30s).
        backoff = "backoff: {initial: 10ms, max: 10ms}, " if n == 1 else ""
        f.write(f"defaults: {{{backoff}startup_jitter: {jitter}s}}\n")
        f.write("targets:\n")
        for i in range(n):
            f.write(f'  - {{name: {target_name(i)}, address: "127.0.0.1:{port}", '
                    f'source_address: "{source_ip(i)}"}}\n')
        for i in range(side):
            f.write(f'  - {{name: {side_name(i)}, address: "127.0.0.1:{port + 1}", '
                    f'source_address: "{side_ip(i)}", backoff: {{initial: 10ms, max: 10ms}}}}\n')
    peer = Peer(port)
    side_peer = Peer(port + 1) if side else None
    side_ips = {side_name(i): side_ip(i) for i in range(side)}
    daemon = Daemon(args.daemon, cfg, os.path.join(workdir, f"n{n}-{run}.log"))
    try:
        wait_until(lambda: peer.count() == n, 120, f"{n} connections", poll=0.2)
        if side:
            wait_until(lambda: side_peer.count() == side, 60, f"{side} side connections", poll=0.2)
        time.sleep(0.5)  # let the connect burst's log lines drain (not a synchronisation)

        def first_disconnect(target, after_ns):
            for d in daemon.disconnects:
                if d[0] == target and d[2] >= after_ns - 1_000_000 and d[3] >= after_ns:
                    return d
            return None

        for how in ("fin", "rst"):
            ts_lat, line_lat = [], []
            want = "peer_closed" if how == "fin" else "peer_reset"
            target_to_ip = {v: k for k, v in ip_to_target.items()}
            for _ in range(args.rounds):
                # Close a connection connwatchd already calls up: one the
                # peer accepted a moment before connwatchd saw its connect
                # complete would be a connect failure, not a disconnect.
                reply = ["none"]
                deadline = time.monotonic() + 10
                while reply[0] != "closed":
                    if time.monotonic() > deadline:
                        raise RuntimeError("no connection that connwatchd calls up")
                    with daemon.cv:
                        up = sorted(t for t in daemon.up if t.startswith("b"))
                    if not up:
                        time.sleep(0.002)
                        continue
                    reply = peer.ask(f"close {target_to_ip[random.choice(up)]} {how}")
                ip, t = reply[1], int(reply[2])
                target = ip_to_target[ip]
                found = []
                daemon.wait(lambda: found.append(first_disconnect(target, t)) or found[-1],
                            10, f"the disconnect of {target}")
                d = found[-1]
                if d[1] != want:
                    raise RuntimeError(f"{target}: reason {d[1]}, expected {want}")
                ts_lat.append((d[2] - t) / 1e6)
                line_lat.append((d[3] - t) / 1e6)
            results[f"single {how.upper()}"] = {"ts": stats(ts_lat), "line": stats(line_lat)}
            print(f"  N={n} single {how}: {results[f'single {how.upper()}']}", flush=True)

        def burst(name, start, floor_name, expected):
            """Runs start() (the burst), waits for every disconnect of the
            main group, then for each to have made its reconnect attempt."""
            wait_until(lambda: peer.count() == n, 60, f"{n} connections before {name}", poll=0.1)
            if side:
                wait_until(lambda: side_peer.count() == side, 60, "side connections", poll=0.1)
            time.sleep(0.5)  # let reconnect log lines drain (not a synchronisation)
            # The idle rate (checks of the held connections) over 2 s.
            idle0, idle_t0 = cpu_ms(daemon.proc.pid), time.monotonic()
            time.sleep(2.0)
            idle_rate = (cpu_ms(daemon.proc.pid) - idle0) / (time.monotonic() - idle_t0)
            with PerfRecord(args.perf, f"n{n}-{name}-{run}", daemon.proc.pid):
                mark = len(daemon.disconnects)
                stalls0 = daemon.metrics()
                load = open("/proc/loadavg").read().split()[0]
                cpu0 = cpu_ms(daemon.proc.pid)
                t_cpu0 = time.monotonic()
                first = {}

                def all_seen():
                    for d in daemon.disconnects[mark:]:
                        if d[0].startswith("b"):
                            first.setdefault(d[0], d)
                    return len(first) >= expected
                with SideCloser(side_peer, daemon, side_ips) if side else _Nothing() as closer:
                    mono_start = time.monotonic()
                    t0, floor_ns, closed = start()
                    daemon.wait(all_seen, 60, f"{expected} disconnects ({name})")
                    mono_reported = time.monotonic()
                cpu = cpu_ms(daemon.proc.pid) - cpu0
                stalls = loop_stalls(stalls0, daemon.metrics())
                after_ns = min(d[3] for d in first.values())
                daemon.wait(lambda: reconnected_all(daemon, first, after_ns), 120,
                            f"the reconnect attempts after {name}")
                cpu_reconnect = cpu_ms(daemon.proc.pid) - cpu0
                wall = time.monotonic() - t_cpu0
            r = {
                "load_average": float(load),
                "floor_ms": (floor_ns - t0) / 1e6,
                "floor_is": floor_name,
                "all_reported_ts_ms": (max(d[2] for d in first.values()) - t0) / 1e6,
                "all_reported_line_ms": (max(d[3] for d in first.values()) - t0) / 1e6,
                "first_ms": (min(d[2] for d in first.values()) - t0) / 1e6,
                "reasons": sorted({d[1] for d in first.values()}),
                "daemon_cpu_ms": cpu,
                "daemon_cpu_with_reconnects_ms": cpu_reconnect,
                "idle_cpu_ms_per_s": idle_rate,
                "reconnect_wall_s": wall,
                "cpu_per_disconnect_us": 1000 * max(0.0, cpu_reconnect - idle_rate * wall) / expected,
                "loop": stalls,
                "mono_start": mono_start,
                "mono_reported": mono_reported,
            }
            if closed is not None:
                r["ts"] = stats([(first[ip_to_target[ip]][2] - t) / 1e6 for ip, t in closed.items()])
                r["line"] = stats([(first[ip_to_target[ip]][3] - t) / 1e6 for ip, t in closed.items()])
            else:
                r["ts"] = stats([(d[2] - t0) / 1e6 for d in first.values()])
                r["line"] = stats([(d[3] - t0) / 1e6 for d in first.values()])
            r["over_floor_ms"] = r["all_reported_ts_ms"] - r["floor_ms"]
            if side:
                r["side_single_fin"] = stats(closer.latencies(mark))
            return r

        if n > 1:
            for how in ("fin", "rst"):
                def start_closeall():
                    reply = peer.ask(f"closeall {how}")
                    closed = dict((kv.split("=")[0], int(kv.split("=")[1])) for kv in reply[1:])
                    return min(closed.values()), max(closed.values()), closed
                results[f"all {how.upper()}"] = burst(f"all-{how}", start_closeall,
                                                      "peer's close loop", n)
                print(f"  N={n} all {how}: {results[f'all {how.upper()}']}", flush=True)

        def start_kill():
            t_kill = time.time_ns()
            return t_kill, peer.kill(), None
        results["kill"] = burst("kill", start_kill, "peer reaped", n)
        print(f"  N={n} kill: {results['kill']}", flush=True)
        results["ts_field"] = daemon.ts_field
    finally:
        if peer.proc.poll() is None:
            peer.kill()
        if side_peer is not None:
            side_peer.kill()
        daemon.stop()
    return results


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def fmt(st):
    if st is None:
        return "-"
    return f"{st['p50']:.2f} / {st['p99']:.2f} / {st['max']:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--daemon", default=os.path.join(HERE, "..", "build", "connwatchd"))
    ap.add_argument("--counts", default="1,1000,10000")
    ap.add_argument("--rounds", type=int, default=200, help="single closes per case")
    ap.add_argument("--port", type=int, default=17400)
    ap.add_argument("--json", default="", help="write the raw figures here")
    ap.add_argument("--runs", type=int, default=1, help="runs of every case (min/median/max)")
    ap.add_argument("--side", type=int, default=200,
                    help="targets of a second group (another peer) closed one at a time "
                    "during each burst of the main group (0: none)")
    ap.add_argument("--perf", default="",
                    help="record `perf record -g` of connwatchd during each burst into this folder")
    ap.add_argument("--nice", type=int, default=0,
                    help="run this script, the peer and connwatchd at this nice value "
                    "(negative needs root): on a shared machine, -10 measures connwatchd "
                    "rather than the other jobs")
    args = ap.parse_args()
    if args.serve:
        serve(args.port)
        return 0
    if args.nice:
        os.nice(args.nice)  # before any thread or child: they inherit it
        # With sched_autogroup on (the default of most distributions) the
        # scheduler shares the CPUs between sessions first, whatever their
        # nice values: every other session compiling gets as much as this
        # whole benchmark. The session's autogroup gets the nice value too
        # (run the benchmark under `setsid -w` so that is its own session).
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(args.nice))
        except OSError as e:
            print(f"autogroup nice not set: {e}", flush=True)

    counts = [int(x) for x in args.counts.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(counts) + args.side + 200
    if soft < need:
        if hard < need:
            sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {need}: run `ulimit -n {need}` as root first")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both children
    workdir = tempfile.mkdtemp(prefix="connwatch-latency-")
    autogroup = open("/proc/self/autogroup").read().strip() if os.path.exists("/proc/self/autogroup") else "-"
    print(f"connwatchd {args.daemon}; logs in {workdir}; nice {os.nice(0)}; autogroup {autogroup}; "
          f"load average {open('/proc/loadavg').read().split()[0]}", flush=True)
    all_results = {}
    for n in counts:
        all_results[n] = [run_count(args, n, workdir, run) for run in range(args.runs)]

    print(f"\nload average at the end {open('/proc/loadavg').read().split()[0]}")
    print(f"{args.runs} run(s); latency in ms, p50 / p99 / max (of the first run); ts = "
          "connwatchd's event time, line = when its log line was read")
    print("| case | held | samples | ts | line |")
    print("|---|---|---|---|---|")
    for n in counts:
        for case, r in all_results[n][0].items():
            if case == "ts_field":
                continue
            print(f"| {case} | {n} | {r['ts']['n']} | {fmt(r['ts'])} | {fmt(r['line'])} |")

    def mmm(values, f="{:.1f}"):
        v = sorted(values)
        return " / ".join(f.format(x) for x in (v[0], v[len(v) // 2], v[-1]))

    print(f"\nbursts, min / median / max of {args.runs} run(s)")
    print("| case | held | load average | floor (ms) | all reported, ts (ms) | over the floor (ms) "
          "| connwatchd CPU to all reported (ms) | CPU per disconnect incl. reconnect (us) "
          "| loop iterations over 10 ms | longest iteration within (ms) "
          "| side group single FIN p99 (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        for case in ("all FIN", "all RST", "kill"):
            rs = [r[case] for r in all_results[n] if case in r]
            if not rs or n == 1:
                continue
            longest = max(r["loop"]["max_ms"][0] for r in rs)
            upper = [r["loop"]["max_ms"][1] for r in rs if r["loop"]["max_ms"][0] == longest][0]
            side = mmm([r["side_single_fin"]["p99"] for r in rs], "{:.2f}") + \
                f" (n={sum(r['side_single_fin']['n'] for r in rs)})" if "side_single_fin" in rs[0] else "-"
            print(f"| {case} | {n} | {mmm([r['load_average'] for r in rs], '{:.2f}')} "
                  f"| {mmm([r['floor_ms'] for r in rs])} ({rs[0]['floor_is']}) "
                  f"| {mmm([r['all_reported_ts_ms'] for r in rs])} "
                  f"| {mmm([r['over_floor_ms'] for r in rs])} "
                  f"| {mmm([r['daemon_cpu_ms'] for r in rs], '{:.0f}')} "
                  f"| {mmm([r['cpu_per_disconnect_us'] for r in rs])} "
                  f"| {mmm([r['loop']['over_10ms'] for r in rs], '{:.0f}')} "
                  f"| ({longest:g}, {upper if upper is not None else 'inf'}] | {side} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in all_results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
