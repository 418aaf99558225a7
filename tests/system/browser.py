"""Headless Chromium driven over the DevTools protocol (CDP), for the status
page's browser test (status_page_test.py) and its measurements
(bench/status_page.py). Needs Debian's chromium and python3-websocket.

Chromium runs with its own throw-away profile, listens for DevTools on a
loopback port it picks itself (read back from DevToolsActivePort), and is
killed with its process group on close()."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import websocket  # noqa: F401
except ImportError:
    # Debian's python3-websocket is pure Python: usable from another
    # interpreter (a pyenv python3 first on PATH) through its directory.
    sys.path.append("/usr/lib/python3/dist-packages")


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def wait_for(condition, timeout, what):
    """Polls condition() until it returns a true value or `timeout` seconds
    pass; raises AssertionError saying what was expected and what was seen
    (the last value, or the last exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported below
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        time.sleep(0.1)


class Browser:
    def __init__(self, width=1400, height=1000):
        import websocket  # python3-websocket

        self.binary = find_chromium()
        if not self.binary:
            raise RuntimeError("chromium not found")
        self.profile = tempfile.mkdtemp(prefix="connwatch-chromium-")
        args = [self.binary, "--headless", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                "--remote-allow-origins=*", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        args.append("about:blank")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        wait_for(lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1,
                 30, "chromium's DevToolsActivePort")
        port = int(open(port_file).read().split("\n")[0])
        self.devtools = f"http://127.0.0.1:{port}"

        def page_target():
            with urllib.request.urlopen(self.devtools + "/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            return pages[0] if pages else None

        target = wait_for(page_target, 15, "a page target")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30,
                                              suppress_origin=True)
        self.next_id = 0
        self.events = []
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression!r}: {r['exceptionDetails'].get('text')} "
                               f"{r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r["result"].get("value")

    def navigate(self, url, timeout=30):
        """Loads `url` and waits for its load event."""
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not load within {timeout}s")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        self.ws.settimeout(30)

    def screenshot(self, path):
        import base64
        r = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def memory(self):
        """Memory of the Chromium processes: {"pss": bytes, summed over all of
        them (shared pages divided among their users, so the sum is honest),
        "renderer_rss": bytes of the renderer processes}."""
        out = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        pss = renderer = 0
        for line in out.splitlines():
            pid, _, cmd = line.strip().partition(" ")
            try:
                rollup = open(f"/proc/{pid}/smaps_rollup").read()
            except OSError:
                continue
            fields = {k: int(v.split()[0]) * 1024 for k, v in
                      (l.split(":", 1) for l in rollup.splitlines()[1:] if ":" in l)}
            pss += fields.get("Pss", 0)
            if "--type=renderer" in cmd:
                renderer += fields.get("Rss", 0)
        return {"pss": pss, "renderer_rss": renderer}

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
