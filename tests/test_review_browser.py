"""The review page in a real browser (Debian's chromium, headless, driven by chromedriver's W3C
WebDriver HTTP API over urllib): open the tokened URL, rate three lesions with the keyboard, find
them in the exported labels.

Run as a script, it takes the README's picture of any cohort and predictions folder:
    python tests/test_review_browser.py MANIFEST PREDICTIONS docs/review.png [SUBJECT LESION_ID]
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_review_support import Server, free_port, make_review_cohort

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium/chromedriver not installed")]
KEYS = {"ArrowLeft": "\ue012", "ArrowUp": "\ue013", "ArrowRight": "\ue014", "ArrowDown": "\ue015"}


class WebDriver:
    """The handful of W3C WebDriver commands the test needs."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.log = open(tmp / "chromedriver.log", "w")
        self.proc = subprocess.Popen([DRIVER, f"--port={self.port}"], stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chrome-profile'}",
                "--window-size=1500,1000", "--force-device-scale-factor=1"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": args}, "goog:loggingPrefs": {"browser": "ALL"}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]
        self.cmd("POST", "/window/rect", {"width": 1500, "height": 1180})

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.loads(res.read())["value"]

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not self.js(script):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {script}")
            time.sleep(0.05)

    def key(self, key):
        k = KEYS.get(key, key)
        self.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]}]})

    def console_errors(self) -> list[str]:
        """SEVERE browser-console entries (JS errors, CSP violations, failed requests)."""
        return [e["message"] for e in self.cmd("POST", "/se/log", {"type": "browser"})
                if e["level"] == "SEVERE"]

    def quit(self):
        try:
            self.cmd("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(10)
            self.log.close()


IMAGES_LOADED = ("const im = [...document.querySelectorAll('figure.view img')];"
                 "return im.length === 6 && im.every(i => i.complete && i.naturalWidth === 320);")


def test_browser_rates_three_lesions_with_the_keyboard(tmp_path):
    cohort = make_review_cohort(tmp_path / "cohort")
    server = Server(cohort, rater="bob")
    driver = None
    try:
        # another rater already rated a few lesions, so the agreement table has something to show
        order = json.loads(server.get("/api/lesions?order=uncertainty"))["lesions"]
        for les, rating in zip(order, ["rim+", "rim-", "rim-", "rim+"]):
            server.rate(les["subject"], les["lesion_id"], rating, "alice")
        driver = WebDriver(tmp_path)
        driver.cmd("POST", "/url", {"url": server.url})
        driver.wait("return document.querySelectorAll('#list button').length === 7")
        assert "token" not in driver.cmd("GET", "/url")  # the token left the address bar
        driver.wait(IMAGES_LOADED)
        # scrolling: ArrowUp moves the active (axial) view one slice up
        driver.key("ArrowUp")
        driver.wait("return document.querySelector('figure.view.active figcaption').textContent"
                    ".includes('+1')")
        expected = []
        for i, key in enumerate(["1", "0", "ArrowRight", "1"]):
            saved = int(driver.js("return +document.querySelector('#status').dataset.saved"))
            current = driver.js("return document.querySelector('#list button.current').dataset.index")
            driver.key(key)
            if key == "ArrowRight":
                driver.wait(f"return document.querySelector('#list button.current').dataset.index"
                            f" !== '{current}'")
                continue
            driver.wait(f"return +document.querySelector('#status').dataset.saved === {saved + 1}")
            les = order[int(current)]
            expected.append((les["subject"], str(les["lesion_id"]), "1" if key == "1" else "0", "bob"))
        assert driver.js("return document.querySelector('#status').className") != "error"
        assert driver.console_errors() == []
        driver.wait(IMAGES_LOADED)
        driver.wait("return document.querySelectorAll('#agreement tbody tr').length === 3")
        png = base64.b64decode(driver.cmd("GET", "/screenshot"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
        (tmp_path / "review.png").write_bytes(png)
        tsv = server.get("/api/export").decode()
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
    rows = {tuple(ln.split("\t")[:4]) for ln in tsv.strip().split("\n")[1:]}
    assert len(expected) == 3 and set(expected) <= rows
    assert len([r for r in rows if r[3] == "bob"]) == 3
    # the same labels through the command line export, after the server is gone
    out = tmp_path / "labels.tsv"
    subprocess.run([os.sys.executable, "-m", "rimscope", "review", "--predictions",
                    str(cohort["predictions"]), "--export", str(out)], check=True, capture_output=True)
    assert set(expected) <= {tuple(ln.split("\t")[:4]) for ln in out.read_text().splitlines()[1:]}


def screenshot(manifest, predictions, out, subject=None, lesion_id=None, work=None):
    """docs/review.png: a second rater ("bob") rates the 16 most uncertain lesions (the model's
    call, one in four flipped), "alice" rates four with the keyboard, then the page shows
    SUBJECT/LESION_ID."""
    import tempfile

    from rimscope.runtime import atomic_path

    work = Path(work or tempfile.mkdtemp(prefix="rimscope-shot-"))
    server = Server({"manifest": Path(manifest), "predictions": Path(predictions)}, rater="alice")
    driver = None
    try:
        order = json.loads(server.get("/api/lesions?order=uncertainty"))["lesions"]
        for i, les in enumerate(order[:16]):
            server.rate(les["subject"], les["lesion_id"], "rim+" if les["rim"] != (i % 4 == 3) else "rim-",
                        "bob")
        driver = WebDriver(work)
        driver.cmd("POST", "/url", {"url": server.url})
        driver.wait("return document.querySelectorAll('#list button').length > 0")
        driver.wait(IMAGES_LOADED, 120)
        for key in "1010":
            saved = int(driver.js("return +document.querySelector('#status').dataset.saved"))
            driver.key(key)
            driver.wait(f"return +document.querySelector('#status').dataset.saved === {saved + 1}", 120)
        if subject is not None:
            idx = [i for i, les in enumerate(order)
                   if (les["subject"], les["lesion_id"]) == (subject, int(lesion_id))][0]
            driver.js(f"document.querySelectorAll('#list button')[{idx}].click()")
            driver.wait(f"return document.querySelector('#list button.current').dataset.index === '{idx}'")
        driver.wait("return document.querySelectorAll('#agreement tbody tr').length === 3", 60)
        time.sleep(0.5)
        driver.wait(IMAGES_LOADED, 120)
        errors = driver.console_errors()
        assert not errors, errors
        png = base64.b64decode(driver.cmd("GET", "/screenshot"))
        with atomic_path(out) as tmp:
            Path(tmp).write_bytes(png)
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    screenshot(*sys.argv[1:])
