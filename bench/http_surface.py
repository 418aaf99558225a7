#!/usr/bin/env python3
"""HTTP surface benchmark for connwatchd: scrape latency, memory and event-loop
time under concurrent requests, and whether scrapes are still answered while
one client address holds a flood of idle connections.

Everything runs on loopback: one connwatch-peer holds every target connection
(127.0.0.1, --ports ports), one connwatchd watches N targets. For each run:

  1. serial: --scrapes requests of /metrics (gzip, as Prometheus asks) and of
     /api/v1/targets, one after the other: p50 and max latency, body size.
  2. burst: --concurrency simultaneous requests of /api/v1/targets, then of
     /metrics: wall time until all are answered, the daemon's peak resident
     memory during the burst (VmRSS sampled every 2 ms) over its resident
     memory just before, and the event loop's time: the sum of
     connwatch_event_loop_busy_seconds over the burst and the iterations
     longer than 10 ms.
  3. flood: --flood TCP connections from 127.0.0.1 that send nothing (each
     one the server closes is opened again at once, as an attacker would),
     while --scrapes scrapes of /metrics come from 127.0.0.2: how many are
     answered within 10 s, and their p50 and max latency.

With --tls the daemon serves TLS (a self-signed certificate made with the
openssl command) and every request, the flood included, goes to the TLS
listener (the flood then never sends a ClientHello).

  bench/http_surface.py --build build --targets 18000
  bench/http_surface.py --build build --targets 18000 --tls
  bench/http_surface.py --build build --targets 200 --quick   # smoke

Prints one line per measurement and a markdown table at the end. The machine
is shared: the 1-minute load average is printed before each run.
"""

import argparse
import http.client
import os
import resource
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import Peer, parse_metrics, rss_bytes, wait_until, write_config  # noqa: E402


def log(msg):
    print(f"[http {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Client:
    """HTTP(S) requests to the daemon from a chosen source address."""

    def __init__(self, port, tls_ca=None):
        self.port = port
        self.ctx = None
        if tls_ca:
            self.ctx = ssl.create_default_context(cafile=tls_ca)
            self.ctx.check_hostname = False

    def get(self, path, source="127.0.0.1", timeout=30, gzip=False):
        """(status, body bytes, seconds)."""
        start = time.monotonic()
        if self.ctx:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               source_address=(source, 0), context=self.ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                              source_address=(source, 0))
        try:
            conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
            r = conn.getresponse()
            body = r.read()
            return r.status, body, time.monotonic() - start
        finally:
            conn.close()


class Daemon:
    def __init__(self, build, config, workdir, port, web_config=None):
        self.log_path = os.path.join(workdir, "connwatchd.log")
        self.log_file = open(self.log_path, "wb")
        args = [os.path.join(build, "connwatchd"), f"--config.file={config}", "--storage.path=",
                f"--web.listen-address=127.0.0.1:{port}"]
        if web_config:
            args.append(f"--web.config.file={web_config}")
        self.proc = subprocess.Popen(
            args, stdout=self.log_file, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000)))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log_file.close()


def metrics(client):
    status, body, _ = client.get("/metrics", timeout=60)
    return parse_metrics(body.decode())


def loop_stats(m):
    busy = m.get("connwatch_event_loop_busy_seconds_sum", 0.0)
    over10 = m.get("connwatch_event_loop_busy_seconds_count", 0) - m.get(
        'connwatch_event_loop_busy_seconds_bucket{le="0.01"}', 0)
    return busy, over10


def burst(client, pid, path, concurrency, gzip):
    m0 = metrics(client)
    rss0 = rss_bytes(pid)
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results = [None] * concurrency
    gate = threading.Barrier(concurrency)

    def one(i):
        gate.wait()
        try:
            results[i] = client.get(path, timeout=60, gzip=gzip)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = (0, str(e).encode(), 0.0)

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    stop.set()
    sampler.join()
    m1 = metrics(client)
    b0, o0 = loop_stats(m0)
    b1, o1 = loop_stats(m1)
    ok = sum(1 for r in results if r[0] == 200)
    return {"ok": ok, "wall_ms": 1000 * wall, "rss_before_mb": rss0 / 2**20,
            "rss_peak_growth_mb": (peak[0] - rss0) / 2**20,
            "loop_busy_ms": 1000 * (b1 - b0), "loop_iterations_over_10ms": o1 - o0,
            "bytes": max(len(r[1]) for r in results)}


class Flood:
    """`count` idle connections from 127.0.0.1, reopened as soon as closed."""

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.reopened = 0
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def open_one(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        return s

    def run(self):
        socks = [self.open_one() for _ in range(self.count)]
        while not self.stop.is_set():
            readable, _, _ = select.select(socks, [], [], 0.05)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    socks.remove(s)
                    s.close()
                    socks.append(self.open_one())
                    self.reopened += 1
        for s in socks:
            s.close()

    def end(self):
        self.stop.set()
        self.thread.join()


def flood_test(client, port, count, scrapes):
    flood = Flood(port, count)
    time.sleep(1.0)  # let the flood connections be accepted (or queued)
    answered, times = 0, []
    for _ in range(scrapes):
        try:
            status, _, secs = client.get("/metrics", source="127.0.0.2", timeout=10, gzip=True)
            if status == 200:
                answered += 1
                times.append(secs)
        except Exception as e:  # noqa: BLE001 - a timeout is the measured outcome
            log(f"flood: scrape failed: {e}")
    flood.end()
    times.sort()
    return {"answered": answered, "of": scrapes,
            "p50_ms": 1000 * times[len(times) // 2] if times else float("nan"),
            "max_ms": 1000 * times[-1] if times else float("nan"),
            "flood_reopened": flood.reopened}


def make_tls(workdir):
    crt, key = os.path.join(workdir, "tls.crt"), os.path.join(workdir, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=bench", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key,
                    "-out", crt], check=True, capture_output=True)
    web = os.path.join(workdir, "web.yml")
    with open(web, "w") as f:
        f.write(f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n")
    return web, crt


def run(args, workdir):
    n = args.targets
    ports = min(n, args.ports)
    first_port = 21000
    cfg = os.path.join(workdir, "targets.yaml")
    write_config(cfg, n, ports, first_port, "5s", 2000)
    web, ca = (None, None)
    if args.tls:
        web, ca = make_tls(workdir)
    log(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    peer = Peer(args.build, ports, first_port)
    d = Daemon(args.build, cfg, workdir, args.http_port, web)
    client = Client(args.http_port, ca)
    out = {"targets": n, "tls": bool(args.tls)}
    try:
        def up():
            try:
                return metrics(client).get('connwatch_targets{state="up"}', 0) >= n
            except Exception:  # noqa: BLE001 - not listening yet
                if d.proc.poll() is not None:
                    raise RuntimeError(open(d.log_path).read()[-2000:])
                return False
        wait_until(f"{n} targets up", up, 180, every=0.5)
        time.sleep(2)

        for path, gz in (("/metrics", True), ("/api/v1/targets", False)):
            times, size = [], 0
            for _ in range(args.scrapes):
                status, body, secs = client.get(path, timeout=60, gzip=gz)
                assert status == 200, (path, status)
                times.append(secs)
                size = len(body)
            times.sort()
            key = "metrics" if path == "/metrics" else "targets"
            out[f"{key}_p50_ms"] = 1000 * statistics.median(times)
            out[f"{key}_max_ms"] = 1000 * times[-1]
            out[f"{key}_bytes"] = size
            log(f"serial {path}: p50 {out[key + '_p50_ms']:.1f} ms, max "
                f"{out[key + '_max_ms']:.1f} ms, {size} B")

        for path, gz in (("/api/v1/targets", False), ("/metrics", True)):
            b = burst(client, d.proc.pid, path, args.concurrency, gz)
            key = "burst_metrics" if path == "/metrics" else "burst_targets"
            out[key] = b
            log(f"burst {args.concurrency} x {path}: {b['ok']} ok in {b['wall_ms']:.0f} ms, "
                f"RSS {b['rss_before_mb']:.1f} MiB + peak {b['rss_peak_growth_mb']:.1f} MiB, "
                f"loop busy {b['loop_busy_ms']:.1f} ms, iterations > 10 ms: "
                f"{b['loop_iterations_over_10ms']:.0f}")

        f = flood_test(client, args.http_port, args.flood, args.scrapes)
        out["flood"] = f
        log(f"flood of {args.flood} idle connections from 127.0.0.1: {f['answered']}/{f['of']} "
            f"scrapes from 127.0.0.2 answered, p50 {f['p50_ms']:.0f} ms, max {f['max_ms']:.0f} ms "
            f"({f['flood_reopened']} flood connections closed by the server and reopened)")
        out["rss_after_mb"] = rss_bytes(d.proc.pid) / 2**20
        log(f"RSS after: {out['rss_after_mb']:.1f} MiB; load average (1 min) "
            f"{os.getloadavg()[0]:.2f}")
        if d.proc.poll() is not None:
            raise RuntimeError("connwatchd exited during the benchmark")
    finally:
        d.stop()
        peer.kill()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--targets", type=int, default=18000)
    p.add_argument("--ports", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--flood", type=int, default=200)
    p.add_argument("--scrapes", type=int, default=10)
    p.add_argument("--http-port", type=int, default=19799)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke: small and short, nothing checked")
    args = p.parse_args()
    if args.quick:
        args.scrapes = min(args.scrapes, 3)
    with tempfile.TemporaryDirectory() as workdir:
        r = run(args, workdir)
    bt, bm, f = r["burst_targets"], r["burst_metrics"], r["flood"]
    print()
    print("| targets | TLS | /metrics p50 / max ms | /api/v1/targets p50 / max ms | "
          f"{args.concurrency} x targets: ms, peak RSS growth MiB, loop busy ms | "
          f"{args.concurrency} x metrics: ms, peak RSS growth MiB, loop busy ms | "
          f"flood {args.flood}: answered, p50 / max ms |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r['targets']} | {'yes' if r['tls'] else 'no'} | "
          f"{r['metrics_p50_ms']:.0f} / {r['metrics_max_ms']:.0f} | "
          f"{r['targets_p50_ms']:.0f} / {r['targets_max_ms']:.0f} | "
          f"{bt['wall_ms']:.0f}, {bt['rss_peak_growth_mb']:.1f}, {bt['loop_busy_ms']:.0f} | "
          f"{bm['wall_ms']:.0f}, {bm['rss_peak_growth_mb']:.1f}, {bm['loop_busy_ms']:.0f} | "
          f"{f['answered']}/{f['of']}, {f['p50_ms']:.0f} / {f['max_ms']:.0f} |")


if __name__ == "__main__":
    main()
