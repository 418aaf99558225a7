#!/usr/bin/env python3
"""Scale benchmark for connwatchd (issue 4): memory per target, CPU per check,
idle CPU, scrape cost, start-up and reconnect-storm pacing, and a side-by-side
CPU comparison with Debian's prometheus-blackbox-exporter.

Everything runs on loopback: one connwatch-peer process holds every
connection (listening on --ports ports of 127.0.0.1), one connwatchd watches
N targets spread over those ports. Figures come from the daemon's own process
accounting (/proc/PID/stat, /proc/PID/status), its /metrics and its event log.

  bench/scale.py --build build --targets 1000 5000 18000
  bench/scale.py --build build --targets 300 --quick      # CI smoke: no goals checked
  bench/scale.py --build build-rel --targets 5000 18000 --tls   # TLS targets beside TCP

With --tls every N runs twice in the same invocation, plain TCP then TLS
(the peer serves TLS 1.3 with a certificate made by the openssl command line;
targets verify it with tls: {ca_file: ...}), and the summary compares them:
user-space memory per held TLS connection, CPU per check (the same probes),
start-up time and the CPU a handshake costs.

Prints one block per N and a summary table (markdown) at the end.
"""

import argparse
import gzip
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def http_get(url, timeout=30, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read(), dict(r.headers)


METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class Daemon:
    """connwatchd with its stderr (the event log) captured to a file."""

    def __init__(self, build, config, workdir, port, extra=()):
        self.log_path = os.path.join(workdir, "connwatchd.log")
        self.port = port
        self.unavailable = 0
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [os.path.join(build, "connwatchd"), f"--config.file={config}", "--storage.path=",
             f"--web.listen-address=127.0.0.1:{port}", *extra],
            stdout=self.log_file, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000)))
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                http_get(self.url + "/-/ready", timeout=2)
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"connwatchd exited: {open(self.log_path).read()[-2000:]}")
                time.sleep(0.05)
        raise RuntimeError("connwatchd not ready within 30 s")

    def metrics(self):
        body, _ = http_get(self.url + "/metrics", timeout=60)
        return parse_metrics(body.decode())

    def up_count(self):
        """Targets up; during start-up a 503 (the loop did not answer a
        snapshot within 5 s: it is busy with handshakes) counts as not yet."""
        try:
            return self.metrics().get('connwatch_targets{state="up"}', 0)
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            self.unavailable += 1
            return 0

    def events(self, kinds):
        """(unix_time, kind) of event lines of the given kinds, from the log."""
        out = []
        with open(self.log_path, "rb") as f:
            for raw in f:
                line = raw.decode(errors="replace")
                m = re.search(r"event=(\S+)", line)
                if not m or m.group(1) not in kinds:
                    continue
                ts = re.match(r"ts=(\S+)", line).group(1)
                out.append((parse_ts(ts), m.group(1)))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log_file.close()


def parse_ts(ts):
    # 2026-11-25T14:46:23.254Z
    base = time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")
    import calendar
    return calendar.timegm(base) + int(ts[20:23]) / 1000.0


class Peer:
    def __init__(self, build, ports, first_port, extra=()):
        self.args = [os.path.join(build, "connwatch-peer"), "--listen-range",
                     f"127.0.0.1:{first_port}-{first_port + ports - 1}", "--backlog", "4096",
                     *extra]
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000)))
        # The peer prints one "listening" line once every port is bound.
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if "listening" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return
            if not line and self.proc.poll() is not None:
                raise RuntimeError("connwatch-peer exited")
        raise RuntimeError("peer not listening within 30 s")

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def write_config(path, n, ports, first_port, interval, rate, extra_defaults="", target_extra=""):
    with open(path, "w") as f:
        f.write(f"global: {{max_connects_per_second: {rate}, max_connects_in_flight: 1000}}\n")
        f.write("defaults:\n")
        f.write(f"  check_interval: {interval}\n  startup_jitter: 1s\n")
        f.write("  backoff: {initial: 500ms, max: 30s}\n")
        f.write(extra_defaults)
        f.write("targets:\n")
        for i in range(n):
            f.write(f"  - {{name: t{i}, address: '127.0.0.1:{first_port + i % ports}', "
                    f"labels: {{shard: s{i % 16}}}{target_extra}}}\n")


def wait_until(what, fn, timeout, every=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last})")


def busiest_window(times, window=0.1):
    times = sorted(times)
    best = j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def make_certs(workdir):
    """A CA and a server certificate for 127.0.0.1, with the openssl command."""
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    for cmd in [
            f"openssl req -x509 {ec} -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.crt "
            "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
            f"openssl req {ec} -subj /CN=bench-server -keyout server.key -out server.csr",
            "printf 'subjectAltName=IP:127.0.0.1\n' > server.ext",
            "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
            "-extfile server.ext -out server.crt"]:
        subprocess.run(cmd, shell=True, cwd=workdir, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return os.path.join(workdir, "ca.crt"), os.path.join(workdir, "server.crt"), \
        os.path.join(workdir, "server.key")


def run_one(args, n, workdir, results, tls=None):
    ports = min(n, args.ports)
    first_port = 21000
    interval_s = args.interval
    cfg = os.path.join(workdir, f"targets-{n}.yaml")
    target_extra = f", tls: {{ca_file: '{tls[0]}'}}" if tls else ""
    write_config(cfg, n, ports, first_port, f"{interval_s}s", args.rate, target_extra=target_extra)
    empty = os.path.join(workdir, "empty.yaml")
    write_config(empty, 0, 1, first_port, f"{interval_s}s", args.rate)

    # Baseline: the same binary with no targets, its HTTP workers warmed by a
    # few requests (they are fixed costs, not per-target ones).
    base = Daemon(args.build, empty, workdir, args.http_port)
    for _ in range(8):
        http_get(base.url + "/metrics")
        http_get(base.url + "/metrics", headers={"Accept-Encoding": "gzip"})
        http_get(base.url + "/api/v1/targets")
    time.sleep(1)
    base_rss = rss_bytes(base.proc.pid)
    base.stop()

    peer = Peer(args.build, ports, first_port,
                extra=["--tls-cert", tls[1], "--tls-key", tls[2]] if tls else ())
    r = {"targets": n, "mode": "tls" if tls else "tcp"}
    t0 = time.time()
    d = Daemon(args.build, cfg, workdir, args.http_port)
    try:
        wait_until(f"{n} targets up", lambda: d.up_count() >= n, 120, every=0.5)
        r["startup_s"] = time.time() - t0
        r["startup_cpu_s"] = cpu_seconds(d.proc.pid)
        m = d.metrics()
        r["startup_503"] = d.unavailable
        r["startup_loop_over_10ms"] = m["connwatch_event_loop_busy_seconds_count"] - m[
            'connwatch_event_loop_busy_seconds_bucket{le="0.01"}']
        r["startup_loop_max_bucket"] = max_bucket(m)
        starts = [t for t, k in d.events({"connect", "connect_failure"})]
        r["startup_attempts"] = len(starts)
        r["startup_busiest_100ms"] = busiest_window(starts)
        log(f"N={n} {r['mode']}: all up in {r['startup_s']:.1f}s ({r['startup_cpu_s']:.2f} s CPU), "
            f"busiest 100 ms window "
            f"{r['startup_busiest_100ms']} attempts (rate cap {args.rate}/s); "
            f"{r['startup_loop_over_10ms']:.0f} loop iterations over 10 ms (longest in the "
            f"<= {r['startup_loop_max_bucket']} s bucket), {r['startup_503']} scrapes answered 503")

        # Steady state: let the checks spread, then measure over a window
        # with a scrape every 15 s, as Prometheus would.
        time.sleep(min(interval_s * 2, 10))
        m0 = d.metrics()
        c0, w0 = cpu_seconds(d.proc.pid), time.time()
        end = w0 + args.window
        scrape_times = []
        while time.time() < end:
            time.sleep(min(15, max(0, end - time.time())))
            if time.time() < end:
                s = time.time()
                http_get(d.url + "/metrics", timeout=60)
                scrape_times.append(time.time() - s)
        c1, w1 = cpu_seconds(d.proc.pid), time.time()
        m1 = d.metrics()
        checks = m1["connwatch_checks_total"] - m0["connwatch_checks_total"]
        r["idle_cpu_pct"] = 100 * (c1 - c0) / (w1 - w0)
        r["checks"] = checks
        r["cpu_per_check_us"] = 1e6 * (c1 - c0) / checks if checks else float("nan")
        r["rss_mb"] = rss_bytes(d.proc.pid) / 2**20
        r["rss_per_target_b"] = (rss_bytes(d.proc.pid) - base_rss) / n
        r["fds"] = fd_count(d.proc.pid)
        log(f"N={n}: idle CPU {r['idle_cpu_pct']:.2f}% of a core, {checks:.0f} checks, "
            f"{r['cpu_per_check_us']:.2f} us CPU per check, RSS {r['rss_mb']:.1f} MiB "
            f"({r['rss_per_target_b']:.0f} B per target over the empty daemon)")

        # Scrape cost and loop stalls caused by it.
        busy_over = lambda m: m["connwatch_event_loop_busy_seconds_count"] - m[
            'connwatch_event_loop_busy_seconds_bucket{le="0.01"}']
        before = d.metrics()
        times, sizes, gz_times, gz_sizes = [], [], [], []
        for _ in range(args.scrapes):
            s = time.time()
            body, _ = http_get(d.url + "/metrics", timeout=60)
            times.append(time.time() - s)
            sizes.append(len(body))
            s = time.time()
            body, headers = http_get(d.url + "/metrics", timeout=60,
                                     headers={"Accept-Encoding": "gzip"})
            gz_times.append(time.time() - s)
            gz_sizes.append(len(body))
        after = d.metrics()
        times.sort()
        gz_times.sort()
        r["scrape_ms_p50"] = 1000 * times[len(times) // 2]
        r["scrape_ms_max"] = 1000 * times[-1]
        r["scrape_bytes"] = sizes[-1]
        r["scrape_gzip_ms_p50"] = 1000 * gz_times[len(gz_times) // 2]
        r["scrape_gzip_bytes"] = gz_sizes[-1]
        r["loop_iterations_over_10ms"] = busy_over(after) - busy_over(before)
        r["loop_busy_max_bucket"] = max_bucket(after)
        log(f"N={n}: /metrics p50 {r['scrape_ms_p50']:.1f} ms max {r['scrape_ms_max']:.1f} ms, "
            f"{r['scrape_bytes']} B ({r['scrape_gzip_bytes']} B gzip, p50 "
            f"{r['scrape_gzip_ms_p50']:.1f} ms); loop iterations over 10 ms during scrapes: "
            f"{r['loop_iterations_over_10ms']:.0f}")

        # Reconnect storm: the peer holding everything dies and comes back.
        seen = len(d.events({"connect", "connect_failure"}))
        kill_at = time.time()
        peer.kill()
        wait_until("all disconnects", lambda: d.up_count() == 0, 30, every=0.2)
        peer.start()
        wait_until(f"{n} targets back up", lambda: d.up_count() >= n, 120, every=0.5)
        r["storm_recovery_s"] = time.time() - kill_at
        attempts = [t for t, k in d.events({"connect", "connect_failure"})][seen:]
        r["storm_attempts"] = len(attempts)
        r["storm_busiest_100ms_pct"] = 100 * busiest_window(attempts) / max(1, len(attempts))
        log(f"N={n}: storm: back up {r['storm_recovery_s']:.1f}s after the kill, "
            f"{len(attempts)} attempts, busiest 100 ms window "
            f"{r['storm_busiest_100ms_pct']:.2f}% of them")

        if args.blackbox and n == args.blackbox_targets and not tls:
            r.update(blackbox_compare(args, d, n, ports, first_port, workdir))
    finally:
        d.stop()
        peer.kill()
    results.append(r)


def max_bucket(m):
    """The smallest le bound that holds every loop iteration."""
    count = m["connwatch_event_loop_busy_seconds_count"]
    bounds = []
    for k, v in m.items():
        mm = re.match(r'connwatch_event_loop_busy_seconds_bucket\{le="([^"]+)"\}', k)
        if mm and mm.group(1) != "+Inf":
            bounds.append((float(mm.group(1)), v))
    for le, v in sorted(bounds):
        if v >= count:
            return le
    return float("inf")


def blackbox_compare(args, d, n, ports, first_port, workdir):
    """Probes the same n targets at the same interval through the blackbox
    exporter's tcp_connect module while connwatchd holds them; CPU per check
    of both, measured in the same window."""
    exe = shutil.which("prometheus-blackbox-exporter")
    if not exe:
        log("prometheus-blackbox-exporter not installed: skipping the comparison")
        return {}
    cfg = os.path.join(workdir, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n")
    bb_port = args.http_port + 1
    bb = subprocess.Popen([exe, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{bb_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("blackbox exporter", lambda: _ok(f"http://127.0.0.1:{bb_port}/-/healthy"), 30)
        rate = n / args.interval  # probes per second, like Prometheus at that interval
        stop = threading.Event()
        probes = [0]
        lock = threading.Lock()

        def worker(offset, step):
            i = offset
            next_at = time.time()
            while not stop.is_set():
                target = f"127.0.0.1:{first_port + i % ports}"
                try:
                    http_get(f"http://127.0.0.1:{bb_port}/probe?module=tcp_connect&target={target}",
                             timeout=10)
                    with lock:
                        probes[0] += 1
                except Exception:
                    pass
                i += step
                next_at += step / rate
                delay = next_at - time.time()
                if delay > 0:
                    time.sleep(delay)

        threads = [threading.Thread(target=worker, args=(k, 8), daemon=True) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(5)  # warm-up
        m0 = d.metrics()
        c0, b0, p0, w0 = cpu_seconds(d.proc.pid), cpu_seconds(bb.pid), probes[0], time.time()
        time.sleep(args.window)
        c1, b1, p1, w1 = cpu_seconds(d.proc.pid), cpu_seconds(bb.pid), probes[0], time.time()
        m1 = d.metrics()
        stop.set()
        checks = m1["connwatch_checks_total"] - m0["connwatch_checks_total"]
        cw = 1e6 * (c1 - c0) / checks if checks else float("nan")
        bbx = 1e6 * (b1 - b0) / (p1 - p0) if p1 > p0 else float("nan")
        log(f"blackbox: {p1 - p0} probes in {w1 - w0:.0f}s ({(p1 - p0) / (w1 - w0):.0f}/s), "
            f"{bbx:.1f} us CPU per probe; connwatchd {cw:.2f} us per check; ratio {bbx / cw:.0f}x")
        return {"blackbox_us_per_probe": bbx, "blackbox_probes": p1 - p0,
                "connwatch_us_per_check_same_window": cw, "blackbox_ratio": bbx / cw}
    finally:
        bb.kill()
        bb.wait()


def _ok(url):
    try:
        http_get(url, timeout=2)
        return True
    except Exception:
        return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build", help="build directory with connwatchd and connwatch-peer")
    p.add_argument("--targets", type=int, nargs="+", default=[1000, 5000, 18000])
    p.add_argument("--ports", type=int, default=1000, help="listening ports the peer spreads targets over")
    p.add_argument("--interval", type=int, default=5, help="check_interval in seconds")
    p.add_argument("--rate", type=int, default=1000, help="global.max_connects_per_second")
    p.add_argument("--window", type=int, default=60, help="steady-state measuring window, seconds")
    p.add_argument("--scrapes", type=int, default=5)
    p.add_argument("--http-port", type=int, default=19798)
    p.add_argument("--blackbox", action="store_true", help="compare with prometheus-blackbox-exporter")
    p.add_argument("--blackbox-targets", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="CI smoke: short windows, no goals checked")
    p.add_argument("--tls", action="store_true",
                   help="also run every N with TLS targets and compare them with TCP")
    args = p.parse_args()
    if args.quick:
        args.window, args.scrapes, args.interval = 5, 2, 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))

    results = []
    with tempfile.TemporaryDirectory(prefix="connwatch-scale-") as workdir:
        certs = make_certs(workdir) if args.tls else None
        for n in args.targets:
            run_one(args, n, workdir, results)
            if certs:
                run_one(args, n, workdir, results, tls=certs)

    cols = ["targets", "mode", "startup_s", "startup_cpu_s", "startup_busiest_100ms",
            "startup_loop_over_10ms", "startup_loop_max_bucket", "startup_503",
            "idle_cpu_pct", "cpu_per_check_us",
            "rss_per_target_b", "rss_mb", "scrape_ms_p50", "scrape_ms_max", "scrape_bytes",
            "scrape_gzip_bytes", "loop_iterations_over_10ms", "loop_busy_max_bucket",
            "storm_recovery_s", "storm_busiest_100ms_pct", "blackbox_us_per_probe", "blackbox_ratio"]
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        print("| " + " | ".join(cells) + " |")

    failures = []
    if args.tls:
        print("\n| targets | memory per TLS connection (B, over the empty daemon) | extra memory of TLS over TCP, per connection (B) | CPU per check TLS / TCP (us) | ratio | start-up TLS / TCP (s) | handshake CPU per connection (us) |")
        print("|---|---|---|---|---|---|---|")
        for n in args.targets:
            tcp = next(r for r in results if r["targets"] == n and r["mode"] == "tcp")
            tls = next(r for r in results if r["targets"] == n and r["mode"] == "tls")
            ratio = tls["cpu_per_check_us"] / tcp["cpu_per_check_us"]
            handshake_us = 1e6 * (tls["startup_cpu_s"] - tcp["startup_cpu_s"]) / n
            print(f"| {n} | {tls['rss_per_target_b']:.0f} | "
                  f"{tls['rss_per_target_b'] - tcp['rss_per_target_b']:.0f} | "
                  f"{tls['cpu_per_check_us']:.2f} / {tcp['cpu_per_check_us']:.2f} | {ratio:.2f} | "
                  f"{tls['startup_s']:.1f} / {tcp['startup_s']:.1f} | {handshake_us:.0f} |")
            if not args.quick:
                if tls["rss_per_target_b"] >= 16384:
                    failures.append(f"N={n}: {tls['rss_per_target_b']:.0f} B per TLS connection "
                                    "(goal < 16384)")
                if ratio > 1.5:
                    failures.append(f"N={n}: TLS CPU per check {ratio:.2f} x TCP (goal <= 1.5)")
    if args.quick:
        return 0
    for r in results:
        n = r["targets"]
        if r["mode"] == "tls":
            continue  # the TLS goals are the comparison above
        if r["rss_per_target_b"] >= 2048:
            failures.append(f"N={n}: {r['rss_per_target_b']:.0f} B per target (goal < 2048)")
        if r["cpu_per_check_us"] >= 5:
            failures.append(f"N={n}: {r['cpu_per_check_us']:.2f} us per check (goal < 5)")
        if r["idle_cpu_pct"] >= 5:
            failures.append(f"N={n}: idle CPU {r['idle_cpu_pct']:.2f}% (goal < 5%)")
        if r["scrape_ms_max"] >= 100:
            failures.append(f"N={n}: scrape {r['scrape_ms_max']:.0f} ms (goal < 100)")
        if r["loop_iterations_over_10ms"] > 0:
            failures.append(f"N={n}: {r['loop_iterations_over_10ms']:.0f} loop iterations over 10 ms")
        if r["storm_busiest_100ms_pct"] > 5 or r["storm_recovery_s"] > 30:
            failures.append(f"N={n}: storm {r['storm_busiest_100ms_pct']:.1f}% / {r['storm_recovery_s']:.0f}s")
        if r["startup_s"] > 30:
            failures.append(f"N={n}: start-up {r['startup_s']:.0f}s (goal 30)")
    for f in failures:
        print("GOAL MISSED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
