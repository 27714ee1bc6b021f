"""The sweep report in a real browser: headless Chromium (Debian's ``chromium``), driven over the Chrome DevTools
Protocol through ``--remote-debugging-pipe`` (standard library only; nothing is downloaded).

Renders the report of a tiny sweep (:func:`tests.test_report.tiny_sweep`) and asserts: no console errors or
uncaught exceptions, no request leaves the page (only ``file:``/``data:`` URLs), every figure decoded with a
non-zero size and non-blank pixels in the screenshot, the slope table present, the energy-coloured passage
present. The full-page screenshot is kept as ``tests/artifacts/report_sweep.png`` (ignored by git) and in pytest's
tmp directory.
"""
from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.test_report import tiny_sweep

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    env = os.environ.get("EBT_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """A minimal CDP client over the debugging pipe (fd 3: commands in, fd 4: events/results out, NUL-framed)."""

    def __init__(self, binary: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ebt-chromium-")
        cmd_r, cmd_w = os.pipe()          # we write commands → chromium reads fd 3
        out_r, out_w = os.pipe()          # chromium writes fd 4 → we read

        def child_fds():       # runs in the child before exec: put the pipe ends on fds 3 and 4 (inheritable)
            a, b = os.dup(cmd_r), os.dup(out_w)   # out of the way of 3 and 4 first
            os.dup2(a, 3)
            os.dup2(b, 4)

        # close_fds=False: pass_fds would close 3 and 4 after preexec_fn; every other fd of ours is
        # non-inheritable (PEP 446), so only 0-4 reach chromium
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=child_fds, close_fds=False)
        os.close(cmd_r)
        os.close(out_w)
        self.w = os.fdopen(cmd_w, "wb", buffering=0)
        self.r = os.fdopen(out_r, "rb", buffering=0)
        self.next_id = 0
        self.results: dict[int, dict] = {}
        self.events: list[dict] = []
        self.cv = threading.Condition()
        self.stderr_lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._stderr, daemon=True).start()

    def _reader(self):
        buf = b""
        while True:
            chunk = self.r.read(65536)
            if not chunk:
                with self.cv:
                    self.cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                obj = json.loads(msg)
                with self.cv:
                    if "id" in obj:
                        self.results[obj["id"]] = obj
                    else:
                        self.events.append(obj)
                    self.cv.notify_all()

    def _stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.put(line.decode(errors="replace"))

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self.cv:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.time() + self.timeout
        with self.cv:
            while mid not in self.results:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise TimeoutError(f"no answer to {method} (chromium {'exited' if self.proc.poll() is not None else 'silent'})")
                self.cv.wait(0.2)
            res = self.results.pop(mid)
        if "error" in res:
            raise RuntimeError(f"{method}: {res['error']}")
        return res["result"]

    def wait_event(self, method: str, session: str | None = None) -> dict:
        deadline = time.time() + self.timeout
        with self.cv:
            while True:
                for ev in self.events:
                    if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                        return ev
                if time.time() > deadline or self.proc.poll() is not None:
                    raise TimeoutError(f"no {method} event")
                self.cv.wait(0.2)

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.w, self.r):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


PROBE = r"""
(() => {
  const abs = el => { const r = el.getBoundingClientRect();
                      return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}; };
  const figs = [...document.querySelectorAll('figure.fig')].map(f => {
    const img = f.querySelector('img');
    return {id: f.id, complete: !!img && img.complete, nw: img ? img.naturalWidth : 0, nh: img ? img.naturalHeight : 0,
            src: img ? img.src.slice(0, 30) : '', rect: img ? abs(img) : null};
  });
  const table = document.querySelector('#slope-table');
  const toks = [...document.querySelectorAll('#energy-passage span.tok[data-energy]')];
  return JSON.stringify({
    figures: figs,
    slopeRows: table ? table.querySelectorAll('tr').length : 0,
    slopeText: table ? table.innerText : '',
    passageTokens: toks.length,
    passageColours: new Set(toks.map(t => getComputedStyle(t).backgroundColor)).size,
    passageTitles: toks.filter(t => /CE [0-9.]+ nats/.test(t.title)).length,
    passageRect: document.querySelector('#energy-passage') ? abs(document.querySelector('#energy-passage')) : null,
    height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
    scripts: document.scripts.length,
    textSamples: document.querySelectorAll('#text-samples pre.sample').length,
  });
})()
"""


def render(binary: str, html: Path, width: int = 1200) -> tuple[dict, bytes, list[str], list[str]]:
    """Load ``html``; returns (probe, full-page PNG, console/exception errors, requested URLs)."""
    b = Browser(binary)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            b.send(m, session=sess)
        b.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                     "mobile": False}, session=sess)
        b.send("Page.navigate", {"url": html.resolve().as_uri()}, session=sess)
        b.wait_event("Page.loadEventFired", sess)
        probe = json.loads(b.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True},
                                  session=sess)["result"]["value"])
        shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                 "clip": {"x": 0, "y": 0, "width": probe["width"],
                                                          "height": probe["height"], "scale": 1}}, session=sess)
        png = base64.b64decode(shot["data"])
        time.sleep(0.2)                               # let late console events arrive
        errors, urls = [], []
        with b.cv:
            events = list(b.events)
        for ev in events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", ""))
            elif m == "Network.loadingFailed":
                errors.append("network: " + json.dumps(p)[:300])
            elif m == "Network.requestWillBeSent":
                urls.append(p.get("request", {}).get("url", ""))
        return probe, png, errors, urls
    finally:
        b.close()


def decode_png(data: bytes):
    import matplotlib.image as mpimg
    return mpimg.imread(io.BytesIO(data), format="png")     # H × W × (3|4), floats in [0, 1]


def ink(img, rect) -> tuple[float, float]:
    """Fraction of non-white pixels and the luminance std inside ``rect`` of a screenshot."""
    import numpy as np
    x0, y0 = int(rect["x"]), int(rect["y"])
    x1, y1 = int(rect["x"] + rect["w"]), int(rect["y"] + rect["h"])
    crop = img[y0:y1, x0:x1, :3]
    if crop.size == 0:
        return 0.0, 0.0
    lum = crop.mean(-1)
    return float((lum < 0.95).mean()), float(np.std(lum))


@pytest.mark.slow
def test_sweep_report_in_headless_chromium(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not installed (apt-get install -y chromium; .ci/run installs it)")
    sweep_dir, report = tiny_sweep(tmp_path_factory)
    probe, png, errors, urls = render(binary, report)

    # keep the screenshot: pytest's tmp and a stable copy under tests/artifacts/
    shot = sweep_dir / "report_sweep.png"
    shot.write_bytes(png)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")               # test output, never committed
    (ARTIFACTS / "report_sweep.png").write_bytes(png)

    assert errors == [], errors
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls   # nothing from the network
    assert probe["scripts"] == 0

    img = decode_png(png)
    assert img.shape[0] >= probe["height"] - 2 and img.shape[1] >= probe["width"] - 2
    figs = probe["figures"]
    ids = {f["id"] for f in figs}
    # the scaling plot, learning curves, thinking, PNG samples
    assert {"fig-scaling-0", "fig-curves-0", "fig-thinking-0"} <= ids, ids
    assert any(i.startswith("fig-sample-") for i in ids), ids
    assert probe["width"] <= 1200, probe["width"]             # nothing wider than the window: no sideways scroll
    for f in figs:
        assert f["complete"] and f["nw"] > 50 and f["nh"] > 50, f
        assert f["rect"]["x"] >= 0 and f["rect"]["x"] + f["rect"]["w"] <= probe["width"] + 1, f   # fully on the page
        frac, std = ink(img, f["rect"])
        assert frac > 0.01 and std > 0.02, (f["id"], frac, std)          # something drawn, not a blank box

    assert probe["slopeRows"] >= 3 and "ebt" in probe["slopeText"] and "transformer++" in probe["slopeText"]
    assert probe["textSamples"] == 2                        # generated text of the best EBT and Transformer++
    assert probe["passageTokens"] >= 20
    assert probe["passageColours"] >= 5                     # coloured by energy, not one flat colour
    assert probe["passageTitles"] == probe["passageTokens"]  # every token has its CE on hover
    frac, _ = ink(img, probe["passageRect"])
    assert frac > 0.2                                       # the coloured passage is visible in the pixels
