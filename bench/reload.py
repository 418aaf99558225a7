#!/usr/bin/env python3
"""What a reload costs at scale (python3 standard library only).

Starts connwatchd on a generated config of N targets (all on 127.0.0.1 ports
1-50, where nothing listens: the targets sit in backoff, so no descriptor
limit caps N), then rewrites the file (atomically) and SIGHUPs it three
times: nothing changed, --changed targets changed, every target changed. For
each reload it prints the daemon's own figures from its "config reloaded"
line: load_ms (read and parse, on the loader thread) and apply_ms (the time
the event loop spent applying it).

Usage:
  bench/reload.py --build build-rel --targets 100000 --changed 1000
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def write_config(path, targets, tag, changed):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        # Long backoff: the targets stay quiet after their first refused connect.
        f.write("defaults: {backoff: {initial: 30s, max: 60s}, startup_jitter: 10s}\ntargets:\n")
        for i in range(targets):
            team = tag if i < changed else "base"
            f.write('  - {name: t%d, address: "127.0.0.1:%d", labels: {team: "%s", n: "%d"}}\n'
                    % (i, 1 + i % 50, team, i))
    os.rename(tmp, path)


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
    args = ap.parse_args()
    daemon = os.path.join(args.build, "connwatchd")
    if not os.access(daemon, os.X_OK):
        sys.exit("reload: %s is not an executable (build first, or pass --build)" % daemon)
    work = tempfile.mkdtemp(prefix="connwatch-reload-")
    config = os.path.join(work, "connwatch.yaml")
    log_path = os.path.join(work, "daemon.log")
    write_config(config, args.targets, "base", 0)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([daemon, "--config.file=" + config, "--web.listen-address=127.0.0.1:0",
                                 "--log.level=info"], stderr=log, stdout=log)
    try:
        wait_for_line(log_path, "msg=listening", 1, 120)
        print("targets=%d (RelWithDebInfo or whatever --build holds)" % args.targets)
        for n, changed in enumerate([0, args.changed, args.targets], start=1):
            write_config(config, args.targets, "v%d" % n, changed)
            proc.send_signal(signal.SIGHUP)
            line = wait_for_line(log_path, 'msg="config reloaded"', n, 300)
            load = re.search(r"load_ms=([0-9.]+)", line).group(1)
            apply_ = re.search(r"apply_ms=([0-9.]+)", line).group(1)
            print("changed=%-7d load_ms=%-8s apply_ms=%s" % (changed, load, apply_))
        with open("/proc/%d/status" % proc.pid) as f:
            hwm = [l.split()[1] for l in f if l.startswith("VmHWM")]
        print("peak resident memory %s kB" % (hwm[0] if hwm else "?"))
    finally:
        proc.terminate()
        proc.wait(30)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
