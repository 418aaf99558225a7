#!/usr/bin/env python3
"""The status page in a real browser (CTest: system.status_page): headless
Chromium loads http://127.0.0.1:PORT/ from a running connwatchd watching
three connwatch-peer targets, the test takes one target's peer down, and the
page -- without being reloaded -- shows that target as down with its reason;
typing a label into the filter box hides the others; with JavaScript off the
server's first view already shows every target.

    status_page_test.py --daemon build/connwatchd --peer build/connwatch-peer

Exits 77 (CTest: skipped) with the reason when chromium or python3-websocket
is missing. Every wait polls a condition with a deadline."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402

DEADLINE = 10  # seconds, for each condition


class Peer:
    """connwatch-peer on loopback ports it picks, optionally with a control socket."""

    def __init__(self, binary, workdir, name, listens, control=False):
        self.ready = os.path.join(workdir, f"{name}.ports")
        self.control = os.path.join(workdir, f"{name}.sock") if control else None
        args = [binary, "--ready-file", self.ready]
        for _ in range(listens):
            args += ["--listen", "127.0.0.1:0"]
        if self.control:
            args += ["--control", self.control]
        self.binary = binary
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        browser.wait_for(lambda: os.path.exists(self.ready), DEADLINE, f"{name}'s ready file")
        self.ports = [int(p) for p in open(self.ready).read().split()]

    def send(self, command):
        out = subprocess.run([self.binary, "--control", self.control, "--send", command],
                             capture_output=True, text=True, timeout=DEADLINE)
        assert out.returncode == 0, f"peer {command}: {out.stdout}{out.stderr}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


ROWS_JS = """[...document.querySelectorAll('#rows tr')]
  .filter(tr => tr.offsetParent !== null)
  .map(tr => ({name: tr.cells[0].innerText, state: tr.cells[3].innerText,
               failure: tr.cells[5].innerText, colour: getComputedStyle(
                 tr.cells[3].firstElementChild).backgroundColor}))"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--peer", required=True)
    args = ap.parse_args()

    if not browser.find_chromium():
        print("SKIP: chromium is not installed (Debian package chromium; scripts/setup.sh)")
        return 77
    try:
        import websocket  # noqa: F401
    except ImportError:
        print("SKIP: python3-websocket is not installed (scripts/setup.sh)")
        return 77

    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="connwatch-status-page-")
    doomed = Peer(args.peer, work, "doomed", 1, control=True)
    others = Peer(args.peer, work, "others", 2)
    config = os.path.join(work, "connwatch.yaml")
    with open(config, "w") as f:
        f.write("defaults:\n  startup_jitter: 0s\n  check_interval: 1s\n"
                "  backoff: {initial: 100ms, max: 300ms}\ntargets:\n"
                f"  - name: doomed-db\n    address: 127.0.0.1:{doomed.ports[0]}\n"
                "    labels: {team: storage}\n"
                f"  - name: steady-web\n    address: 127.0.0.1:{others.ports[0]}\n"
                "    labels: {team: web}\n"
                f"  - name: steady-cache\n    address: 127.0.0.1:{others.ports[1]}\n"
                "    labels: {team: web}\n")
    daemon = subprocess.Popen([args.daemon, f"--config.file={config}", "--storage.path=",
                               "--web.listen-address=127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    chrome = None
    try:
        port = None
        for line in daemon.stdout:
            m = re.search(r'listening.*port"?[=:]"?(\d+)', line)
            if m:
                port = int(m.group(1))
                break
        assert port, "connwatchd printed no listening line"
        # Drain the daemon's log so it never blocks on a full pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in daemon.stdout], daemon=True).start()
        base = f"http://127.0.0.1:{port}/"
        browser.wait_for(
            lambda: json.loads(get(base + "api/v1/targets?compact=1"))["data"]["up"] == 3,
            DEADLINE, "all three targets up")

        chrome = browser.Browser()
        # The server's first view, read without JavaScript.
        chrome.call("Emulation.setScriptExecutionDisabled", value=True)
        chrome.navigate(base)
        rows = chrome.eval(ROWS_JS)
        assert sorted(r["name"] for r in rows) == ["doomed-db", "steady-cache", "steady-web"], rows
        assert all(r["state"] == "up" for r in rows), rows
        assert "3 of 3 up" in chrome.eval("document.getElementById('summary').innerText")
        chrome.call("Emulation.setScriptExecutionDisabled", value=False)

        # Live: load once, mark the document, take doomed-db's peer down.
        chrome.navigate(base + "?refresh=1")
        chrome.eval("window.loadedOnce = true")
        doomed.send("stop")  # refuse new connections
        doomed.send("close")  # and end the held one (FIN)

        def doomed_shown_down():
            rows = {r["name"]: r for r in chrome.eval(ROWS_JS)}
            r = rows.get("doomed-db")
            if r and r["state"].startswith("down") and "refused" in r["failure"]:
                return r
            live = chrome.eval("document.getElementById('live').innerText")
            raise AssertionError(f"rows {list(rows.values())}, live: {live}")

        row = browser.wait_for(doomed_shown_down, DEADLINE,
                               "doomed-db shown down with reason refused")
        assert chrome.eval("window.loadedOnce === true"), "the page was reloaded, not refreshed"
        assert int(chrome.eval("document.body.dataset.refreshes || '0'")) >= 1
        assert row["colour"] != chrome.eval(ROWS_JS)[-1]["colour"], "down and up look alike"
        first = chrome.eval(ROWS_JS)[0]["name"]
        assert first == "doomed-db", f"down target not first: {first}"
        summary = chrome.eval("document.getElementById('summary').innerText")
        assert "2 of 3 up" in summary, summary

        # The filter box hides every target without the label.
        chrome.eval("document.getElementById('q').focus()")
        chrome.call("Input.insertText", text="team=storage")
        browser.wait_for(lambda: [r["name"] for r in chrome.eval(ROWS_JS)] == ["doomed-db"],
                         DEADLINE, "only doomed-db left by the filter team=storage")
        assert "q=team%3Dstorage" in chrome.eval("location.search"), chrome.eval("location.search")
        print(f"PASS: status page in {chrome.binary} ({time.monotonic() - started:.1f}s)")
        return 0
    finally:
        if chrome:
            chrome.close()
        daemon.kill()
        daemon.wait()
        doomed.stop()
        others.stop()


if __name__ == "__main__":
    sys.exit(main())
