"""Draw a digit in the browser and see what the trained Net sees (a Gradio page).

    python app.py                          # newest checkpoints/*.pt, http://127.0.0.1:7860
    python app.py --checkpoint checkpoints/<run-id>.pt --port 8000
    python app.py --screenshot images/app.png   # draw a digit in headless Chromium, save a picture of the page
    python app.py --latency                     # draw-to-prediction time of analyse (median of 50 calls)

Draw with the mouse or a finger (or drop a photo of a digit) and the page shows, after every stroke: the predicted
digit, the 10 probabilities, the "uncertain" mark where predict.py would give one, the 28x28 image the Net
receives after predict.py's preprocessing, the most active feature maps of conv1-conv4 and a saliency map.

The page's logic is ``analyse(net, image) -> dict`` (no browser needed); ``build_app(net)`` returns the
Gradio Blocks, so a notebook can open the same page inline:

    from s5.app import build_app
    build_app(net).launch(inline=True)

Gradio (and Playwright for ``--screenshot``) are optional extras: ``pip install -r requirements-app.txt``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from s5 import digits, explain
from s5.checkpoint import CheckpointError, load_given_or_newest
from s5.image import to_gray
from s5.mnist import normalize
from s5.training import bounded

MAX_UPLOAD = "20mb"  # a photo of a digit is a few MB; Gradio refuses larger uploads before reading them
WORK_SIDE = 280  # drawings and photos are reduced to at most this (longer side, px) before preprocessing
MAPS_PER_LAYER = 8  # the most active feature maps shown per conv layer (2 rows x 4)
TILE = 80  # each feature map is shown about this many px wide (nearest-neighbour: the Net's pixels stay square)
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


def analyse(net: torch.nn.Module, image: np.ndarray | Image.Image | None) -> dict[str, Any]:
    """Everything the page shows for one drawing or photo (RGBA, RGB or grey array, 0..255, or a PIL image).

    Returns a dict: ``digit`` (int, or None when there is no digit), ``probability``, ``uncertain`` (as
    ``digits.predict`` flags it: top probability below ``digits.UNCERTAIN_BELOW``), ``top3``,
    ``probabilities`` ({"0": p0, ..., "9": p9}), ``net_input`` (the uint8 28x28 the Net receives),
    ``net_input_large`` (the same, enlarged), ``feature_maps`` ({"conv1": RGB grid, ..., "conv4": ...}),
    ``saliency`` (RGB) and ``message`` (a sentence for the page). An empty canvas (or None) gives
    ``digit`` None, a message saying so and None for every picture; it never raises for it.
    """
    empty = {"digit": None, "probability": None, "uncertain": False, "top3": [], "probabilities": None,
             "net_input": None, "net_input_large": None, "feature_maps": None, "saliency": None}
    if image is None:
        return empty | {"message": EMPTY_MESSAGE}
    gray = to_gray(image, WORK_SIDE)  # as predict.py reads a file, transparency laid on white
    try:
        small = digits.preprocess(gray, "the drawing")
    except digits.ImageError:
        return empty | {"message": EMPTY_MESSAGE}
    [result] = digits.predict(net, small)
    x = normalize(small.unsqueeze(0))  # (1, 1, 28, 28), as the Net receives it
    with torch.inference_mode():
        probs = net(x.to(next(net.parameters()).device)).exp()[0].cpu()
    maps = explain.feature_maps(net, x)
    heat = explain.saliency(net, x)[0, 0].cpu().numpy()
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
        "feature_maps": {name: feature_grid(m[0]) for name, m in maps.items()},
        "saliency": saliency_image(net_input, heat),
        "message": message,
    }


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def headline(result: dict[str, Any]) -> str:
    """The prediction as Markdown: the digit large, the uncertain mark, the message."""
    if result["digit"] is None:
        return f"### Prediction: –\n\n{result['message']}"
    mark = " ⚠️ **uncertain**" if result["uncertain"] else ""
    return f"### Prediction: {result['digit']}{mark}\n\n{result['message']}"


def _sketch_image(value: Any) -> np.ndarray | None:
    """The picture in a Sketchpad / ImageEditor value (a dict with "composite") or an Image's array."""
    if isinstance(value, dict):
        value = value.get("composite")
    return None if value is None else np.asarray(value)


# Gradio's sketch pad opens with no tool chosen ("select the draw tool to start"): choose the brush on load.
SELECT_BRUSH = """() => {
    let tries = 0;
    const pick = () => {  // waits for the pad to be built, then clicks its brush button
        const brush = document.querySelector('#sketch button[aria-label="Brush"]');
        if (brush) brush.click(); else if (tries++ < 100) setTimeout(pick, 100);
    };
    setTimeout(pick, 200);
}"""


def build_app(net: torch.nn.Module, checkpoint_name: str | None = None):
    """The page as Gradio Blocks (not launched): ``build_app(net).launch()``, or ``.launch(inline=True)``
    in a notebook."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page connects nowhere: it works offline
    import gradio as gr

    net = net.eval()
    rf = {row.layer: row.rf_out for row in explain.receptive_field(net)}

    lock = threading.Lock()  # Gradio runs events in threads; feature_maps' hooks must see one image at a time

    def update(value: Any) -> list[Any]:
        with lock:
            result = analyse(net, _sketch_image(value))
        grids = result["feature_maps"] or {}
        return [headline(result), result["probabilities"], result["net_input_large"],
                *(grids.get(name) for name in explain.CONV_LAYERS), result["saliency"]]

    # uploads are deleted from Gradio's cache an hour after they came (checked hourly) and when the page closes
    with gr.Blocks(title="S5 MNIST: draw a digit", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("## Draw a digit\nDraw one digit (0–9) with the mouse or a finger, or drop a photo below. "
                    "The Net's answer and what it sees update after every stroke."
                    + (f"\n\nCheckpoint: `{checkpoint_name}`" if checkpoint_name else ""))
        prediction = gr.Markdown(headline(analyse(net, None)), elem_id="prediction")  # above the pad on a phone
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                sketch = gr.Sketchpad(label="Draw here", type="numpy", canvas_size=(400, 400), fixed_canvas=True,
                                      brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                                      layers=False, transforms=(), elem_id="sketch")
                clear = gr.Button("Clear", variant="secondary", elem_id="clear")
                upload = gr.Image(label="…or drop / upload a photo of a digit", type="numpy", image_mode="RGBA",
                                  sources=["upload", "clipboard"], height=200, elem_id="upload")
            with gr.Column(min_width=300):
                probabilities = gr.Label(num_top_classes=10, label="Probabilities", elem_id="probabilities")
                net_input = gr.Image(label="What the Net receives (28×28 after preprocessing)", height=200,
                                     interactive=False, elem_id="net_input")
        gr.Markdown("### What the Net sees\nThe 8 most active feature maps of each conv layer (after ReLU; "
                    "brighter = stronger), and the saliency map: the input pixels that most move the decision "
                    "(|∂ log p / ∂ pixel|).")
        layers = []
        for pair in (explain.CONV_LAYERS[:2], explain.CONV_LAYERS[2:]):
            with gr.Row(equal_height=False):
                layers += [gr.Image(label=f"{name}, receptive field {rf.get(name, '?')} px", height=230,
                                    interactive=False, min_width=300, elem_id=f"maps_{name}") for name in pair]
        saliency = gr.Image(label="Saliency over the Net's input", height=230, interactive=False, elem_id="saliency")
        outputs = [prediction, probabilities, net_input, *layers, saliency]

        options = {"show_progress": "hidden", "trigger_mode": "always_last"}
        sketch.change(update, sketch, outputs, **options)
        upload.change(update, upload, outputs, **options)
        clear.click(lambda: [None, None, *update(None)], None, [sketch, upload, *outputs], **options).then(
            None, None, None, js=SELECT_BRUSH)  # clearing the pad deselects its tool
        page.load(None, None, None, js=SELECT_BRUSH)  # draw at once, without first picking the brush
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


def screenshot(url: str, path: Path, chromium: str = "/usr/bin/chromium", width: int = 1100) -> None:
    """Open ``url`` in headless Chromium, draw a 7, wait for the prediction and save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 1500})  # tall: every picture loads
        page.goto(url)
        draw_in_browser(page, SEVEN)
        page.locator("#prediction").get_by_text("Prediction: 7").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # let the pictures arrive
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        browser.close()


def sketch_canvas(strokes: list[list[tuple[float, float]]], side: int = 400, pen: int = 28) -> np.ndarray:
    """``strokes`` (fractions 0..1) drawn like the page's sketch pad: black on a transparent RGBA canvas."""
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        draw.line([(fx * side, fy * side) for fx, fy in stroke], fill=(0, 0, 0, 255), width=pen, joint="curve")
    return np.asarray(img)


def latency(net: torch.nn.Module, calls: int = 50) -> dict[str, float]:
    """Milliseconds per ``analyse`` call (median and 90th percentile of ``calls``) on the page's 400 px canvas
    with a drawn 7, one thread as the page uses."""
    canvas = sketch_canvas(SEVEN)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        analyse(net, canvas)  # warm-up
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            analyse(net, canvas)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(before)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "calls": calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A web page to draw a digit and see what the trained Net sees.")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of train.py (default: newest checkpoints/*.pt)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 for "
                        "other devices on the network, e.g. a phone)")
    parser.add_argument("--port", type=bounded(int, 1, 65535), default=7860, help="port (default 7860)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="serve on a free port, draw a 7 in headless "
                        "Chromium (/usr/bin/chromium, Playwright), save the page to PNG and exit")
    parser.add_argument("--latency", action="store_true", help="print the draw-to-prediction time of analyse "
                        "(median of 50 calls on a drawn 7) and exit; needs no gradio")
    args = parser.parse_args(argv)
    try:
        net, checkpoint, about = load_given_or_newest(args.checkpoint)
    except CheckpointError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {about}", file=sys.stderr)
    if args.latency:
        t = latency(net)
        print(f"analyse: median {t['median_ms']:.1f} ms, 90th percentile {t['p90_ms']:.1f} ms over {t['calls']} calls "
              f"(400x400 canvas, 1 thread, {Path(checkpoint).name})")
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
