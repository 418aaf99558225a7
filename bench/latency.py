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
        self.proc = subprocess.Popen([binary, f"--config.file={config_path}",
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
                    if b" event=" not in raw:
                        continue
                    f = dict((k, v.strip('"')) for k, v in _LOGFMT.findall(raw.decode()))
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


def run_count(args, n, workdir):
    results = {}
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
    peer = Peer(port)
    daemon = Daemon(args.daemon, cfg, os.path.join(workdir, f"n{n}.log"))
    try:
        wait_until(lambda: peer.count() == n, 120, f"{n} connections", poll=0.2)
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
                        up = sorted(daemon.up)
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

        if n > 1:
            for how in ("fin", "rst"):
                wait_until(lambda: peer.count() == n, 60, f"{n} connections again", poll=0.1)
                time.sleep(0.5)  # let reconnect log lines drain (not a synchronisation)
                mark = len(daemon.disconnects)
                cpu0 = cpu_ms(daemon.proc.pid)
                reply = peer.ask(f"closeall {how}")
                closed = dict((kv.split("=")[0], int(kv.split("=")[1])) for kv in reply[1:])
                t_first = min(closed.values())
                first = {}

                def all_seen():
                    for d in daemon.disconnects[mark:]:
                        first.setdefault(d[0], d)
                    return len(first) >= len(closed)
                daemon.wait(all_seen, 60, f"{len(closed)} disconnects")
                cpu = cpu_ms(daemon.proc.pid) - cpu0
                ts_lat = [(first[ip_to_target[ip]][2] - t) / 1e6 for ip, t in closed.items()]
                line_lat = [(first[ip_to_target[ip]][3] - t) / 1e6 for ip, t in closed.items()]
                results[f"all {how.upper()}"] = {
                    "ts": stats(ts_lat), "line": stats(line_lat),
                    "peer_close_loop_ms": (max(closed.values()) - t_first) / 1e6,
                    "all_reported_ts_ms": (max(d[2] for d in first.values()) - t_first) / 1e6,
                    "all_reported_line_ms": (max(d[3] for d in first.values()) - t_first) / 1e6,
                    "daemon_cpu_ms": cpu,
                }
                print(f"  N={n} all {how}: {results[f'all {how.upper()}']}", flush=True)

        wait_until(lambda: peer.count() == n, 60, f"{n} connections before the kill", poll=0.1)
        time.sleep(0.5)
        mark = len(daemon.disconnects)
        cpu0 = cpu_ms(daemon.proc.pid)
        t_kill = time.time_ns()
        t_reaped = peer.kill()
        first = {}

        def all_seen():
            for d in daemon.disconnects[mark:]:
                first.setdefault(d[0], d)
            return len(first) >= n
        daemon.wait(all_seen, 60, f"{n} disconnects after the kill")
        cpu = cpu_ms(daemon.proc.pid) - cpu0
        reasons = {d[1] for d in first.values()}
        results["kill"] = {
            "ts": stats([(d[2] - t_kill) / 1e6 for d in first.values()]),
            "line": stats([(d[3] - t_kill) / 1e6 for d in first.values()]),
            "reasons": sorted(reasons),
            "peer_reaped_ms": (t_reaped - t_kill) / 1e6,
            "first_ms": min((d[2] - t_kill) / 1e6 for d in first.values()),
            "daemon_cpu_ms": cpu,
        }
        print(f"  N={n} kill: {results['kill']}", flush=True)
        results["ts_field"] = daemon.ts_field
    finally:
        if peer.proc.poll() is None:
            peer.kill()
        daemon.stop()
    return results


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

    counts = [int(x) for x in args.counts.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(counts) + 200
    if soft < need:
        if hard < need:
            sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {need}: run `ulimit -n {need}` as root first")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both children
    workdir = tempfile.mkdtemp(prefix="connwatch-latency-")
    print(f"connwatchd {args.daemon}; logs in {workdir}; nice {os.nice(0)}; "
          f"load average {open('/proc/loadavg').read().split()[0]}", flush=True)
    all_results = {}
    for n in counts:
        all_results[n] = run_count(args, n, workdir)

    print(f"\nload average at the end {open('/proc/loadavg').read().split()[0]}")
    print("latency in ms, p50 / p99 / max; ts = connwatchd's event time "
          f"({all_results[counts[0]].get('ts_field', 'ts')}=), line = when its log line was read")
    print("| case | held | samples | ts | line | all reported (ts / line) |")
    print("|---|---|---|---|---|---|")
    for n in counts:
        for case, r in all_results[n].items():
            if case == "ts_field":
                continue
            extra = ""
            if "all_reported_ts_ms" in r:
                extra = (f"{r['all_reported_ts_ms']:.1f} / {r['all_reported_line_ms']:.1f} "
                         f"(peer's close loop {r['peer_close_loop_ms']:.1f}; connwatchd CPU "
                         f"{r['daemon_cpu_ms']:.0f})")
            elif case == "kill":
                extra = (f"{r['ts']['max']:.1f} / {r['line']['max']:.1f} ({', '.join(r['reasons'])}; "
                         f"first event {r['first_ms']:.0f}, peer reaped after "
                         f"{r['peer_reaped_ms']:.1f}; connwatchd CPU {r['daemon_cpu_ms']:.0f})")
            print(f"| {case} | {n} | {r['ts']['n']} | {fmt(r['ts'])} | {fmt(r['line'])} | {extra} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in all_results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
