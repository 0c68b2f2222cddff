"""The draw-a-digit page: its logic (``s5.page.analyse``), its command line
(``python -m tools.app``), and the page in a real browser.

The Net is trained here in seconds on drawn 0, 1 and 7 (as in test_predict.py). The browser tests
drive Debian's Chromium (/usr/bin/chromium) with Playwright for Python; they are skipped, with the
reason, when gradio, playwright or chromium is missing (`pip install -r requirements-app.txt`,
`apt-get install chromium`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from test_predict import draw_digit, drawn_dataset, one_thread

import utils
from model import Net
from s5 import checkpoint, digits, explain, page
from s5.image import preprocess, to_gray
from tools import app as app_tool
from tools import browser

CHROMIUM = browser.CHROMIUM


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Net, Path]:
    """A Net that reads drawn 0, 1 and 7, and its checkpoint file: the conv layers stay random and
    only fc1/fc2 are trained, on their cached input, so that it takes seconds."""
    torch.manual_seed(0)
    net = Net().eval()
    images, labels = drawn_dataset(200, seed=0)
    with one_thread():
        cached = []
        hook = net.fc1.register_forward_hook(
            lambda module, inputs, output: cached.append(inputs[0]))
        with torch.no_grad():
            net(utils.normalize(images))
        hook.remove()
        optimizer = torch.optim.Adam([*net.fc1.parameters(), *net.fc2.parameters()], lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(400):
            idx = torch.randint(0, len(images), (64,), generator=generator)
            loss = F.nll_loss(F.log_softmax(net.fc2(F.relu(net.fc1(cached[0][idx]))), dim=1),
                              labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net, checkpoint.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "drawn.pt", model=net)


def sketch(digit: int, size: int = 280, width: int = 22) -> np.ndarray:
    """A digit as on the page's sketch pad: opaque black strokes on a transparent RGBA canvas."""
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
        result = page.analyse(net, sketch(digit, size))
    assert result["digit"] == digit, result["message"]
    assert str(digit) in result["message"]
    probs = result["probabilities"]
    assert list(probs) == [str(d) for d in range(10)]
    assert abs(sum(probs.values()) - 1) < 1e-4 and max(probs, key=probs.get) == str(digit)
    assert result["probability"] == pytest.approx(probs[str(digit)], abs=1e-5)
    assert result["uncertain"] == (result["probability"] < digits.UNCERTAIN_BELOW)
    assert result["net_input"].shape == (28, 28) and result["net_input"].dtype == np.uint8
    # what predict.py's preprocessing gives for the picture laid on white, at the page's size
    gray = to_gray(sketch(digit, size), page.PAGE_SIDE)
    assert max(gray.shape) <= page.PAGE_SIDE
    assert np.array_equal(result["net_input"], preprocess(gray))
    assert set(result["feature_maps"]) == set(explain.CONV_LAYERS)
    for grid in [*result["feature_maps"].values(), result["saliency"], result["net_input_large"]]:
        assert grid.dtype == np.uint8 and grid.ndim in (2, 3) and min(grid.shape[:2]) >= 150
        assert grid.std() > 0  # not a blank picture


def test_analyse_runs_the_net_once_for_a_prediction(trained) -> None:
    net, _ = trained
    batches = []
    hook = net.register_forward_hook(lambda module, inputs, output: batches.append(len(inputs[0])))
    try:
        with one_thread():
            result = page.analyse(net, sketch(7), inside=False)
    finally:
        hook.remove()
    assert batches == [1] and result["digit"] == 7
    assert result["top3"][0] == (7, result["probability"]) == (7, result["probabilities"]["7"])


def test_analyse_accepts_rgb_and_gray_and_flags_uncertain(trained) -> None:
    net, _ = trained
    rgba = sketch(7)
    on_white = to_gray(rgba)
    assert on_white.max() == 255 and on_white.min() == 0
    rgb = np.repeat(on_white[..., None], 3, axis=2).astype(np.uint8)
    with one_thread():
        assert page.analyse(net, rgb)["digit"] == 7
        assert page.analyse(net, on_white)["digit"] == 7
        assert page.analyse(net, Image.fromarray(rgba))["digit"] == 7
        # a Net that cannot tell digits apart: every probability 0.1, uncertain as in predict.py
        flat = Net().eval()
        torch.nn.init.zeros_(flat.fc2.weight)
        torch.nn.init.zeros_(flat.fc2.bias)
        result = page.analyse(flat, rgba)
    assert result["uncertain"] and "Uncertain" in result["message"]
    assert "uncertain" in page.headline(result)


@pytest.mark.parametrize("image", [None, np.zeros((400, 400, 4), np.uint8),
                                   np.full((280, 280, 3), 255, np.uint8),
                                   np.full((50, 60), 128.0)],
                         ids=["none", "transparent", "white", "grey"])
def test_analyse_empty_canvas_gives_a_message_not_an_exception(trained, image) -> None:
    net, _ = trained
    result = page.analyse(net, image)
    assert result["digit"] is None and result["message"] == page.EMPTY_MESSAGE
    assert (result["probabilities"] is None and result["feature_maps"] is None
            and result["saliency"] is None)
    assert "draw a digit" in page.headline(result).lower()


def test_build_app_returns_blocks(trained) -> None:
    gr = pytest.importorskip("gradio", reason="gradio is an optional extra: "
                                              "pip install -r requirements-app.txt")
    blocks = page.build_app(trained[0], "drawn.pt")
    assert isinstance(blocks, gr.Blocks)
    assert blocks.analytics_enabled is False  # the page works offline: no outside connection
    assert blocks.delete_cache == (3600, 3600)  # uploads do not pile up in the temporary folder


def test_strokes_from_json_takes_the_pads_points_and_nothing_else() -> None:
    assert page.strokes_from_json(json.dumps(browser.SEVEN)) == browser.SEVEN
    # clipped to the pad
    assert page.strokes_from_json("[[[-0.5, 2], [0.5, 0.25]], []]") == [[(0.0, 1.0), (0.5, 0.25)]]
    garbage = [None, "", "[]", "{}", "not json", "[1, 2]", '[[["a", "b"]]]', "[[[0.1, 0.2, 0.3]]]",
               "[[[NaN, 0.5]]]", "[" * 100_000, json.dumps([[[0.5, 0.5]] * (page.MAX_POINTS + 1)])]
    for value in garbage:
        assert page.strokes_from_json(value) == [], value[:40] if value else value


def test_the_pads_points_drawn_again_read_as_the_digit(trained) -> None:
    canvas = page.sketch_canvas(browser.SEVEN)
    assert canvas.shape == (page.PAGE_SIDE, page.PAGE_SIDE) and canvas.dtype == np.uint8
    assert canvas.min() == 0 and canvas.max() == 255
    assert page.sketch_canvas([[(0.5, 0.5)]]).min() == 0  # a tap leaves a dot
    with one_thread():
        assert page.analyse(trained[0], page.sketch_canvas(browser.SEVEN_IN_ONE))["digit"] == 7
        assert page.analyse(trained[0], page.sketch_canvas(browser.ONE))["digit"] == 1
        light = page.analyse(trained[0], canvas, inside=False)
    assert light["digit"] == 7 and light["feature_maps"] is None and light["saliency"] is None


def png(width: int, height: int, *, kind: str = "1-bit", ink_rows: range = range(0)) -> bytes:
    """A white PNG built with zlib, row by row, so that no picture of that size is ever held.

    ``kind``: 1-bit or 16-bit grey, or RGBA (white and transparent, the ink black and opaque).
    ``ink_rows`` are ink across the middle third."""
    bit_depth, colour, paper, ink = {"1-bit": (1, 0, b"\xff", b"\x00"),
                                     "16-bit": (16, 0, b"\xff\xff", b"\x00\x00"),
                                     "rgba": (8, 6, b"\xff\xff\xff\x00", b"\x00\x00\x00\xff")}[kind]
    if kind == "1-bit":  # eight pixels a byte
        width = (width + 7) // 8
    third = width // 3
    white = b"\x00" + paper * width  # filter byte 0, then the row
    inked = b"\x00" + paper * third + ink * (width - 2 * third) + paper * third
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(inked if y in ink_rows else white)
                    for y in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    width = width * 8 if kind == "1-bit" else width
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("kind", ["not an image", "empty", "truncated", "bomb"])
def test_an_unreadable_upload_is_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "upload.png"
    seven = tmp_path / "seven.png"
    draw_digit(7, (240, 300), thickness=22).save(seven)
    content = {"not an image": b"%PDF-1.4 not a picture\n" * 1000, "empty": b"",
               "truncated": seven.read_bytes()[:400],
               "bomb": png(20_000, 20_000)}[kind]  # 400 Mpx: beyond Pillow's 179 Mpx limit
    path.write_bytes(content)
    message = page.read_upload(str(path))
    assert isinstance(message, str) and "\n" not in message and message.startswith("upload.png ")
    assert message.endswith(". Drop a PNG or JPEG photo of one digit.")
    assert str(tmp_path) not in message  # the user's file name, not the server's cache path
    assert {"not an image": "is not an image", "empty": "is empty (0 bytes)",
            "truncated": "could not be read", "bomb": "DecompressionBomb"}[kind] in message, message
    assert page.read_upload(None) is None and isinstance(page.read_upload(str(seven)), np.ndarray)


@pytest.mark.parametrize(("kind", "limit_mb"), [("1-bit", 512), ("16-bit", 512), ("rgba", 1024)])
def test_a_huge_upload_is_reduced_while_read_in_bounded_memory(trained, tmp_path: Path, kind: str,
                                                               limit_mb: int) -> None:
    """A 13,000x13,000 PNG (a bar) through the page's upload path, in a fresh process: the peak
    memory it adds stays within the decoded picture and a band of it at a time."""
    path = tmp_path / "huge.png"
    # a thick bar: ink to read
    path.write_bytes(png(13_000, 13_000, kind=kind, ink_rows=range(2_000, 3_000)))
    assert path.stat().st_size < 2**20
    code = """if True:
        import json, resource, sys
        from s5 import checkpoint, page
        from tools.browser import SEVEN
        net = checkpoint.load_given_or_newest(sys.argv[2])[0]
        # the page is warm before its first upload
        page.analyse(net, page.sketch_canvas(SEVEN), inside=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = page.analyse(net, page.read_upload(sys.argv[1]), inside=False)
        added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps({"added_mb": added / 1024, "message": result["message"]}))"""
    done = subprocess.run([sys.executable, "-c", code, str(path), str(trained[1])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added_mb"] < limit_mb, report
    assert report["message"] != page.EMPTY_MESSAGE  # read, not refused: there is ink


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def run_app(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.app", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_no_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_app(cwd=tmp_path)  # no checkpoints/ folder here
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "python -m tools.app: error: no checkpoint found"), done.stderr
    assert "make train" in lines[0] and "--checkpoint" in lines[0]


def test_errors_name_the_command_and_a_port_in_use_is_refused_before_serving(
        trained, capsys) -> None:
    pytest.importorskip("gradio",
                        reason="gradio is not installed: pip install -r requirements-app.txt")
    with pytest.raises(SystemExit) as usage:
        app_tool.main(["--port", "0"])
    assert usage.value.code == 2
    assert ("python -m tools.app: error: argument --port: must be >= 1, got 0"
            in capsys.readouterr().err)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert app_tool.main(["--checkpoint", str(trained[1]), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"python -m tools.app: error: cannot serve on 127.0.0.1:{port}: "), err


def test_missing_checkpoint_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_app("--checkpoint", tmp_path / "nope.pt", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.pt: no such checkpoint file" in lines[0], done.stderr


# --------------------------------------------------------------------------------------------------
# The page in headless Chromium
# --------------------------------------------------------------------------------------------------


def _browser_ready() -> None:
    pytest.importorskip("playwright",
                        reason="playwright is not installed: pip install -r requirements-app.txt")
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (Debian's package; "
                    "Playwright's own browser download is not needed)")


@pytest.fixture(scope="module")
def server(trained) -> Iterator[str]:
    """``python -m tools.app`` serving the test's checkpoint on a free loopback port, as a
    subprocess; its URL."""
    pytest.importorskip("gradio",
                        reason="gradio is not installed: pip install -r requirements-app.txt")
    with browser.serving(trained[1]) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    _browser_ready()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                     args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def tab(chromium, server):
    """A fresh tab on the app, phone-sized (390 px wide, touch), the sketch pad ready."""
    context = chromium.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    tab = context.new_page()
    tab.goto(server)
    tab.locator("#sketch canvas").first.wait_for(state="visible", timeout=60_000)
    yield tab
    context.close()


def shown_digit(tab, digit: int) -> str:
    """Wait until the page shows "Prediction: <digit>"; the prediction panel's text."""
    tab.locator("#prediction").get_by_text(f"Prediction: {digit}").first.wait_for(timeout=60_000)
    return tab.locator("#prediction").inner_text()


def test_browser_draw_seven_then_one_with_the_mouse(tab) -> None:
    assert "Prediction: –" in tab.locator("#prediction").inner_text()
    # fits a phone: no sideways scrolling
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    browser.draw_in_browser(tab, browser.SEVEN)
    text = shown_digit(tab, 7)
    assert "The Net reads 7" in text or "best guess is 7" in text
    tab.locator("#net_input img").first.wait_for(state="attached", timeout=30_000)
    assert tab.locator("#probabilities").get_by_text("7").first.is_visible()
    assert not tab.locator("#maps_conv1").is_visible()  # feature maps only when asked for
    tab.locator("#show_inside input").check()
    for panel in ["maps_conv1", "maps_conv2", "maps_conv3", "maps_conv4", "saliency"]:
        tab.locator(f"#{panel} img").first.wait_for(state="visible", timeout=30_000)
    tab.locator("#clear").click()
    tab.locator("#prediction").get_by_text("Prediction: –").first.wait_for(timeout=30_000)
    browser.draw_in_browser(tab, browser.ONE)
    assert "Prediction: 1" in shown_digit(tab, 1)


def test_browser_stroke_latency_measures_without_timing_asserts(tab) -> None:
    t = browser.stroke_latency(tab, strokes=2, warmup=0)
    assert t["strokes"] == 2 and 0 < t["median_ms"] <= t["p90_ms"]


def test_browser_a_non_image_upload_shows_one_line(tab, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"  # a text file with an image's name: the browser lets it through
    path.write_text("shopping list: milk, eggs\n" * 100)
    tab.locator("#upload input[type=file]").set_input_files(path)
    message = tab.locator("#prediction").get_by_text("notes.png is not an image").first
    message.wait_for(timeout=60_000)
    assert "Drop a PNG or JPEG photo of one digit" in message.inner_text()


def started_app(trained, tmp_path: Path) -> tuple[subprocess.Popen, str, Path, Path]:
    """``python -m tools.app`` on the test's checkpoint with a Gradio cache of its own (to look
    into) and its output in a log: the process, its URL, the log and the cache."""
    pytest.importorskip("gradio",
                        reason="gradio is not installed: pip install -r requirements-app.txt")
    log_path, cache = tmp_path / "app.log", tmp_path / "cache"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache)}
    with open(log_path, "w+") as log:  # the child keeps its own copy of the file
        proc, url = browser.start_app(trained[1], log, env=env)
    return proc, url, log_path, cache


def test_the_page_answers_a_burst_and_stays_up(trained, tmp_path: Path) -> None:
    """300 drawings sent to the page's draw event, 10 at a time, as plain HTTP from 127.0.0.1, each
    answer's picture fetched at once as a browser does: each is answered with the right digit and
    a whole picture, the page still serves afterwards, the server prints no traceback, and Ctrl-C
    stops it with 130 leaving no empty file in its cache."""
    proc, server, log, cache = started_app(trained, tmp_path)
    body = json.dumps({"data": [json.dumps(browser.SEVEN)]}).encode()

    def predict(_: int) -> tuple[str, int, int]:
        request = urllib.request.Request(f"{server}gradio_api/run/draw", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.load(response)["data"]
        # the picture the page shows: it was cut off when another answer rewrote it meanwhile
        with urllib.request.urlopen(answer[2]["url"], timeout=120) as response:
            declared, picture = int(response.headers["Content-Length"]), response.read()
        return answer[0], declared, len(picture)

    try:
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(predict, range(300)))
        with urllib.request.urlopen(server, timeout=30) as response:
            assert response.status == 200
        empty = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size == 0]
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
    finally:
        browser.stop(proc)
    assert len(answers) == 300 and all(answer.startswith("### Prediction: 7")
                                       for answer, _, _ in answers), answers[:3]
    assert all(0 < got == declared for _, declared, got in answers), answers[:3]
    assert empty == []
    out = log.read_text()
    assert "Traceback" not in out and "Content-Length" not in out, out[-3000:]
    assert status == 130 and out.strip().splitlines()[-1] == (
        "python -m tools.app: stopped by Ctrl-C; the page is closed"), out[-3000:]


def test_sigterm_stops_the_page_with_143(trained, tmp_path: Path) -> None:
    proc, _, log, _ = started_app(trained, tmp_path)
    assert browser.stop(proc) == 143  # as `kill` stops it
    out = log.read_text()
    assert "Traceback" not in out and out.strip().splitlines()[-1] == (
        "python -m tools.app: stopped by SIGTERM; the page is closed"), out


@pytest.mark.parametrize("where", ["missing/page.png", "folder", "/proc/page.png"])
def test_an_unwritable_screenshot_is_one_line_before_any_browser(tmp_path: Path, where: str,
                                                                 capsys) -> None:
    (tmp_path / "folder").mkdir()
    target = tmp_path / where  # /proc takes no files, even from root
    assert app_tool.main(["--checkpoint", str(tmp_path / "none.pt"), "--screenshot",
                          str(target)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"python -m tools.app: error: --screenshot {target}")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("how", ["drop", "file chooser"])
def test_browser_drop_a_digit_image_file(tab, tmp_path: Path, how: str) -> None:
    path = tmp_path / "seven.png"
    draw_digit(7, (240, 300), thickness=22).save(path)
    if how == "file chooser":
        tab.locator("#upload input[type=file]").set_input_files(path)
    else:  # a file dragged from the desktop and dropped on the upload area
        data = list(path.read_bytes())
        transfer = tab.evaluate_handle(
            """data => { const t = new DataTransfer();
                         t.items.add(new File([new Uint8Array(data)], "seven.png",
                                              {type: "image/png"}));
                         return t; }""", data)
        target = tab.locator("#upload button, #upload [class*=upload]").first
        target.dispatch_event("dragenter", {"dataTransfer": transfer})
        target.dispatch_event("dragover", {"dataTransfer": transfer})
        target.dispatch_event("drop", {"dataTransfer": transfer})
    assert "Prediction: 7" in shown_digit(tab, 7)


def test_latency_measures_without_timing_asserts(trained) -> None:
    t = browser.latency(trained[0], calls=3)
    assert t["calls"] == 3 and 0 < t["median_ms"] <= t["p90_ms"]
