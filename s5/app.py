"""Draw a digit in the browser and see what the trained Net sees (a Gradio page).

    python -m tools.app                          # newest checkpoints/*.pt, http://127.0.0.1:7860
    python -m tools.app --checkpoint checkpoints/<run-id>.pt --port 8000
    python -m tools.app --screenshot images/app.png   # draw a digit in headless Chromium, save a picture of the page
    python -m tools.app --latency                     # the server's share of a stroke (median of 50 calls)
    python -m tools.bench --page                   # stroke-to-prediction in headless Chromium, end to end

Draw with the mouse or a finger (or drop a photo of a digit) and the page shows, after every stroke: the predicted
digit, the 10 probabilities, the "uncertain" mark where predict.py would give one and the 28x28 image the Net
receives after predict.py's preprocessing; ticked, the most active feature maps of conv1-conv4 and a saliency map.
The pad sends the strokes' points, not pictures; an upload reaches ``s5.image.load_gray`` as a file (large pictures
reduced while read, bombs refused), and a file it cannot read gives one line on the page.

The page's logic is ``analyse(net, image) -> dict`` (no browser needed); ``build_app(net)`` returns the
Gradio Blocks, so a notebook can open the same page inline:

    from s5.app import build_app
    build_app(net).launch(inline=True)

Gradio (and Playwright for ``--screenshot``) are optional extras: ``pip install -r requirements-app.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from s5 import digits, explain
from s5.checkpoint import CheckpointError, load_given_or_newest
from s5.cli import bounded
from s5.image import load_gray, to_gray
from utils import normalize

MAX_UPLOAD = "20mb"  # a photo of a digit is a few MB; Gradio refuses larger uploads before reading them
WORK_SIDE = 280  # drawings and photos are reduced to at most this (longer side, px) before preprocessing
MAPS_PER_LAYER = 8  # the most active feature maps shown per conv layer (2 rows x 4)
TILE = 80  # each feature map is shown about this many px wide (nearest-neighbour: the Net's pixels stay square)
PEN = 0.07  # the pad's pen width, a fraction of its side (28 px of 400: a drawn digit's strokes come out near MNIST's)
MAX_POINTS = 20_000  # points in one drawing (the pad keeps one per 2 px moved): more is no drawing
CHROMIUM = "/usr/bin/chromium"  # Debian's package: Playwright drives it, its own browser download is not needed
EMPTY_MESSAGE = "No digit yet: the canvas is empty. Draw a digit with the mouse or a finger, or drop a photo of one."


# --------------------------------------------------------------------------------------------------
# The logic: an image in, everything the page shows out
# --------------------------------------------------------------------------------------------------


def _upscale(a: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the longer side is about ``side`` px."""
    k = max(1, round(side / max(a.shape[:2])))
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def _rgb(values: np.ndarray, cmap: str) -> np.ndarray:
    """Values 0..1 -> uint8 RGB through a matplotlib colour map."""
    return (colormaps[cmap](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)


def feature_grid(maps: torch.Tensor, count: int = MAPS_PER_LAYER, cols: int = 4) -> np.ndarray:
    """The ``count`` most active maps (highest mean activation) of one layer, (C, h, w), as one RGB grid,
    most active first; all maps share the layer's scale (0 .. the strongest activation shown)."""
    maps = maps.float().cpu()
    order = maps.mean(dim=(1, 2)).argsort(descending=True)[:count]
    chosen = maps[order].numpy()
    chosen = chosen / max(float(chosen.max()), 1e-12)
    h, w = chosen.shape[1:]
    k = max(1, math.ceil(TILE / w))
    rows, gap = math.ceil(len(chosen) / cols), 2
    grid = np.full((rows * (h * k + gap) - gap, cols * (w * k + gap) - gap, 3), 255, dtype=np.uint8)
    for i, m in enumerate(chosen):
        r, c = divmod(i, cols)
        y, x = r * (h * k + gap), c * (w * k + gap)
        grid[y : y + h * k, x : x + w * k] = _upscale(_rgb(m, "viridis"), h * k)
    return grid


def saliency_image(digit: np.ndarray, heat: np.ndarray, side: int = 196) -> np.ndarray:
    """The saliency map (28, 28, >= 0) in colour over a dimmed copy of the Net's input (28, 28 uint8)."""
    heat = heat / max(float(np.percentile(heat, 99.5)), 1e-12)
    heat = np.clip(heat, 0, 1)[..., None]
    base = np.repeat(digit[..., None].astype(np.float64) * 0.35, 3, axis=2)
    out = base * (1 - heat) + _rgb(heat[..., 0], "inferno").astype(np.float64) * heat
    return _upscale(np.clip(out, 0, 255).astype(np.uint8), side)


def _nothing(message: str) -> dict[str, Any]:
    """What the page shows when there is no digit to read: ``message`` and no picture."""
    return {"digit": None, "probability": None, "uncertain": False, "top3": [], "probabilities": None,
            "net_input": None, "net_input_large": None, "feature_maps": None, "saliency": None, "message": message}


def look_inside(net: torch.nn.Module, net_input: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """The most active feature maps of each conv layer (``feature_maps``: {"conv1": RGB grid, ...}) and the saliency
    map over the Net's input (``saliency``: RGB) for one 28x28 uint8 Net input."""
    small = torch.as_tensor(np.asarray(net_input))
    x = normalize(small.unsqueeze(0))  # (1, 1, 28, 28), as the Net receives it
    maps = explain.feature_maps(net, x)
    heat = explain.saliency(net, x)[0, 0].cpu().numpy()
    return {"feature_maps": {name: feature_grid(m[0]) for name, m in maps.items()},
            "saliency": saliency_image(small.numpy(), heat)}


def analyse(net: torch.nn.Module, image: np.ndarray | Image.Image | None, *, inside: bool = True) -> dict[str, Any]:
    """Everything the page shows for one drawing or photo (RGBA, RGB or grey array, 0..255, or a PIL image).

    Returns a dict: ``digit`` (int, or None when there is no digit), ``probability``, ``uncertain`` (as
    ``digits.predict`` flags it: top probability below ``digits.UNCERTAIN_BELOW``), ``top3``,
    ``probabilities`` ({"0": p0, ..., "9": p9}), ``net_input`` (the uint8 28x28 the Net receives),
    ``net_input_large`` (the same, enlarged), ``feature_maps`` ({"conv1": RGB grid, ..., "conv4": ...}) and
    ``saliency`` (RGB) as ``look_inside`` makes them (None with ``inside=False``), and ``message`` (a sentence for
    the page). An empty canvas (or None) gives ``digit`` None, a message saying so and None for every picture; it
    never raises for it.
    """
    if image is None:
        return _nothing(EMPTY_MESSAGE)
    gray = to_gray(image, WORK_SIDE)  # as predict.py reads a file, transparency laid on white
    try:
        small = digits.preprocess(gray, "the drawing")
    except digits.ImageError:
        return _nothing(EMPTY_MESSAGE)
    [result] = digits.predict(net, small)
    with torch.inference_mode():
        probs = net(normalize(small.unsqueeze(0)).to(next(net.parameters()).device)).exp()[0].cpu()
    net_input = small.numpy()
    if result.uncertain:
        message = (f"Uncertain: the Net's best guess is {result.digit} with probability {result.probability:.2f} "
                   f"(below {digits.UNCERTAIN_BELOW}); next: "
                   + ", ".join(f"{d} ({p:.2f})" for d, p in result.top3[1:]))
    else:
        message = f"The Net reads {result.digit} with probability {result.probability:.2f}."
    return {
        "digit": result.digit,
        "probability": result.probability,
        "uncertain": result.uncertain,
        "top3": result.top3,
        "probabilities": {str(d): float(p) for d, p in enumerate(probs.tolist())},
        "net_input": net_input,
        "net_input_large": _upscale(net_input, 196),
        **(look_inside(net, net_input) if inside else {"feature_maps": None, "saliency": None}),
        "message": message,
    }


def read_upload(path: str | None, name: str | None = None) -> np.ndarray | str | None:
    """An uploaded file as ``load_gray`` reads it (large pictures reduced while read, bombs refused), or the
    line the page shows when it cannot be read (a non-image, empty, truncated, a decompression bomb), naming the file
    ``name`` (the user's name for it; default: the file's own); None for no file."""
    if not path:
        return None
    try:
        return load_gray(path)
    except digits.ImageError as exc:  # the message names the server's copy: name the user's file instead
        reason = str(exc).replace(str(path), name or Path(path).name).rstrip(".")
        return f"{reason}. Drop a PNG or JPEG photo of one digit."


# --------------------------------------------------------------------------------------------------
# The drawing pad: strokes drawn in the browser, sent as points, drawn again here
# --------------------------------------------------------------------------------------------------


def strokes_from_json(text: str | None) -> list[list[tuple[float, float]]]:
    """The pad's value, JSON ``[[[x, y], ...], ...]`` (x, y: fractions 0..1 of its side), as lists of points;
    [] for anything else (an empty pad, or a value no pad sends: malformed, NaN, too long)."""
    if not text or len(text) > MAX_POINTS * 32:
        return []

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        strokes = [[(min(max(float(x), 0.0), 1.0), min(max(float(y), 0.0), 1.0)) for x, y in stroke]
                   for stroke in json.loads(text, parse_constant=refuse) if stroke]
    except (ValueError, TypeError, RecursionError):
        return []
    return strokes if sum(map(len, strokes)) <= MAX_POINTS else []


def sketch_canvas(strokes: list[list[tuple[float, float]]], side: int = WORK_SIDE) -> np.ndarray:
    """``strokes`` (points as fractions 0..1 of the pad) drawn as the page's pad draws them: round black ends and
    joints, ``PEN`` of the side wide, on white; a grey (side, side) uint8 picture."""
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    width = max(1, round(PEN * side))
    for stroke in strokes:
        points = [(x * side, y * side) for x, y in stroke]
        draw.line(points, fill=0, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round ends; a tap is a dot
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
    return np.asarray(img)


# A plain 2D canvas: on each pointer-up it sends the strokes' points (a few KB of JSON), not pictures of the pad.
PAD_HTML = '<canvas width="400" height="400" aria-label="Draw a digit here"></canvas>'
PAD_CSS = """canvas { width: 100%; max-width: 400px; aspect-ratio: 1; display: block; margin: 0 auto;
                      background: white; border: 1px solid #ccc; border-radius: 6px; touch-action: none;
                      cursor: crosshair; }"""
PAD_JS = """
const canvas = element.querySelector('canvas');
const ctx = canvas.getContext('2d');
const strokes = [];
let stroke = null;
const point = e => {
    const box = canvas.getBoundingClientRect();
    const fraction = v => Math.round(Math.min(Math.max(v, 0), 1) * 1000) / 1000;
    return [fraction((e.clientX - box.left) / box.width), fraction((e.clientY - box.top) / box.height)];
};
const line = (a, b) => {
    ctx.lineWidth = PEN * canvas.width;
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(a[0] * canvas.width, a[1] * canvas.height);
    ctx.lineTo(b[0] * canvas.width, b[1] * canvas.height);
    ctx.stroke();
};
const send = () => { props.value = JSON.stringify(strokes); };  // a new value is a change event
canvas.addEventListener('pointerdown', e => {
    canvas.setPointerCapture(e.pointerId);
    stroke = [point(e)];
    strokes.push(stroke);
    line(stroke[0], stroke[0]);
});
canvas.addEventListener('pointermove', e => {
    if (!stroke) return;
    const p = point(e), last = stroke[stroke.length - 1];
    line(last, p);
    if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) >= 0.005) stroke.push(p);  // 2 px of 400
});
const end = e => { if (stroke) { stroke.push(point(e)); stroke = null; send(); } };
canvas.addEventListener('pointerup', end);
canvas.addEventListener('pointercancel', end);
element.addEventListener('s5-clear', () => {
    strokes.length = 0;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    send();
});
"""
CLEAR_PAD = "() => { document.querySelector('#sketch canvas').dispatchEvent(new Event('s5-clear', {bubbles: true})); }"


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def headline(result: dict[str, Any]) -> str:
    """The prediction as Markdown: the digit large, the uncertain mark, the message."""
    if result["digit"] is None:
        return f"### Prediction: –\n\n{result['message']}"
    mark = " ⚠️ **uncertain**" if result["uncertain"] else ""
    return f"### Prediction: {result['digit']}{mark}\n\n{result['message']}"


def build_app(net: torch.nn.Module, checkpoint_name: str | None = None):
    """The page as Gradio Blocks (not launched): ``build_app(net).launch()``, or ``.launch(inline=True)``
    in a notebook."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page connects nowhere: it works offline
    import gradio as gr

    net = net.eval()
    rf = {row.layer: row.rf_out for row in explain.receptive_field(net)}
    lock = threading.Lock()  # Gradio runs events in threads; feature_maps' hooks must see one image at a time

    def shown(result: dict[str, Any]) -> list[Any]:
        return [headline(result), result["probabilities"], result["net_input_large"], result["net_input"]]

    def on_draw(value: str | None) -> list[Any]:
        strokes = strokes_from_json(value)
        with lock:
            return shown(analyse(net, sketch_canvas(strokes) if strokes else None, inside=False))

    def on_upload(upload: dict[str, Any] | None) -> list[Any]:
        gray = read_upload(upload["path"], upload.get("orig_name")) if upload else None
        if isinstance(gray, str):
            return shown(_nothing(gray))
        with lock:
            return shown(analyse(net, gray, inside=False))

    def on_inside(net_input: np.ndarray | None, wanted: bool) -> list[Any]:
        if not wanted:  # nothing is computed or sent while the maps are hidden
            return [gr.skip()] * (len(explain.CONV_LAYERS) + 1)
        if net_input is None:
            return [None] * (len(explain.CONV_LAYERS) + 1)
        with lock:
            seen = look_inside(net, net_input)
        return [*(seen["feature_maps"][name] for name in explain.CONV_LAYERS), seen["saliency"]]

    # uploads are deleted from Gradio's cache an hour after they came (checked hourly) and when the page closes
    with gr.Blocks(title="S5 MNIST: draw a digit", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("## Draw a digit\nDraw one digit (0–9) with the mouse or a finger, or drop a photo below. "
                    "The Net's answer updates after every stroke."
                    + (f"\n\nCheckpoint: `{checkpoint_name}`" if checkpoint_name else ""))
        prediction = gr.Markdown(headline(analyse(net, None)), elem_id="prediction")  # above the pad on a phone
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                sketch = gr.HTML("[]", html_template=PAD_HTML, css_template=PAD_CSS,
                                 js_on_load=f"const PEN = {PEN};\n{PAD_JS}", elem_id="sketch")
                clear = gr.Button("Clear", variant="secondary", elem_id="clear")
                upload = gr.Image(label="…or drop / upload a photo of a digit", type="filepath",
                                  sources=["upload", "clipboard"], height=200, elem_id="upload")
            with gr.Column(min_width=300):
                probabilities = gr.Label(num_top_classes=10, label="Probabilities", elem_id="probabilities")
                net_input = gr.Image(label="What the Net receives (28×28 after preprocessing)", height=200,
                                     interactive=False, elem_id="net_input")
        net_input_state = gr.State(None)
        show_inside = gr.Checkbox(label="Show what the Net sees: feature maps and saliency (computed only while "
                                  "shown)", value=False, elem_id="show_inside")
        with gr.Column(visible=False) as inside:
            gr.Markdown("### What the Net sees\nThe 8 most active feature maps of each conv layer (after ReLU; "
                        "brighter = stronger), and the saliency map: the input pixels that most move the decision "
                        "(|∂ log p / ∂ pixel|).")
            layers = []
            for pair in (explain.CONV_LAYERS[:2], explain.CONV_LAYERS[2:]):
                with gr.Row(equal_height=False):
                    layers += [gr.Image(label=f"{name}, receptive field {rf.get(name, '?')} px", height=230,
                                        interactive=False, min_width=300, elem_id=f"maps_{name}") for name in pair]
            saliency = gr.Image(label="Saliency over the Net's input", height=230, interactive=False,
                                elem_id="saliency")
        outputs = [prediction, probabilities, net_input, net_input_state]
        maps = {"fn": on_inside, "inputs": [net_input_state, show_inside], "outputs": [*layers, saliency],
                "show_progress": "hidden"}

        options = {"show_progress": "hidden", "trigger_mode": "always_last"}
        sketch.change(on_draw, sketch, outputs, api_name="draw", queue=False, **options).then(**maps)
        # preprocess=False: the handler gets Gradio's record of the uploaded file (its path, the user's name for it),
        # unopened; gr.Image's own preprocessing opens every upload with PIL first (a generic error for a non-image)
        # and, for type="numpy", decodes it whole
        upload.change(on_upload, upload, outputs, api_name="upload", preprocess=False, **options).then(**maps)
        show_inside.change(lambda wanted: gr.Column(visible=wanted), show_inside, inside,
                           show_progress="hidden").then(**maps)
        clear.click(lambda: None, None, upload, js=CLEAR_PAD, show_progress="hidden")  # the pad clears itself
    return page


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def draw_in_browser(page, strokes: list[list[tuple[float, float]]], selector: str = "#sketch canvas") -> None:
    """Draw ``strokes`` (points as fractions 0..1 of the canvas) with the mouse on the page's sketch pad
    (a Playwright page)."""
    canvas = page.locator(selector).first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for a, b in itertools.pairwise(points):
            for t in np.linspace(0, 1, 8)[1:]:
                page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
        page.mouse.up()


SEVEN = [[(0.3, 0.2), (0.7, 0.2)], [(0.7, 0.2), (0.42, 0.82)]]
ONE = [[(0.44, 0.3), (0.52, 0.18), (0.52, 0.82)]]
SEVEN_IN_ONE = [[(0.3, 0.2), (0.7, 0.2), (0.42, 0.82)]]  # one stroke: one prediction to time


def screenshot(url: str, path: Path, chromium: str = CHROMIUM, width: int = 1100) -> None:
    """Open ``url`` in headless Chromium, draw a 7, show the feature maps, wait for them and save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 1500})  # tall: every picture loads
        page.goto(url)
        draw_in_browser(page, SEVEN)
        page.locator("#prediction").get_by_text("Prediction: 7").first.wait_for(timeout=30_000)
        page.locator("#show_inside input").check()
        page.locator("#saliency img").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # let the pictures arrive
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        browser.close()


def latency(net: torch.nn.Module, calls: int = 50) -> dict[str, float]:
    """The server's share of a stroke in milliseconds (median and 90th percentile of ``calls``): a drawn 7's points
    drawn again and analysed, as ``build_app``'s draw event does, one thread as the page uses. The time a user waits
    in a browser is ``stroke_latency``'s."""
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
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "calls": calls}


@contextlib.contextmanager
def serving(checkpoint: str | Path, host: str = "127.0.0.1", timeout: float = 120) -> Iterator[str]:
    """``python -m tools.app`` serving ``checkpoint`` on a free port of ``host`` in a subprocess, as a user starts it;
    yields its URL once it answers and stops it on leaving. ``RuntimeError`` with its output if it does not start."""
    port = free_port(host)
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.app", "--checkpoint", str(checkpoint), "--host", host,
                                 "--port", str(port)], cwd=Path(__file__).resolve().parents[1], stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://{host}:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"app.py did not start: {log.read()}") from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# Page-side clock: the time of the last pointer-up, and of the first change of the prediction panel after it
# that shows a digit (the panel shows "Prediction: –" for an empty pad).
WATCH_PREDICTION = """() => {
    const panel = document.querySelector('#prediction');
    window.s5Clock = {up: null, shown: null};
    window.addEventListener('pointerup', () => { window.s5Clock.up = performance.now(); }, true);
    new MutationObserver(() => {
        const clock = window.s5Clock;
        if (clock.up !== null && clock.shown === null && !panel.innerText.includes('Prediction: –'))
            clock.shown = performance.now();
    }).observe(panel, {childList: true, subtree: true, characterData: true});
}"""


def stroke_latency(tab, strokes: int = 20, warmup: int = 2) -> dict[str, float]:
    """Milliseconds from the mouse-up that ends a stroke to the new prediction in the page's DOM (median and 90th
    percentile over ``strokes`` strokes, after ``warmup``), on the page open in ``tab`` (a Playwright page): each
    stroke, a 7 in one line, is drawn on a cleared pad and timed by the page's own clock."""
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
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "strokes": strokes}


def page_latency(checkpoint: str | Path, strokes: int = 20, chromium: str = CHROMIUM) -> dict[str, float]:
    """``stroke_latency`` on the page serving ``checkpoint`` (``serving``), opened in headless Chromium at desktop
    size."""
    from playwright.sync_api import sync_playwright

    with serving(checkpoint) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 1000})
            tab.goto(url)
            return stroke_latency(tab, strokes)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A web page to draw a digit and see what the trained Net sees.")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of train.py (default: newest checkpoints/*.pt)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 for "
                        "other devices on the network, e.g. a phone)")
    parser.add_argument("--port", type=bounded(int, 1, 65535), default=7860, help="port (default 7860)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="serve on a free port, draw a 7 in headless "
                        "Chromium (/usr/bin/chromium, Playwright), save the page to PNG and exit")
    parser.add_argument("--latency", action="store_true", help="print the server's share of a stroke (a drawn 7 "
                        "drawn again and analysed, median of 50 calls) and exit; needs no gradio. End to end in a "
                        "browser: python -m tools.bench --page")
    args = parser.parse_args(argv)
    try:
        net, checkpoint, about = load_given_or_newest(args.checkpoint)
    except CheckpointError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        return exc.exit_status  # 2: no checkpoint file; 1: one that cannot be used
    print(f"checkpoint: {about}", file=sys.stderr)
    if args.latency:
        t = latency(net)
        print(f"server's share of a stroke: median {t['median_ms']:.1f} ms, 90th percentile {t['p90_ms']:.1f} ms over "
              f"{t['calls']} calls (1 thread, {Path(checkpoint).name}); end to end: python -m tools.bench --page")
        return 0
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("app.py: error: gradio is not installed; run `make app` or `pip install -r requirements-app.txt`",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # one small image: a single thread is as fast and leaves the other cores free
    page = build_app(net, Path(checkpoint).name)
    if args.screenshot:
        port = free_port(args.host)
        page.launch(server_name=args.host, server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            screenshot(f"http://{args.host}:{port}/", args.screenshot)
        finally:
            page.close()
        print(f"wrote {args.screenshot}")
        return 0
    try:  # a port in use or a host that is not an address of this machine: one line, before Gradio tries
        socket.create_server((args.host, args.port)).close()
    except OSError as exc:
        print(f"app.py: error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}; choose another "
              "--port, or --host 127.0.0.1", file=sys.stderr)
        return 2
    page.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
