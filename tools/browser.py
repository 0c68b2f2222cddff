"""The draw-a-digit page measured and pictured: the server's share of a stroke, the page served
as a user starts it, strokes drawn in headless Chromium (Playwright), stroke-to-prediction time
and a screenshot. Used by ``python -m tools.app``, ``python -m tools.bench --page`` and the tests.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch

from s5.page import analyse, sketch_canvas

CHROMIUM = "/usr/bin/chromium"  # Debian's package: Playwright drives it, no browser download
ROOT = Path(__file__).resolve().parents[1]

# Test strokes, as the pad sends them: points as fractions 0..1 of its side.
SEVEN = [[(0.3, 0.2), (0.7, 0.2)], [(0.7, 0.2), (0.42, 0.82)]]
ONE = [[(0.44, 0.3), (0.52, 0.18), (0.52, 0.82)]]
SEVEN_IN_ONE = [[(0.3, 0.2), (0.7, 0.2), (0.42, 0.82)]]  # one stroke: one prediction to time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def latency(net: torch.nn.Module, calls: int = 50) -> dict[str, float]:
    """The server's share of a stroke in milliseconds (median and 90th percentile of ``calls``):
    a drawn 7's points drawn again and analysed, as the page's draw event does, on one thread as
    the page uses. The time a user waits in a browser is ``stroke_latency``'s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        analyse(net, sketch_canvas(SEVEN), inside=False)  # warm-up
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            analyse(net, sketch_canvas(SEVEN), inside=False)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(before)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "calls": calls}


def start_app(checkpoint: str | Path, log: IO, host: str = "127.0.0.1", timeout: float = 120,
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``python -m tools.app`` serving ``checkpoint`` on a free port of ``host`` in a subprocess,
    as a user starts it, its output into ``log`` (a file); the process and its URL once it
    answers. ``RuntimeError`` with its output if it does not start (the process is then ended)."""
    port = free_port(host)
    command = [sys.executable, "-m", "tools.app", "--checkpoint", str(checkpoint), "--host", host,
               "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://{host}:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                log.seek(0)
                raise RuntimeError(f"python -m tools.app did not start: {log.read()}") from None
            time.sleep(0.5)


def stop(proc: subprocess.Popen, timeout: float = 20) -> int:
    """End ``proc`` as ``kill`` does (SIGTERM), SIGKILL if it has not ended within ``timeout``
    seconds; its exit status."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@contextlib.contextmanager
def serving(checkpoint: str | Path, host: str = "127.0.0.1", timeout: float = 120) -> Iterator[str]:
    """``start_app`` as a context: yields the URL and stops the page on leaving."""
    with tempfile.TemporaryFile("w+") as log:
        proc, url = start_app(checkpoint, log, host, timeout)
        try:
            yield url
        finally:
            stop(proc)


def draw_in_browser(page, strokes: list[list[tuple[float, float]]],
                    selector: str = "#sketch canvas") -> None:
    """Draw ``strokes`` (points as fractions 0..1 of the canvas) with the mouse on the page's
    sketch pad (a Playwright page)."""
    canvas = page.locator(selector).first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                  for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for a, b in itertools.pairwise(points):
            for t in np.linspace(0, 1, 8)[1:]:
                page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
        page.mouse.up()


def screenshot(url: str, path: Path, chromium: str = CHROMIUM, width: int = 1100) -> None:
    """Open ``url`` in headless Chromium, draw a 7, wait for the prediction, show the feature maps,
    wait for them and save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 1500})  # every picture loads
        page.goto(url)
        draw_in_browser(page, SEVEN)
        shown = page.locator("#prediction").get_by_text(re.compile(r"Prediction: \d"))
        shown.first.wait_for(timeout=30_000)  # any digit: the checkpoint's reading of the 7
        page.locator("#show_inside input").check()
        page.locator("#saliency img").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # let the pictures arrive
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        browser.close()


# The page's own clock: the time of the last pointer-up, and of the first change of the
# prediction panel after it that shows a digit (it shows "Prediction: –" for an empty pad).
WATCH_PREDICTION = """() => {
    const panel = document.querySelector('#prediction');
    window.s5Clock = {up: null, shown: null};
    window.addEventListener('pointerup', () => { window.s5Clock.up = performance.now(); }, true);
    new MutationObserver(() => {
        const clock = window.s5Clock;
        if (clock.up !== null && clock.shown === null
                && !panel.innerText.includes('Prediction: –'))
            clock.shown = performance.now();
    }).observe(panel, {childList: true, subtree: true, characterData: true});
}"""


def stroke_latency(tab, strokes: int = 20, warmup: int = 2) -> dict[str, float]:
    """Milliseconds from the mouse-up that ends a stroke to the new prediction in the page's DOM
    (median and 90th percentile over ``strokes`` strokes, after ``warmup``), on the page open in
    ``tab`` (a Playwright page): each stroke, a 7 in one line, is drawn on a cleared pad and timed
    by the page's own clock."""
    tab.locator("#sketch canvas").first.wait_for(state="visible", timeout=60_000)
    tab.evaluate(WATCH_PREDICTION)
    times = []
    for i in range(warmup + strokes):
        tab.locator("#clear").click()
        tab.locator("#prediction").get_by_text("Prediction: –").first.wait_for(timeout=30_000)
        tab.wait_for_timeout(300)  # the clear's own events end first
        tab.evaluate("() => { window.s5Clock.up = null; window.s5Clock.shown = null; }")
        draw_in_browser(tab, SEVEN_IN_ONE)
        tab.wait_for_function("() => window.s5Clock.shown !== null", timeout=30_000)
        if i >= warmup:
            times.append(tab.evaluate("() => window.s5Clock.shown - window.s5Clock.up"))
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "strokes": strokes}


def page_latency(checkpoint: str | Path, strokes: int = 20,
                 chromium: str = CHROMIUM) -> dict[str, float]:
    """``stroke_latency`` on the page serving ``checkpoint`` (``serving``), opened in headless
    Chromium at desktop size."""
    from playwright.sync_api import sync_playwright

    with serving(checkpoint) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 1000})
            tab.goto(url)
            return stroke_latency(tab, strokes)
        finally:
            browser.close()
