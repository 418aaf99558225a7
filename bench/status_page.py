#!/usr/bin/env python3
"""The status page at scale, in headless Chromium (docs/PERFORMANCE.md), and
the demo screenshot (docs/status-page.png).

    bench/status_page.py --build build [--targets 18000] [--down 180]
    bench/status_page.py --build build --screenshot docs/status-page.png

Scale: one connwatch-peer holds TARGETS connections on loopback; DOWN more
targets point at a port nobody listens on (refused, shown first). Once every
held target is up, Chromium loads / and the script reports the time to first
contentful paint, the time until the first live refresh has rendered, the
renderer's JS heap and DOM nodes (DevTools Performance.getMetrics), the
resident memory of all Chromium processes, and the sizes of / and of the API
responses the page uses, against the full /api/v1/targets.

Screenshot: the demo (config/demo.yaml's targets with scripts/demo.sh's
peers, on ports picked here) for SETTLE seconds, then a PNG of the page."""

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "system"))
import browser  # noqa: E402


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fetch(url):
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    return body, time.monotonic() - t0


def start_daemon(build, config):
    d = subprocess.Popen([os.path.join(build, "connwatchd"), f"--config.file={config}", "--storage.path=",
                          "--web.listen-address=127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=raise_nofile)
    for line in d.stdout:
        m = re.search(r'listening.*port"?[=:]"?(\d+)', line)
        if m:
            threading.Thread(target=lambda: [None for _ in d.stdout], daemon=True).start()
            return d, f"http://127.0.0.1:{m.group(1)}/"
    raise RuntimeError("connwatchd did not start")


def peer(build, args):
    p = subprocess.Popen([os.path.join(build, "connwatch-peer")] + args,
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=raise_nofile)
    return p


def scale(args):
    work = tempfile.mkdtemp(prefix="connwatch-page-bench-")
    port, refused = free_port(), free_port()
    peers = [peer(args.build, ["--listen", f"127.0.0.1:{port}"])]
    config = os.path.join(work, "scale.yaml")
    with open(config, "w") as f:
        f.write("global: {max_connects_per_second: 20000, max_connects_in_flight: 2000}\n"
                "defaults: {check_interval: 5s, startup_jitter: 2s, backoff: {initial: 1s, max: 30s}}\n"
                "targets:\n")
        teams = ["storage", "web", "payments", "search", "auth", "mail"]
        for i in range(args.targets + args.down):
            addr = f"127.0.0.1:{port}" if i < args.targets else f"127.0.0.1:{refused}"
            f.write(f"  - name: svc-{i:05d}\n    address: {addr}\n"
                    f"    labels: {{team: {teams[i % len(teams)]}, env: prod, rack: r{i % 40}}}\n")
    daemon, base = start_daemon(args.build, config)
    chrome = None
    try:
        def all_up():
            d = json.loads(fetch(base + "api/v1/targets?compact=1&limit=1")[0])["data"]
            return d["up"] >= args.targets and d
        browser.wait_for(all_up, 180, f"{args.targets} targets up")
        chrome = browser.Browser()
        chrome.call("Performance.enable")
        blank = chrome.memory()  # before the page: the browser alone
        t0 = time.monotonic()
        chrome.navigate(base)
        load_s = time.monotonic() - t0
        fcp = chrome.eval("""new Promise(done => {
            new PerformanceObserver(list => {
              for (const e of list.getEntries())
                if (e.name === 'first-contentful-paint') done(e.startTime);
            }).observe({type: 'paint', buffered: true});
            setTimeout(() => done(null), 10000);
          })""")
        nav = json.loads(chrome.eval("JSON.stringify(performance.getEntriesByType('navigation')[0])"))
        browser.wait_for(lambda: int(chrome.eval("document.body.dataset.refreshes || '0'")) >= 2,
                         30, "two live refreshes")
        refresh_ms = float(chrome.eval("document.body.dataset.refreshMs"))
        metrics = {m["name"]: m["value"] for m in chrome.call("Performance.getMetrics")["metrics"]}
        mem = chrome.memory()
        rows = chrome.eval("document.querySelectorAll('#rows tr').length")
        page, page_s = fetch(base)
        compact, compact_s = fetch(base + "api/v1/targets?compact=1")
        events, _ = fetch(base + "api/v1/events?limit=15")
        full, full_s = fetch(base + "api/v1/targets")
        result = {
            "targets": args.targets + args.down, "down": args.down, "rows_shown": rows,
            "first_contentful_paint_ms": round(fcp, 1) if fcp else None,
            "dom_content_loaded_ms": round(nav["domContentLoadedEventEnd"], 1),
            "load_event_ms": round(nav["loadEventEnd"], 1),
            "navigate_to_load_s": round(load_s, 3),
            "live_refresh_render_ms": refresh_ms,
            "js_heap_used_bytes": int(metrics.get("JSHeapUsedSize", 0)),
            "dom_nodes": int(metrics.get("Nodes", 0)),
            "chromium_pss_bytes": mem["pss"],
            "chromium_pss_before_page_bytes": blank["pss"],
            "renderer_rss_bytes": mem["renderer_rss"],
            "page_html_bytes": len(page), "page_html_s": round(page_s, 3),
            "compact_api_bytes": len(compact), "compact_api_s": round(compact_s, 3),
            "events_api_bytes": len(events),
            "full_api_bytes": len(full), "full_api_s": round(full_s, 3),
        }
        print(json.dumps(result, indent=2))
    finally:
        if chrome:
            chrome.close()
        daemon.kill()
        for p in peers:
            p.kill()


def screenshot(args):
    work = tempfile.mkdtemp(prefix="connwatch-page-demo-")
    ports = {17001: free_port(), 17002: free_port(), 17003: free_port(), 17009: free_port()}
    peers = [peer(args.build, ["--demo", "--phase", "4s", "--listen", f"127.0.0.1:{ports[17001]}",
                               "--listen", f"127.0.0.1:{ports[17002]}"]),
             peer(args.build, ["--mode", "echo", "--heartbeat", "PING\\r\\n=+PONG\\r\\n",
                               "--listen", f"127.0.0.1:{ports[17003]}"])]
    demo = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config",
                             "demo.yaml")).read()
    for old, new in ports.items():
        demo = demo.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    config = os.path.join(work, "demo.yaml")
    open(config, "w").write(demo)
    daemon, base = start_daemon(args.build, config)
    chrome = None
    try:
        # Let the demo cycle (FIN, RST, refused, recovery) fill the history.
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            time.sleep(1)
        chrome = browser.Browser(width=1500, height=args.height)
        chrome.navigate(base)
        browser.wait_for(lambda: int(chrome.eval("document.body.dataset.refreshes || '0'")) >= 1,
                         15, "a live refresh")
        chrome.screenshot(args.screenshot)
        print(f"wrote {args.screenshot}")
    finally:
        if chrome:
            chrome.close()
        daemon.kill()
        for p in peers:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--targets", type=int, default=18000)
    ap.add_argument("--down", type=int, default=180)
    ap.add_argument("--screenshot")
    ap.add_argument("--settle", type=float, default=75, help="seconds of demo before the shot")
    ap.add_argument("--height", type=int, default=820)
    args = ap.parse_args()
    if not browser.find_chromium():
        print("chromium is not installed (scripts/setup.sh)")
        return 1
    if args.screenshot:
        screenshot(args)
    else:
        scale(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
