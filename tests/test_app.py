"""app.py: the draw-a-digit page's logic (``analyse``), its command line, and the page in a real browser.

The Net is trained here in seconds on drawn 0, 1 and 7 (as in test_predict.py). The browser tests drive
Debian's Chromium (/usr/bin/chromium) with Playwright for Python; they are skipped, with the reason, when
gradio, playwright or chromium is missing (`pip install -r requirements-app.txt`, `apt-get install chromium`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from PIL import Image, ImageDraw
from test_predict import draw_digit, drawn_dataset, one_thread

from model import Net
from s5 import app, checkpoint, digits, explain, mnist
from s5.image import to_gray

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Net, Path]:
    """A Net that reads drawn 0, 1 and 7 (conv layers random, fc1/fc2 trained on their cached input; a few
    seconds on one core), and its checkpoint file."""
    torch.manual_seed(0)
    net = Net().eval()
    images, labels = drawn_dataset(200, seed=0)
    with one_thread():
        cached = []
        hook = net.fc1.register_forward_hook(lambda module, inputs, output: cached.append(inputs[0]))
        with torch.no_grad():
            net(mnist.normalize(images))
        hook.remove()
        optimizer = torch.optim.Adam([*net.fc1.parameters(), *net.fc2.parameters()], lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(400):
            idx = torch.randint(0, len(images), (64,), generator=generator)
            loss = F.nll_loss(F.log_softmax(net.fc2(F.relu(net.fc1(cached[0][idx]))), dim=1), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net, checkpoint.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "drawn.pt", model=net)


def sketch(digit: int, size: int = 280, width: int = 22) -> np.ndarray:
    """A digit drawn like on the page's sketch pad: opaque black strokes on a transparent RGBA canvas."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    s, ink = size / 280, (0, 0, 0, 255)
    if digit == 7:
        draw.line([(85 * s, 60 * s), (195 * s, 60 * s)], fill=ink, width=round(width * s))
        draw.line([(195 * s, 60 * s), (115 * s, 225 * s)], fill=ink, width=round(width * s))
    elif digit == 1:
        draw.line([(145 * s, 50 * s), (145 * s, 230 * s)], fill=ink, width=round(width * s))
        draw.line([(145 * s, 50 * s), (115 * s, 85 * s)], fill=ink, width=round(width * s))
    else:
        raise ValueError(digit)
    return np.asarray(img)


# --------------------------------------------------------------------------------------------------
# analyse: the logic, without a browser
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", [7, 1])
@pytest.mark.parametrize("size", [280, 800])
def test_analyse_reads_drawn_digits_and_fills_every_panel(trained, digit: int, size: int) -> None:
    net, _ = trained
    with one_thread():
        result = app.analyse(net, sketch(digit, size))
    assert result["digit"] == digit, result["message"]
    assert str(digit) in result["message"]
    probs = result["probabilities"]
    assert list(probs) == [str(d) for d in range(10)]
    assert abs(sum(probs.values()) - 1) < 1e-4 and max(probs, key=probs.get) == str(digit)
    assert result["probability"] == pytest.approx(probs[str(digit)], abs=1e-5)
    assert result["uncertain"] == (result["probability"] < digits.UNCERTAIN_BELOW)
    assert result["net_input"].shape == (28, 28) and result["net_input"].dtype == np.uint8
    # exactly what predict.py's preprocessing gives for the same picture laid on white, reduced to the page's size
    gray = to_gray(sketch(digit, size), app.WORK_SIDE)
    assert max(gray.shape) <= app.WORK_SIDE
    assert np.array_equal(result["net_input"], digits.preprocess(gray).numpy())
    assert set(result["feature_maps"]) == set(explain.CONV_LAYERS)
    for grid in [*result["feature_maps"].values(), result["saliency"], result["net_input_large"]]:
        assert grid.dtype == np.uint8 and grid.ndim in (2, 3) and min(grid.shape[:2]) >= 150
        assert grid.std() > 0  # not a blank picture


def test_analyse_accepts_rgb_and_gray_and_flags_uncertain(trained) -> None:
    net, _ = trained
    rgba = sketch(7)
    on_white = to_gray(rgba)
    assert on_white.max() == 255 and on_white.min() == 0
    rgb = np.repeat(on_white[..., None], 3, axis=2).astype(np.uint8)
    with one_thread():
        assert app.analyse(net, rgb)["digit"] == 7
        assert app.analyse(net, on_white)["digit"] == 7
        assert app.analyse(net, Image.fromarray(rgba))["digit"] == 7
        # a Net that cannot tell the digits apart: every probability 0.1, flagged uncertain as predict.py does
        flat = Net().eval()
        torch.nn.init.zeros_(flat.fc2.weight)
        torch.nn.init.zeros_(flat.fc2.bias)
        result = app.analyse(flat, rgba)
    assert result["uncertain"] and "Uncertain" in result["message"]
    assert "uncertain" in app.headline(result)


@pytest.mark.parametrize("image", [None, np.zeros((400, 400, 4), np.uint8), np.full((280, 280, 3), 255, np.uint8),
                                   np.full((50, 60), 128.0)], ids=["none", "transparent", "white", "grey"])
def test_analyse_empty_canvas_gives_a_message_not_an_exception(trained, image) -> None:
    net, _ = trained
    result = app.analyse(net, image)
    assert result["digit"] is None and result["message"] == app.EMPTY_MESSAGE
    assert result["probabilities"] is None and result["feature_maps"] is None and result["saliency"] is None
    assert "draw a digit" in app.headline(result).lower()


def test_build_app_returns_blocks(trained) -> None:
    gr = pytest.importorskip("gradio", reason="gradio is an optional extra: pip install -r requirements-app.txt")
    page = app.build_app(trained[0], "drawn.pt")
    assert isinstance(page, gr.Blocks)
    assert page.analytics_enabled is False  # the page makes no outside connection (it promises to work offline)
    assert page.delete_cache == (3600, 3600)  # uploads do not pile up in the temporary folder


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def run_app(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s5.app", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_no_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_app(cwd=tmp_path)  # no checkpoints/ folder here
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("app.py: error: no checkpoint found"), done.stderr
    assert "make train" in lines[0] and "--checkpoint" in lines[0]


def test_missing_checkpoint_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_app("--checkpoint", tmp_path / "nope.pt", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.pt: no such checkpoint file" in lines[0], done.stderr


# --------------------------------------------------------------------------------------------------
# The page in headless Chromium
# --------------------------------------------------------------------------------------------------


def _browser_ready() -> None:
    pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
    pytest.importorskip("playwright", reason="playwright is not installed: pip install -r requirements-app.txt")
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (Debian's package; Playwright's own "
                    "browser download is not needed)")


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """app.py serving the test's checkpoint on a free loopback port, as a subprocess; its URL."""
    _browser_ready()
    port = app.free_port()
    log = tmp_path_factory.mktemp("server") / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "s5.app", "--checkpoint", str(trained[1]),
                                 "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not start: {log.read_text()}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    _browser_ready()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab on the app, phone-sized (390 px wide, touch), the sketch pad ready."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    tab = context.new_page()
    tab.goto(server)
    tab.locator("#sketch canvas").first.wait_for(state="visible", timeout=60_000)
    tab.locator('#sketch button[aria-label="Brush"]').first.wait_for(timeout=60_000)
    tab.wait_for_timeout(1000)  # the page's load script picks the brush
    yield tab
    context.close()


def shown_digit(tab, digit: int) -> str:
    """Wait until the page shows "Prediction: <digit>"; the prediction panel's text."""
    tab.locator("#prediction").get_by_text(f"Prediction: {digit}").first.wait_for(timeout=60_000)
    return tab.locator("#prediction").inner_text()


def test_browser_draw_seven_then_one_with_the_mouse(page) -> None:
    assert "Prediction: –" in page.locator("#prediction").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits a phone: no sideways scrolling
    app.draw_in_browser(page, app.SEVEN)
    text = shown_digit(page, 7)
    assert "The Net reads 7" in text or "best guess is 7" in text
    # every panel got a picture: the Net's input, four feature-map grids, the saliency map
    for panel in ["net_input", "maps_conv1", "maps_conv2", "maps_conv3", "maps_conv4", "saliency"]:
        page.locator(f"#{panel} img").first.wait_for(state="attached", timeout=30_000)
    assert page.locator("#probabilities").get_by_text("7").first.is_visible()
    page.locator("#clear").click()
    page.locator("#prediction").get_by_text("Prediction: –").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # the brush is picked again after clearing
    app.draw_in_browser(page, app.ONE)
    assert "Prediction: 1" in shown_digit(page, 1)


@pytest.mark.parametrize("how", ["drop", "file chooser"])
def test_browser_drop_a_digit_image_file(page, tmp_path: Path, how: str) -> None:
    path = tmp_path / "seven.png"
    draw_digit(7, (240, 300), thickness=22).save(path)
    if how == "file chooser":
        page.locator("#upload input[type=file]").set_input_files(path)
    else:  # a file dragged from the desktop and dropped on the upload area
        data = list(path.read_bytes())
        transfer = page.evaluate_handle(
            """data => { const t = new DataTransfer();
                         t.items.add(new File([new Uint8Array(data)], "seven.png", {type: "image/png"}));
                         return t; }""", data)
        target = page.locator("#upload button, #upload [class*=upload]").first
        target.dispatch_event("dragenter", {"dataTransfer": transfer})
        target.dispatch_event("dragover", {"dataTransfer": transfer})
        target.dispatch_event("drop", {"dataTransfer": transfer})
    assert "Prediction: 7" in shown_digit(page, 7)


def test_latency_measures_without_timing_asserts(trained) -> None:
    t = app.latency(trained[0], calls=3)
    assert t["calls"] == 3 and 0 < t["median_ms"] <= t["p90_ms"]
    assert app.analyse(trained[0], app.sketch_canvas(app.SEVEN))["digit"] == 7
