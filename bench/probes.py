#!/usr/bin/env python3
"""Probe benchmark (docs/PROBES.md): what each probe can see, and what it costs.

Part 1, the detection matrix (needs root: it builds network namespaces with
tests/system/nslab.py). Rows are faults made on a held connection, columns are
probe sets; each cell says whether connwatchd saw the death, by which probe
(`detected_by`), as which reason, and how long after the fault. Columns:

  read       the event-driven read alone (checks every hour: never in the run)
  peek, zero_send, tcp_info, so_error
             that probe alone every 100 ms, with the event-driven read off
             (CONNWATCHD_BENCH_NO_EVENT_READS=1, a bench-only switch)
  default    [peek, zero_send, tcp_info] every 100 ms, event-driven read off
  all        the event-driven read and the default probes every 100 ms, with
             report_icmp: true: what a fully configured target sees

Part 2, the costs (loopback): CPU per periodic check of connwatchd holding N
connections, for the default probe list and each probe alone, measured from
the daemon's own CPU time (/proc/PID/stat) and connwatch_checks_total; and
beside it, in the same run, the bare system call of each probe in a C loop
over N connections (bench/probe_syscalls.c).

  bench/probes.py --build build-rel                      # both parts
  bench/probes.py --build build-rel --part costs --targets 1000 18000 --window 20
  bench/probes.py --build build --smoke                  # CI: a quick pass, no goal checked

Prints the matrix and the cost table as Markdown (--json FILE writes them too).
Exit status 1 when the cost goal (default list <= 1.3 x its bare calls) is
missed at the largest N, unless --smoke.
"""

import argparse
import json
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
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
import nslab  # noqa: E402

NOFILE = 20000  # the machine's per-process cap


def log(msg):
    print(f"[probes {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds(pid):
    """CPU time of every thread of `pid`, from the scheduler's nanosecond
    accounting (/proc/PID/task/*/schedstat): /proc/PID/stat counts 10 ms
    ticks, too coarse for a few seconds of checks."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def raise_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


# ---------------------------------------------------------------------------
# Part 1: the detection matrix.

# A request every 200 ms whatever the replies (with the event-driven read off
# they are never read): data keeps flowing, and no heartbeat ever ends a
# connection (fall is never reached).
HEARTBEAT = '{send: "PING\\n", expect: "PONG", interval: 200ms, timeout: 100ms, fall: 1000000}'
COLUMNS = [
    # name, event reads, settings
    ("read", True, {"check_interval": "1h", "probes": "[tcp_info]"}),
    ("peek", False, {"probes": "[peek]"}),
    ("zero_send", False, {"probes": "[zero_send]"}),
    ("tcp_info", False, {"probes": "[tcp_info]"}),
    ("so_error", False, {"probes": "[so_error]"}),
    ("default", False, {}),
    ("all", True, {"report_icmp": "true"}),
]
# name, what is done, peer mode, target settings, seconds to wait for deaths
ROWS = [
    ("fin", "the peer closes (FIN)", "hold", {}, 2),
    ("fin_behind_data", "the peer sends 12 bytes, then FIN", "hold", {}, 2),
    ("rst", "the peer resets (RST)", "hold", {}, 2),
    ("rst_after_write", "the peer closes (FIN); our next heartbeat write is answered with RST",
     "silent", {"heartbeat": HEARTBEAT}, 2),
    ("silent_keepalive", "the peer goes silent, connection idle (keepalive 1s+1s x2)", "hold",
     {}, 6),
    ("silent_unacked", "the peer goes silent, heartbeats unacknowledged (user_timeout 2s)",
     "hold", {"heartbeat": HEARTBEAT, "user_timeout": "2s"}, 6),
    ("local_shutdown", "shutdown(fd, SHUT_WR) inside connwatchd (bench/shutdown_shim.c), "
     "the peer keeps its side open", "keep-open", {}, 2),
    # Last: the route makes every address of P unreachable.
    ("icmp_unreachable", "the router answers ICMP host unreachable, heartbeats in flight "
     "(user_timeout 2s)", "silent", {"heartbeat": HEARTBEAT, "user_timeout": "2s"}, 6),
]
PORT0 = 7001


class MatrixDaemon(nslab.Daemon):
    """connwatchd in namespace D on its own HTTP port, optionally with the
    event-driven read off, with the shutdown shim preloaded."""

    def __init__(self, binary, lab, workdir, config, port, event_reads, name, shim):
        self.PORT = port
        self.fds_file = os.path.join(workdir, f"{name}.shutdown-fds")
        env = [f"LD_PRELOAD={shim}", f"CONNWATCH_SHUTDOWN_FDS={self.fds_file}"]
        if not event_reads:
            env.append("CONNWATCHD_BENCH_NO_EVENT_READS=1")
        # A wrapper so that nslab starts the daemon with this environment.
        wrapper = os.path.join(workdir, f"{name}.sh")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec env {' '.join(env)} {binary} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        super().__init__(wrapper, lab, workdir, config, name=name)

    def shutdown_sockets(self, fds):
        with open(self.fds_file, "w") as f:
            f.write("".join(f"{fd}\n" for fd in fds))
        os.kill(self.pid, signal.SIGRTMIN + 3)


def matrix_config(lab, event_reads):
    out = ["defaults:",
           "  startup_jitter: 0s",
           "  connect_timeout: 1s",
           "  check_interval: 100ms",
           "  check_jitter: 0s",
           "  keepalive: {idle: 1s, interval: 1s, count: 2}",
           "  backoff: {initial: 1m, max: 1m}",
           "targets:"]
    for i, (row, _, _, row_settings, _) in enumerate(ROWS):
        for col, reads, col_settings in COLUMNS:
            if reads != event_reads:
                continue
            out.append(f"  - name: {row}.{col}")
            out.append(f"    address: \"{lab.p_ip}:{PORT0 + i}\"")
            for k, v in {**row_settings, **col_settings}.items():
                out.append(f"    {k}: {v}")
    return "\n".join(out) + "\n"


def daemon_sockets_to(pid, ip, port):
    """File descriptors of `pid` that are TCP sockets connected to ip:port."""
    inodes = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes[m.group(1)] = int(fd)
    want = "%s:%04X" % ("".join(f"{int(b):02X}" for b in reversed(ip.split("."))), port)
    fds = []
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[2] == want and parts[9] in inodes:
                fds.append(inodes[parts[9]])
    return fds


def run_matrix(args, workdir):
    if os.geteuid() != 0:
        return None, "not run: the matrix builds network namespaces and needs root"
    why = nslab.namespaces_available()
    if why:
        return None, f"not run: {why}"
    nslab.install_cleanup_handlers()
    nslab.remove_stale_namespaces()
    shim = os.path.join(workdir, "shutdown_shim.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim,
                    os.path.join(HERE, "shutdown_shim.c")], check=True)
    lab = nslab.Lab(240, workdir)
    procs = []
    cells = {}
    try:
        lab.create()
        lab.sysctl(lab.R, "net.ipv4.icmp_ratelimit", 0)
        peers = []
        for i, (row, _, mode, _, _) in enumerate(ROWS):
            extra = ["--heartbeat", "PING\\n=PONG\\n"] if mode == "echo" else []
            p = nslab.Peer(args.peer, lab.P, workdir, f"{lab.p_ip}:{PORT0 + i}", mode=mode,
                           extra=extra, name=f"peer-{row}")
            peers.append(p)
            procs.append(p.proc)
        daemons = []
        for port, reads in ((9798, True), (9799, False)):
            d = MatrixDaemon(args.daemon, lab, workdir, matrix_config(lab, reads), port, reads,
                             f"connwatchd-{'reads' if reads else 'no-reads'}", shim)
            daemons.append(d)
            procs.append(d.proc)
        targets = [f"{row}.{col}" for row, *_ in ROWS for col, *_ in COLUMNS]
        nslab.wait_for(lambda: all(d.metrics().sum("connwatch_target_up") ==
                                   len([t for t in d.targets()]) for d in daemons),
                       15, "every matrix target up")
        for i, (row, what, _, _, wait_s) in enumerate(ROWS):
            peer = peers[i]
            t0 = nslab.now_ns()
            if row == "fin" or row == "rst_after_write":
                peer.ctl("close")
            elif row == "fin_behind_data":
                peer.ctl("send-close unread bytes")
            elif row == "rst":
                peer.ctl("reset")
            elif row.startswith("silent"):
                peer.ctl("blackhole")
            elif row == "local_shutdown":
                for d in daemons:
                    d.shutdown_sockets(daemon_sockets_to(d.pid, lab.p_ip, PORT0 + i))
            elif row == "icmp_unreachable":
                lab.ip(lab.R, "route", "add", "unreachable", f"{lab.p_ip}/32")
            deadline = time.monotonic() + wait_s
            names = [f"{row}.{col}" for col, *_ in COLUMNS]
            while time.monotonic() < deadline:
                seen = {e["target"] for d in daemons for e in d.events("disconnect", since_ns=t0)}
                if all(n in seen for n in names):
                    break
                time.sleep(0.05)
            for col, *_ in COLUMNS:
                name = f"{row}.{col}"
                dis = [e for d in daemons for e in d.events("disconnect", name, since_ns=t0)]
                icmp = [e for d in daemons for e in d.events("icmp_error", name, since_ns=t0)]
                cell = {"detected": bool(dis)}
                if dis:
                    e = dis[0]
                    cell.update(by=e.get("detected_by"), reason=e.get("reason"),
                                errno=e.get("errno", ""), ms=(e["ts_ns"] - t0) / 1e6)
                if icmp:
                    cell.update(icmp_by=icmp[0].get("detected_by"),
                                icmp_ms=(icmp[0]["ts_ns"] - t0) / 1e6)
                cells[name] = cell
            log(f"matrix row {row}: " + ", ".join(
                f"{col}={_cell_text(cells[row + '.' + col])}" for col, *_ in COLUMNS))
        return cells, ""
    finally:
        for p in procs:
            p.close()
        lab.destroy()


def _cell_text(c, wait_s=None):
    if not c["detected"]:
        text = "not seen" + (f" in {wait_s} s" if wait_s else "")
    else:
        text = f"{c['by']} {c['reason']} {c['ms']:.0f} ms"
    if "icmp_by" in c:
        text += f" (icmp_error by {c['icmp_by']} at {c['icmp_ms']:.0f} ms)"
    return text


def matrix_markdown(cells):
    head = "| fault | " + " | ".join(col for col, *_ in COLUMNS) + " |"
    out = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for row, what, _, _, wait_s in ROWS:
        out.append(f"| `{row}`: {what} | " + " | ".join(
            _cell_text(cells[f"{row}.{col}"], wait_s) for col, *_ in COLUMNS) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Part 2: the costs.

LISTS = ["[peek, zero_send, tcp_info]", "[peek]", "[zero_send]", "[tcp_info]", "[so_error]"]
BARE = {"[peek]": ["peek"], "[zero_send]": ["zero_send"], "[tcp_info]": ["tcp_info"],
        "[so_error]": ["so_error"], "[peek, zero_send, tcp_info]": ["peek", "zero_send", "tcp_info"]}


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


class Peer:
    def __init__(self, build, ports):
        args = [os.path.join(build, "connwatch-peer")]
        for p in ports:
            args += ["--listen", f"127.0.0.1:{p}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=raise_nofile)
        line = self.proc.stdout.readline().decode()
        if "listening" not in line:
            raise RuntimeError(f"connwatch-peer did not start: {line}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CostDaemon:
    """connwatchd holding N loopback connections with one probe list, checked
    at about 10,000-18,000 checks per second."""

    def __init__(self, args, workdir, n, probes, peer_port):
        self.interval_ms = max(100, int(n * 1000 / 18000))
        config = os.path.join(workdir, "costs.yaml")
        with open(config, "w") as f:
            f.write("global: {max_connects_per_second: 20000, max_connects_in_flight: 2000}\n")
            f.write(f"defaults: {{check_interval: {self.interval_ms}ms, startup_jitter: 1s, "
                    f"probes: {probes}}}\ntargets:\n")
            for i in range(n):
                f.write(f"  - {{name: t{i}, address: '127.0.0.1:{peer_port}'}}\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        with open(os.path.join(workdir, "costs-connwatchd.log"), "wb") as log_file:
            self.proc = subprocess.Popen(
                [args.daemon, f"--config.file={config}", "--storage.path=", f"--web.listen-address=127.0.0.1:{port}",
                 "--log.level=warn"], stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=lambda: (raise_nofile(), os.nice(args.nice)))
        deadline = time.time() + 120
        while True:
            try:
                if metric(http_get(self.url), 'connwatch_targets{state="up"}') == n:
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{n} targets not up within 120 s")
            time.sleep(0.2)

    def settle(self):
        time.sleep(2 * self.interval_ms / 1000 + 1)

    def measure(self, window):
        # The scrapes stay outside the CPU window: each costs O(targets).
        k0 = metric(http_get(self.url), "connwatch_checks_total")
        c0 = cpu_seconds(self.proc.pid)
        time.sleep(window)
        c1 = cpu_seconds(self.proc.pid)
        k1 = metric(http_get(self.url), "connwatch_checks_total")
        return 1e6 * (c1 - c0) / (k1 - k0) if k1 > k0 else float("nan"), k1 - k0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_costs(args, workdir, sizes, window, lists, repeats):
    """Per N and probe list: `repeats` runs of the bare calls in the C loop,
    then connwatchd started on the same N, and `repeats` windows of its checks
    back to back. Each figure is the minimum of its runs: what the machine
    gives when nothing else gets in the way, for both alike."""
    binary = os.path.join(workdir, "probe_syscalls")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "probe_syscalls.c")],
                   check=True)
    results = []
    for n in sizes:
        # One peer for the daemon's connections and one for the C loop's
        # (a process may hold 20,000 descriptors).
        bare_port, daemon_port = free_port(), free_port()
        peers = [Peer(os.path.dirname(args.daemon), [p]) for p in (bare_port, daemon_port)]
        row = {"targets": n, "bare_ns": {}, "daemon": {}}
        try:
            for probes in lists:
                interval_ms = max(100, int(n * 1000 / 18000))
                # The daemon's slots: its checks per 50 ms at that interval.
                burst = max(1, int(n * 0.05 / (interval_ms / 1000)))
                bare_runs = []
                for _ in range(repeats):
                    out = subprocess.run(
                        ["nice", "-n", str(args.nice), binary, "127.0.0.1", str(bare_port),
                         str(n), str(max(3, 200000 // n))] +
                        ([str(burst)] if probes == LISTS[0] else []),
                        capture_output=True, text=True, check=True,
                        preexec_fn=raise_nofile).stdout
                    bare_runs.append(json.loads(out))
                for key in bare_runs[0]:
                    if key.endswith("_ns"):
                        best = min(r[key] for r in bare_runs)
                        row["bare_ns"][key[:-3]] = min(best, row["bare_ns"].get(key[:-3], best))
                if "burst" in bare_runs[0]:
                    row["burst"] = bare_runs[0]["burst"]
                d = CostDaemon(args, workdir, n, probes, daemon_port)
                try:
                    d.settle()
                    per_check = [d.measure(window)[0] for _ in range(repeats)]
                finally:
                    d.stop()
                r = {"us_per_check": min(per_check), "runs_us": per_check,
                     "interval_ms": d.interval_ms}
                row["daemon"][probes] = r
                log(f"N={n} probes {probes}: {min(per_check):.2f} us CPU per check "
                    f"(runs {', '.join(f'{x:.2f}' for x in per_check)})")
            for probes, r in row["daemon"].items():
                r["bare_us"] = sum(row["bare_ns"][p] for p in BARE[probes]) / 1000
                r["ratio"] = r["us_per_check"] / r["bare_us"]
                if probes == LISTS[0] and "default_burst" in row["bare_ns"]:
                    r["burst_us"] = row["bare_ns"]["default_burst"] / 1000
                    r["burst_ratio"] = r["us_per_check"] / r["burst_us"]
            log(f"N={n}: bare calls (ns, best of all runs): " +
                ", ".join(f"{k}={v}" for k, v in row["bare_ns"].items()))
            results.append(row)
        finally:
            for peer in peers:
                peer.stop()
    return results


def costs_markdown(results):
    out = ["| held | probes | connwatchd CPU per check (µs) | bare calls, each in its own C loop "
           "(µs) | ratio |", "|---|---|---|---|---|"]
    notes = []
    for row in results:
        for probes, r in row["daemon"].items():
            bare = " + ".join(f"{p} {row['bare_ns'][p] / 1000:.3f}" for p in BARE[probes])
            out.append(f"| {row['targets']:,} | `{probes}` | {r['us_per_check']:.2f} | "
                       f"{bare} = {r['bare_us']:.3f} | {r['ratio']:.2f} |")
            if "burst_us" in r:
                b = row["bare_ns"]
                notes.append(
                    f"- {row['targets']:,} held: the three default calls one after the other on "
                    f"each socket, in a C loop: {b['default'] / 1000:.3f} µs in descriptor order, "
                    f"{b['default_random'] / 1000:.3f} µs in random order, "
                    f"{r['burst_us']:.3f} µs made as connwatchd makes them ({row['burst']} sockets "
                    f"every 50 ms, CPU time): connwatchd's {r['us_per_check']:.2f} µs is "
                    f"{r['burst_ratio']:.2f} x that.")
    return "\n".join(out + [""] + notes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="build directory with connwatchd and connwatch-peer")
    ap.add_argument("--part", choices=["matrix", "costs", "both"], default="both")
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 18000])
    ap.add_argument("--window", type=float, default=5, help="seconds of checks measured per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure (the minimum is kept)")
    ap.add_argument("--nice", type=int, default=0, help="niceness of connwatchd and the C loop "
                    "(negative needs root)")
    ap.add_argument("--smoke", action="store_true", help="CI: both parts, small and short, no goal")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--keep-busy", action="store_true",
                    help="run a spinning process at nice 19 on every CPU while measuring costs, "
                         "so that no CPU sleeps between connwatchd's 50 ms slots (on an idle VM "
                         "the wake-up from an idle state costs more than the probes)")
    args = ap.parse_args()
    args.daemon = os.path.abspath(os.path.join(args.build, "connwatchd"))
    args.peer = os.path.abspath(os.path.join(args.build, "connwatch-peer"))
    raise_nofile()
    sizes, window, lists, repeats = args.targets, args.window, LISTS, args.repeats
    if args.smoke:
        sizes, window, lists, repeats = [200], 2, LISTS[:1], 1
    workdir = tempfile.mkdtemp(prefix="connwatch-probes-")
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load": open("/proc/loadavg").read().split()[:3]}
    status = 0
    try:
        if args.part in ("matrix", "both"):
            cells, why = run_matrix(args, workdir)
            if cells is None:
                print(f"\nDetection matrix {why}")
            else:
                report["matrix"] = cells
                print("\n## Detection matrix\n\n" + matrix_markdown(cells))
        if args.part in ("costs", "both"):
            spinners = []
            if args.keep_busy:
                for _ in range(os.cpu_count() or 1):
                    spinners.append(subprocess.Popen(
                        ["nice", "-n", "19", "sh", "-c", "while :; do :; done"]))
            try:
                results = run_costs(args, workdir, sizes, window, lists, repeats)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
            report["keep_busy"] = args.keep_busy
            report["costs"] = results
            print("\n## Costs\n\n" + costs_markdown(results))
            biggest = results[-1]["daemon"].get(LISTS[0])
            if biggest and not args.smoke and biggest["ratio"] > 1.3:
                print(f"\nGOAL MISSED: the default probes cost {biggest['ratio']:.2f} x their bare "
                      f"calls at {results[-1]['targets']:,} targets (goal <= 1.3)")
                status = 1
        print(f"\nload average at the start: {' '.join(report['load'])}; {report['date']}"
              + ("; CPUs kept busy by nice 19 spinners" if args.keep_busy else ""))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
