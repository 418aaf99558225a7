#!/usr/bin/env python3
"""What a reload costs at scale (python3 standard library only).

Starts connwatchd on a generated config of N targets (all on 127.0.0.1 ports
1-50, where nothing listens: the targets sit in backoff, so no descriptor
limit caps N) plus --held targets that hold a connection to a small listener
of this script, then rewrites the file (atomically) and SIGHUPs it three
times: nothing changed, --changed targets changed, every one of the N
changed (the held ones never change). For each reload it prints:

  - the daemon's own figures from its "config reloaded" line: load_ms (read
    and parse, on the loader thread), apply_ms (loop time spent applying),
    apply_max_slice_ms, apply_slices and apply_wall_ms (when present);
  - loop stalls: iterations over 10 ms during the reload and the bucket of
    the longest, from connwatch_event_loop_busy_seconds before and after;
  - detection while the apply runs: from the "applying config" line until
    the reload is done, this script closes (FIN) one held connection every
    --close-every seconds; the delay from each close to connwatchd's disconnect event
    (its ts=), for the closes made inside the apply's window
    [end - apply_wall_ms, end].

Usage:
  bench/reload.py --build build-rel --targets 100000 --changed 1000 [--runs 3]
"""

import argparse
import calendar
import os
import random
import re
import socket
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def held_ip(i):
    return "127.3.%d.%d" % (i // 250, i % 250 + 1)


def write_config(path, targets, tag, changed, held, held_port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        # Long backoff: the targets stay quiet after their first refused connect.
        f.write("defaults: {backoff: {initial: 30s, max: 60s}, startup_jitter: 10s}\ntargets:\n")
        for i in range(targets):
            team = tag if i < changed else "base"
            f.write('  - {name: t%d, address: "127.0.0.1:%d", labels: {team: "%s", n: "%d"}}\n'
                    % (i, 1 + i % 50, team, i))
        for i in range(held):
            # Never changed: held through every reload; back at once after a close.
            f.write('  - {name: h%d, address: "127.0.0.1:%d", source_address: "%s", '
                    'startup_jitter: 0s, backoff: {initial: 10ms, max: 10ms}}\n'
                    % (i, held_port, held_ip(i)))
    os.rename(tmp, path)


class Holder:
    """Accepts the held targets' connections (one per source address) and
    closes them on demand, stamping CLOCK_REALTIME just before close()."""

    def __init__(self):
        self.lst = socket.socket()
        self.lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(1024)
        self.port = self.lst.getsockname()[1]
        self.lock = threading.Lock()
        self.by_ip = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            s, addr = self.lst.accept()
            with self.lock:
                old = self.by_ip.pop(addr[0], None)
                self.by_ip[addr[0]] = s
            if old:
                old.close()

    def count(self):
        with self.lock:
            return len(self.by_ip)

    def close_one(self):
        with self.lock:
            if not self.by_ip:
                return None
            ip = random.choice(list(self.by_ip))
            s = self.by_ip.pop(ip)
        t = time.time_ns()
        s.close()
        return ip, t


def ts_ns(ts):
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d+)Z", ts)
    secs = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    return secs * 1_000_000_000 + int(m.group(7).ljust(9, "0")[:9])


def loop_histogram(port):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=120).read().decode()
    buckets, count = {}, 0.0
    for line in body.splitlines():
        m = re.match(r'connwatch_event_loop_busy_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            buckets[float(m.group(1))] = float(m.group(2))
        elif line.startswith("connwatch_event_loop_busy_seconds_count "):
            count = float(line.split()[1])
    return buckets, count


def stalls(before, after):
    (b0, c0), (b1, c1) = before, after
    n = c1 - c0
    over = n - (b1[0.01] - b0[0.01])
    lower = 0.0
    for le in sorted(b1):
        if b1[le] - b0[le] >= n:
            return int(n), int(over), "(%g, %g] ms" % (lower * 1000, le * 1000)
        lower = le
    return int(n), int(over), "over %g ms" % (lower * 1000)


def wait_for_line(log_path, needle, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            lines = [l for l in f if needle in l]
        if len(lines) >= count:
            return lines[count - 1]
        time.sleep(0.1)  # polling a file against a deadline
    sys.exit("reload: no %d-th %r line within %.0f s; see %s" % (count, needle, timeout, log_path))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(here, "..", "build"))
    ap.add_argument("--targets", type=int, default=100000)
    ap.add_argument("--changed", type=int, default=1000)
    ap.add_argument("--held", type=int, default=50, help="held connections closed during the reloads")
    ap.add_argument("--close-every", type=float, default=0.002)
    ap.add_argument("--runs", type=int, default=1, help="runs of the three reloads (a new daemon each)")
    ap.add_argument("--nice", type=int, default=0,
                    help="nice value of this script and connwatchd, and of the session's autogroup "
                    "(negative needs root; run under `setsid -w`, as bench/latency.py --nice)")
    args = ap.parse_args()
    if args.nice:
        os.nice(args.nice)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(args.nice))
        except OSError as e:
            print("autogroup nice not set: %s" % e)
    daemon = os.path.join(args.build, "connwatchd")
    if not os.access(daemon, os.X_OK):
        sys.exit("reload: %s is not an executable (build first, or pass --build)" % daemon)
    autogroup = open("/proc/self/autogroup").read().strip() if os.path.exists("/proc/self/autogroup") else "-"
    print("targets=%d held=%d (build %s); nice %d, autogroup %s; load average %s"
          % (args.targets, args.held, args.build, os.nice(0), autogroup,
             open("/proc/loadavg").read().split()[0]))
    rows = []
    for run in range(args.runs):
        rows += one_run(args, daemon, run)
    print("\n| run | changed | load average | load_ms | apply_ms (loop) | apply_max_slice_ms | slices "
          "| apply_wall_ms | iterations | over 10 ms | longest iteration | closes in the apply "
          "| their detection delay p50 / max (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %(run)d | %(changed)d | %(load)s | %(load_ms)s | %(apply_ms)s | %(max_slice)s | %(slices)s "
              "| %(wall)s | %(iterations)d | %(over)d | %(longest)s | %(closes)d | %(delay)s |" % r)


def one_run(args, daemon, run):
    work = tempfile.mkdtemp(prefix="connwatch-reload-")
    config = os.path.join(work, "connwatch.yaml")
    log_path = os.path.join(work, "daemon.log")
    holder = Holder()
    write_config(config, args.targets, "base", 0, args.held, holder.port)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([daemon, "--config.file=" + config, "--storage.path=", "--web.listen-address=127.0.0.1:0",
                                 "--log.level=info"], stderr=log, stdout=log)
    rows = []
    try:
        line = wait_for_line(log_path, "msg=listening", 1, 120)
        port = int(re.search(r" port=(\d+)", line).group(1))
        deadline = time.monotonic() + 60
        while holder.count() < args.held:
            if time.monotonic() > deadline:
                sys.exit("reload: the held connections did not all connect")
            time.sleep(0.05)
        for n, changed in enumerate([0, args.changed, args.targets], start=1):
            write_config(config, args.targets, "v%d" % n, changed, args.held, holder.port)
            before = loop_histogram(port)
            load = open("/proc/loadavg").read().split()[0]
            closes = []
            done = threading.Event()

            def closer():
                # From the apply's first slice (its "applying config" line) on.
                text = ""
                with open(log_path, errors="replace") as f:
                    while text.count('msg="applying config"') < n and not done.is_set():
                        text += f.read()
                        if text.count('msg="applying config"') < n:
                            time.sleep(0.001)  # polling a file; the deadline is the reload's
                while not done.is_set():
                    c = holder.close_one()
                    if c:
                        closes.append(c)
                    done.wait(args.close_every)
            th = threading.Thread(target=closer)
            proc.send_signal(signal.SIGHUP)
            th.start()
            try:
                line = wait_for_line(log_path, 'msg="config reloaded"', n, 300)
            finally:
                done.set()
                th.join()
            after = loop_histogram(port)
            field = lambda k: (re.search(r"\b%s=([0-9.]+)" % k, line) or [None, "-"])[1]
            end = ts_ns(re.search(r"ts=(\S+)", line).group(1))
            wall = field("apply_wall_ms")
            start = end - int(float(wall if wall != "-" else field("apply_ms")) * 1e6)
            delays = detection_delays(log_path, closes, start, end)
            iterations, over, longest = stalls(before, after)
            rows.append({"run": run + 1, "changed": changed, "load": load, "load_ms": field("load_ms"),
                         "apply_ms": field("apply_ms"), "max_slice": field("apply_max_slice_ms"),
                         "slices": field("apply_slices"), "wall": wall, "iterations": iterations,
                         "over": over, "longest": longest, "closes": len(delays),
                         "delay": ("%.2f / %.2f" % (sorted(delays)[len(delays) // 2], max(delays))
                                   if delays else "-")})
            print("run %d changed=%-7d %s" % (run + 1, changed, rows[-1]), flush=True)
            time.sleep(1.0)  # the held targets reconnect (10 ms backoff); not a synchronisation
        with open("/proc/%d/status" % proc.pid) as f:
            hwm = [l.split()[1] for l in f if l.startswith("VmHWM")]
        print("peak resident memory %s kB" % (hwm[0] if hwm else "?"))
    finally:
        proc.terminate()
        proc.wait(30)
        subprocess.run(["rm", "-rf", work])
    return rows


def detection_delays(log_path, closes, start, end):
    """Delays (ms) from each close made in [start, end] to the first
    disconnect event of its target after it; waits for them (deadline)."""
    wanted = [("h%d" % (int(ip.split(".")[2]) * 250 + int(ip.split(".")[3]) - 1), t)
              for ip, t in closes if start <= t <= end]
    deadline = time.monotonic() + 30
    while True:
        events = []
        with open(log_path, errors="replace") as f:
            for l in f:
                if "event=disconnect" in l and " target=h" in l:
                    events.append((re.search(r" target=(\S+)", l).group(1),
                                   ts_ns(re.search(r"ts=(\S+)", l).group(1))))
        delays = []
        for target, t in wanted:
            hit = [e for tg, e in events if tg == target and e >= t - 1_000_000]
            if hit:
                delays.append((min(hit) - t) / 1e6)
        if len(delays) == len(wanted) or time.monotonic() > deadline:
            if len(delays) != len(wanted):
                print("reload: %d of %d closes during the apply never reported"
                      % (len(wanted) - len(delays), len(wanted)))
            return delays
        time.sleep(0.1)  # polling a file against a deadline


if __name__ == "__main__":
    main()
