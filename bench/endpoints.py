#!/usr/bin/env python3
"""Endpoint benchmark for connwatchd (issue 15): targets that hold every
address behind a name (`addresses: all`), re-resolved against a real DNS
server.

NAMES names with ADDRESSES A records each (1,000 x 4 = 4,000 endpoints by
default), served by Debian's dnsmasq on a loopback UDP port with a TTL of 5 s;
every endpoint address is a distinct 127.x.y.z, and one connwatch-peer
listening on 0.0.0.0:PORT holds every connection. Two runs of the same
daemon config, differing only in resolve_interval:

  follow: resolve_interval 5s (every name looked up every 5 s, 200 lookups/s)
  still:  resolve_interval 1d (no lookup during the window)

Each run waits until every endpoint is up, lets it settle, then measures over
--window seconds: connwatchd's CPU (utime + stime from /proc), dnsmasq's CPU,
the lookups made (dnsmasq's query counter is not used: the lookups are
counted from the window and the interval), and the event loop's iterations
that took longer than 10 ms (connwatch_event_loop_busy_seconds: count minus
the le="0.01" bucket, before and after). The resolver's CPU per second is the
difference between the two runs' daemon CPU per second.

  bench/endpoints.py --build build
  bench/endpoints.py --build build --names 100 --window 10   # quick
"""

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402  (the daemon, peer and /proc helpers)

DNSMASQ = "/usr/sbin/dnsmasq"


def log(msg):
    print(f"[endpoints {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port(kind):
    import socket
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def address(name_index, a):
    # 127.(10+a).(k>>8).(k&255): distinct, all on loopback.
    return f"127.{10 + a}.{name_index >> 8}.{name_index & 255}"


class Dnsmasq:
    def __init__(self, workdir, names, addresses, ttl):
        self.hosts = os.path.join(workdir, "hosts")
        with open(self.hosts, "w") as f:
            for k in range(names):
                for a in range(addresses):
                    f.write(f"{address(k, a)} n{k}.bench.test\n")
        self.port = free_port(__import__("socket").SOCK_DGRAM)
        self.log = open(os.path.join(workdir, "dnsmasq.log"), "wb")
        argv = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                f"--addn-hosts={self.hosts}", f"--local-ttl={ttl}", f"--port={self.port}",
                "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                "--log-facility=-", "--cache-size=10000"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(os.path.join(workdir, "dnsmasq.log")) as f:
                if "read " + self.hosts in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited")
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not read its hosts file within 10 s")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        self.log.close()


def busy_over_10ms(metrics):
    count = metrics.get("connwatch_event_loop_busy_seconds_count", 0)
    within = metrics.get('connwatch_event_loop_busy_seconds_bucket{le="0.01"}', 0)
    return count - within, count


def run(args, label, resolve_interval, dns, peer_port, workdir):
    total = args.names * args.addresses
    cfg = os.path.join(workdir, f"{label}.yaml")
    with open(cfg, "w") as f:
        f.write("global: {max_connects_per_second: 2000, max_connects_in_flight: 2000}\n"
                "defaults:\n  startup_jitter: 2s\n  addresses: all\n  address_family: ip4\n"
                f"  resolve_interval: {resolve_interval}\ntargets:\n")
        for k in range(args.names):
            f.write(f"  - {{name: n{k}, address: \"n{k}.bench.test:{peer_port}\"}}\n")
    port = free_port(__import__("socket").SOCK_STREAM)
    daemon = scale.Daemon(args.build, cfg, workdir, port,
                          extra=[f"--dns.servers=127.0.0.1:{dns.port}"])
    try:
        t0 = time.time()
        deadline = t0 + 120
        while daemon.up_count() < total:
            if time.time() > deadline:
                raise RuntimeError(f"{label}: {daemon.up_count()} of {total} endpoints up "
                                   "after 120 s")
            time.sleep(0.5)
        log(f"{label}: {total} endpoints up in {time.time() - t0:.1f} s; settling "
            f"{args.settle} s")
        time.sleep(args.settle)
        m0 = daemon.metrics()
        c0, d0, w0 = scale.cpu_seconds(daemon.proc.pid), scale.cpu_seconds(dns.proc.pid), \
            time.monotonic()
        time.sleep(args.window)
        c1, d1, w1 = scale.cpu_seconds(daemon.proc.pid), scale.cpu_seconds(dns.proc.pid), \
            time.monotonic()
        m1 = daemon.metrics()
        slow0, it0 = busy_over_10ms(m0)
        slow1, it1 = busy_over_10ms(m1)
        up = m1.get('connwatch_targets{state="up"}', 0)
        closes = [e for e in daemon.events({"close", "disconnect", "dns_failure",
                                            "connect_failure"})]
        kinds = {}
        for _, kind in closes:
            kinds[kind] = kinds.get(kind, 0) + 1
        if closes:
            log(f"{label}: events other than connect over the whole run: {kinds}")
            os.system(f"grep -m5 -E 'event=(close|disconnect|dns_failure|connect_failure)' "
                      f"{daemon.log_path}")
        result = {
            "label": label, "interval": resolve_interval, "seconds": w1 - w0,
            "daemon_cpu_per_s": (c1 - c0) / (w1 - w0),
            "dnsmasq_cpu_per_s": (d1 - d0) / (w1 - w0),
            "iterations": it1 - it0, "over_10ms": slow1 - slow0,
            "max_busy": max_bucket(m0, m1), "up": up, "events": len(closes),
            "rss_mib": scale.rss_bytes(daemon.proc.pid) / 2**20,
        }
        log(f"{label}: daemon {result['daemon_cpu_per_s'] * 1000:.1f} ms CPU/s, dnsmasq "
            f"{result['dnsmasq_cpu_per_s'] * 1000:.1f} ms CPU/s, {result['iterations']:.0f} loop "
            f"iterations, {result['over_10ms']:.0f} over 10 ms, {up:.0f} up, "
            f"{result['events']} close/disconnect/dns_failure/connect_failure events")
        return result
    finally:
        daemon.stop()


def max_bucket(m0, m1):
    """The smallest loop-busy bucket bound that holds every iteration of the
    window (between scrapes m0 and m1)."""
    name = "connwatch_event_loop_busy_seconds"
    count = m1.get(name + "_count", 0) - m0.get(name + "_count", 0)
    bounds = []
    for key, value in m1.items():
        if key.startswith(name + '_bucket{le="'):
            le = key.split('"')[1]
            if le != "+Inf":
                bounds.append((float(le), value - m0.get(key, 0)))
    for le, value in sorted(bounds):
        if value >= count:
            return le
    return float("inf")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--names", type=int, default=1000)
    p.add_argument("--addresses", type=int, default=4)
    p.add_argument("--window", type=float, default=30)
    p.add_argument("--settle", type=float, default=10)
    args = p.parse_args()
    if not os.access(DNSMASQ, os.X_OK):
        print(f"SKIP: {DNSMASQ} is not installed (Debian package dnsmasq-base)")
        return 77
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    workdir = tempfile.mkdtemp(prefix="cw-endpoints-")
    peer_port = free_port(__import__("socket").SOCK_STREAM)
    peer = subprocess.Popen(
        [os.path.join(args.build, "connwatch-peer"), "--listen", f"0.0.0.0:{peer_port}",
         "--backlog", "4096"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000)))
    dns = Dnsmasq(workdir, args.names, args.addresses, ttl=5)
    results = []
    try:
        time.sleep(0.5)
        results.append(run(args, "follow", "5s", dns, peer_port, workdir))
        results.append(run(args, "still", "1d", dns, peer_port, workdir))
    finally:
        dns.stop()
        peer.terminate()
        peer.wait(5)
    follow, still = results
    total = args.names * args.addresses
    print()
    print(f"{args.names} names x {args.addresses} addresses = {total} endpoints; window "
          f"{args.window:g} s; {platform.node()} {os.cpu_count()} CPUs; "
          f"load {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| run | resolve_interval | lookups/s | connwatchd CPU | dnsmasq CPU | loop iterations | "
          "over 10 ms | longest (bucket) | endpoints up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lookups = args.names / 5.0 if r["label"] == "follow" else 0
        print(f"| {r['label']} | {r['interval']} | {lookups:.0f} | "
              f"{r['daemon_cpu_per_s'] * 1000:.1f} ms/s | {r['dnsmasq_cpu_per_s'] * 1000:.1f} ms/s | "
              f"{r['iterations']:.0f} | {r['over_10ms']:.0f} | <= {r['max_busy'] * 1000:g} ms | "
              f"{r['up']:.0f} |")
    print(f"resolver CPU (follow - still): "
          f"{(follow['daemon_cpu_per_s'] - still['daemon_cpu_per_s']) * 1000:.1f} ms per second")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
