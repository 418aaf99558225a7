#!/usr/bin/env python3
"""What the state file (--storage.path) costs, at N targets on loopback.

One connwatch-peer holds every connection (as bench/scale.py), connwatchd
watches N targets with --storage.interval short and --log.level=debug, and
every periodic write's own log line gives the figures: the loop time of the
snapshot copy (all slices, and the longest slice: how long the loop could not
react to a socket because of it), the encoding and the write on the writer
thread, the file's size. Then SIGTERM (the copy of every target in one piece
and the write at shutdown), a restart (start-up to listening, with the
restore) and the count of targets restored.

  bench/state.py --build build --targets 10000
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scale  # noqa: E402  (Peer, write_config, wait_until, http_get)


def fields(line):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


def ms(value):
    return float(value.rstrip("ms").rstrip("s")) if value.endswith("ms") else float(value)


def start(args, config, state_dir, log_path, port):
    log = open(log_path, "wb")
    import resource
    import subprocess
    proc = subprocess.Popen(
        [os.path.join(args.build, "connwatchd"), f"--config.file={config}",
         f"--web.listen-address=127.0.0.1:{port}", f"--storage.path={state_dir}",
         f"--storage.interval={args.interval}s", "--log.level=debug"],
        stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (args.targets + 4096,) * 2))
    return proc


def lines(log_path, needle):
    with open(log_path, "rb") as f:
        return [l.decode(errors="replace") for l in f if needle in l.decode(errors="replace")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--targets", type=int, default=10000)
    p.add_argument("--ports", type=int, default=1000)
    p.add_argument("--interval", type=int, default=2, help="--storage.interval, seconds")
    p.add_argument("--writes", type=int, default=10, help="periodic writes to measure")
    p.add_argument("--http-port", type=int, default=19797)
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="connwatch-state-bench-")
    state_dir = os.path.join(work, "state")
    os.makedirs(state_dir)
    config = os.path.join(work, "targets.yaml")
    first_port = 23000
    ports = min(args.targets, args.ports)
    scale.write_config(config, args.targets, ports, first_port, "5s", 2000)
    peer = scale.Peer(args.build, ports, first_port)
    url = f"http://127.0.0.1:{args.http_port}"
    log1 = os.path.join(work, "run1.log")
    try:
        d = start(args, config, state_dir, log1, args.http_port)

        def up():
            try:
                body, _ = scale.http_get(url + "/metrics", timeout=30)
            except Exception:
                return 0
            m = re.search(r'^connwatch_targets\{state="up"\} (\S+)$', body.decode(), re.M)
            return float(m.group(1)) if m else 0

        scale.wait_until(f"{args.targets} targets up", lambda: up() >= args.targets, 180, every=1)
        first = len(lines(log1, 'msg="state written"'))
        scale.wait_until(f"{args.writes} writes",
                         lambda: len(lines(log1, 'msg="state written"')) >= first + args.writes,
                         args.interval * args.writes * 3 + 60, every=0.5)
        written = [fields(l) for l in lines(log1, 'msg="state written"')[first:first + args.writes]]
        d.send_signal(signal.SIGTERM)
        d.wait(60)
        saved = fields(lines(log1, 'msg="state saved"')[-1])
        size = os.path.getsize(os.path.join(state_dir, "state.json"))

        log2 = os.path.join(work, "run2.log")
        t0 = time.time()
        d = start(args, config, state_dir, log2, args.http_port)
        scale.wait_until("listening", lambda: lines(log2, "msg=listening"), 120, every=0.05)
        started = time.time() - t0
        restored = fields(lines(log2, 'msg="state restored"')[-1])
        d.send_signal(signal.SIGTERM)
        d.wait(60)
    finally:
        peer.kill()

    def col(key):
        return [ms(w[key]) for w in written]

    print(f"\n{args.targets} targets, --storage.interval={args.interval}s, {len(written)} periodic writes:")
    for key, what in (("copy_loop_ms", "loop time of the snapshot copy, all slices"),
                      ("copy_max_slice_ms", "longest slice of it (the loop held at once)"),
                      ("encode_ms", "JSON encoding, writer thread"),
                      ("write_ms", "write + fsync + rename + fsync, writer thread")):
        v = col(key)
        print(f"  {what:48s} median {statistics.median(v):7.2f} ms  max {max(v):7.2f} ms")
    print(f"  slices per copy: {written[0]['copy_slices']}; file {size / 1e6:.1f} MB "
          f"({size / args.targets:.0f} bytes per target), {written[0]['events']} events")
    print(f"  at SIGTERM: copy {saved['copy_ms']} ms on the loop (one piece), write {saved['write_ms']} ms")
    print(f"  restart: listening after {started:.2f} s; restored={restored['restored']} "
          f"new={restored['new']} events={restored['events']}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
