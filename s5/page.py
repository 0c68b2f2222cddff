"""The draw-a-digit page: what it shows for a drawing or a photo (``analyse``, no browser needed),
the pad's strokes drawn again, and the Gradio page itself (``build_app(net).launch()``)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from s5 import digits, explain
from s5.constants import UNCERTAIN_BELOW
from s5.image import ImageError, load_gray, preprocess, to_gray
from utils import normalize

MAX_UPLOAD = "20mb"  # a photo of a digit is a few MB; Gradio refuses larger ones before reading
PAGE_SIDE = 280  # drawings and photos are reduced to at most this (longer side, px) first
MAPS_PER_LAYER = 8  # the most active feature maps shown per conv layer (2 rows x 4)
TILE = 80  # each feature map is shown about this many px wide (nearest-neighbour: square pixels)
# the pad's pen width, a fraction of its side: a drawn digit's strokes come out near MNIST's
PAD_PEN_FRACTION = 0.07
MAX_POINTS = 20_000  # points in one drawing (the pad keeps one per 2 px moved): more is no drawing
EMPTY_MESSAGE = ("No digit yet: the canvas is empty. Draw a digit with the mouse or a finger, or "
                 "drop a photo of one.")


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
    """The ``count`` most active maps (highest mean activation) of one layer, (C, h, w), as one
    RGB grid, most active first; all maps share the layer's scale (0 .. the strongest shown)."""
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
    """The saliency map (28, 28, >= 0) in colour over a dimmed copy of the Net's input (28, 28
    uint8)."""
    heat = heat / max(float(np.percentile(heat, 99.5)), 1e-12)
    heat = np.clip(heat, 0, 1)[..., None]
    base = np.repeat(digit[..., None].astype(np.float64) * 0.35, 3, axis=2)
    out = base * (1 - heat) + _rgb(heat[..., 0], "inferno").astype(np.float64) * heat
    return _upscale(np.clip(out, 0, 255).astype(np.uint8), side)


def _nothing(message: str) -> dict[str, Any]:
    """What the page shows when there is no digit to read: ``message`` and no picture."""
    return {"digit": None, "probability": None, "uncertain": False, "top3": [],
            "probabilities": None, "net_input": None, "net_input_large": None,
            "feature_maps": None, "saliency": None, "message": message}


def look_inside(net: torch.nn.Module, net_input: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """The most active feature maps of each conv layer (``feature_maps``: {"conv1": RGB grid,
    ...}) and the saliency map over the Net's input (``saliency``: RGB) for one 28x28 uint8 Net
    input."""
    small = torch.as_tensor(np.asarray(net_input))
    x = normalize(small.unsqueeze(0))  # (1, 1, 28, 28), as the Net receives it
    maps = explain.feature_maps(net, x)
    heat = explain.saliency(net, x)[0, 0].cpu().numpy()
    return {"feature_maps": {name: feature_grid(m[0]) for name, m in maps.items()},
            "saliency": saliency_image(small.numpy(), heat)}


def analyse(net: torch.nn.Module, image: np.ndarray | Image.Image | None, *,
            inside: bool = True) -> dict[str, Any]:
    """Everything the page shows for one drawing or photo (RGBA, RGB or grey array, 0..255, or a
    PIL image); the Net runs once for the prediction.

    Returns a dict: ``digit`` (int, or None when there is no digit), ``probability``,
    ``uncertain`` (as ``digits.Prediction`` says), ``top3``, ``probabilities`` ({"0": p0, ...,
    "9": p9}), ``net_input`` (the uint8 28x28 the Net receives), ``net_input_large`` (the same,
    enlarged), ``feature_maps`` and ``saliency`` as ``look_inside`` makes them (None with
    ``inside=False``), and ``message`` (a sentence for the page). An empty canvas (or None) gives
    ``digit`` None, a message saying so and None for every picture; it never raises for it.
    """
    if image is None:
        return _nothing(EMPTY_MESSAGE)
    gray = to_gray(image, PAGE_SIDE)  # as predict.py reads a file, transparency laid on white
    try:
        net_input = preprocess(gray, "the drawing")
    except ImageError:
        return _nothing(EMPTY_MESSAGE)
    [result] = digits.predict(net, net_input)
    if result.uncertain:
        message = (f"Uncertain: the Net's best guess is {result.digit} with probability "
                   f"{result.probability:.2f} (below {UNCERTAIN_BELOW}); next: "
                   + ", ".join(f"{d} ({p:.2f})" for d, p in result.top3[1:]))
    else:
        message = f"The Net reads {result.digit} with probability {result.probability:.2f}."
    seen = look_inside(net, net_input) if inside else {"feature_maps": None, "saliency": None}
    return {
        "digit": result.digit,
        "probability": result.probability,
        "uncertain": result.uncertain,
        "top3": result.top3,
        "probabilities": {str(d): p for d, p in enumerate(result.probabilities)},
        "net_input": net_input,
        "net_input_large": _upscale(net_input, 196),
        **seen,
        "message": message,
    }


def read_upload(path: str | None, name: str | None = None) -> np.ndarray | str | None:
    """An uploaded file as ``load_gray`` reads it (large pictures reduced while read, bombs
    refused), or the line the page shows when it cannot be read, naming the file ``name`` (the
    user's name for it; default: the file's own); None for no file."""
    if not path:
        return None
    try:
        return load_gray(path)
    except ImageError as exc:  # the message names the server's copy: the user's file instead
        reason = str(exc).replace(str(path), name or Path(path).name).rstrip(".")
        return f"{reason}. Drop a PNG or JPEG photo of one digit."


# --------------------------------------------------------------------------------------------------
# The drawing pad: strokes drawn in the browser, sent as points, drawn again here
# --------------------------------------------------------------------------------------------------


def strokes_from_json(text: str | None) -> list[list[tuple[float, float]]]:
    """The pad's value, JSON ``[[[x, y], ...], ...]`` (x, y: fractions 0..1 of its side), as lists
    of points; [] for anything else (an empty pad, or a value no pad sends: malformed, NaN, too
    long)."""
    if not text or len(text) > MAX_POINTS * 32:
        return []

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    def clip(v: Any) -> float:
        return min(max(float(v), 0.0), 1.0)

    try:
        strokes = [[(clip(x), clip(y)) for x, y in stroke]
                   for stroke in json.loads(text, parse_constant=refuse) if stroke]
    except (ValueError, TypeError, RecursionError):
        return []
    return strokes if sum(map(len, strokes)) <= MAX_POINTS else []


def sketch_canvas(strokes: list[list[tuple[float, float]]], side: int = PAGE_SIDE) -> np.ndarray:
    """``strokes`` (points as fractions 0..1 of the pad) drawn as the page's pad draws them: round
    black ends and joints, ``PAD_PEN_FRACTION`` of the side wide, on white; a grey (side, side)
    uint8 picture."""
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    width = max(1, round(PAD_PEN_FRACTION * side))
    for stroke in strokes:
        points = [(x * side, y * side) for x, y in stroke]
        draw.line(points, fill=0, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round ends; a tap is a dot
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
    return np.asarray(img)


# A plain 2D canvas: on each pointer-up it sends the strokes' points (a few KB of JSON), not
# pictures of the pad.
PAD_HTML = '<canvas width="400" height="400" aria-label="Draw a digit here"></canvas>'
PAD_CSS = """canvas { width: 100%; max-width: 400px; aspect-ratio: 1; display: block;
                      margin: 0 auto; background: white; border: 1px solid #ccc;
                      border-radius: 6px; touch-action: none; cursor: crosshair; }"""
PAD_JS = """
const canvas = element.querySelector('canvas');
const ctx = canvas.getContext('2d');
const strokes = [];
let stroke = null;
const point = e => {
    const box = canvas.getBoundingClientRect();
    const fraction = v => Math.round(Math.min(Math.max(v, 0), 1) * 1000) / 1000;
    return [fraction((e.clientX - box.left) / box.width),
            fraction((e.clientY - box.top) / box.height)];
};
const line = (a, b) => {
    ctx.lineWidth = PEN_FRACTION * canvas.width;
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
    // a point kept per 2 px of 400 moved
    if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) >= 0.005) stroke.push(p);
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
CLEAR_PAD = """() => {
    const pad = document.querySelector('#sketch canvas');
    pad.dispatchEvent(new Event('s5-clear', {bubbles: true}));
}"""


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def headline(result: dict[str, Any]) -> str:
    """The prediction as Markdown: the digit large, the uncertain mark, the message."""
    if result["digit"] is None:
        return f"### Prediction: –\n\n{result['message']}"
    mark = " ⚠️ **uncertain**" if result["uncertain"] else ""
    return f"### Prediction: {result['digit']}{mark}\n\n{result['message']}"


def cached_picture(picture: np.ndarray | None, cache: str | Path) -> str | None:
    """A uint8 picture as a WebP file in Gradio's cache, at the path Gradio itself gives it (a
    folder named by the hash of its bytes), or None for None.

    Gradio would rewrite that file in place for every answer that shows the same picture: a
    browser fetching it meanwhile got a cut-off file (a "Content-Length" traceback on the server)
    and a stopped server could leave it empty. Here it is written whole under another name and
    renamed into place, once; Gradio finds it there and only registers it for ``delete_cache``.
    """
    if picture is None:
        return None
    from gradio import processing_utils

    data = processing_utils.encode_pil_to_bytes(Image.fromarray(picture), "webp")
    path = Path(cache) / processing_utils.hash_bytes(data) / "image.webp"
    if path.is_file():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own per writer: two answers with the same picture may write it at once
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".image.", suffix=".webp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


def build_app(net: torch.nn.Module, checkpoint_name: str | None = None):
    """The page as Gradio Blocks (not launched): ``build_app(net).launch()``, or
    ``.launch(inline=True)`` in a notebook."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page works offline
    import gradio as gr

    net = net.eval()
    cache = gr.utils.get_upload_folder()  # where every component of the page keeps its files
    rf = {row.layer: row.rf_out for row in explain.receptive_field(net)}
    lock = threading.Lock()  # events run in threads; feature_maps' hooks see one image at a time
    panels = len(explain.CONV_LAYERS) + 1

    def shown(result: dict[str, Any]) -> list[Any]:
        return [headline(result), result["probabilities"],
                cached_picture(result["net_input_large"], cache), result["net_input"]]

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
            return [gr.skip()] * panels
        if net_input is None:
            return [None] * panels
        with lock:
            seen = look_inside(net, net_input)
        pictures = [*(seen["feature_maps"][name] for name in explain.CONV_LAYERS), seen["saliency"]]
        return [cached_picture(picture, cache) for picture in pictures]

    # uploads leave Gradio's cache an hour after they came (checked hourly) and when it closes
    with gr.Blocks(title="S5 MNIST: draw a digit", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as page:
        gr.Markdown("## Draw a digit\nDraw one digit (0–9) with the mouse or a finger, or drop a "
                    "photo below. The Net's answer updates after every stroke."
                    + (f"\n\nCheckpoint: `{checkpoint_name}`" if checkpoint_name else ""))
        # above the pad on a phone
        prediction = gr.Markdown(headline(analyse(net, None)), elem_id="prediction")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                sketch = gr.HTML("[]", html_template=PAD_HTML, css_template=PAD_CSS,
                                 js_on_load=f"const PEN_FRACTION = {PAD_PEN_FRACTION};\n{PAD_JS}",
                                 elem_id="sketch")
                clear = gr.Button("Clear", variant="secondary", elem_id="clear")
                upload = gr.Image(label="…or drop / upload a photo of a digit", type="filepath",
                                  sources=["upload", "clipboard"], height=200, elem_id="upload")
            with gr.Column(min_width=300):
                probabilities = gr.Label(num_top_classes=10, label="Probabilities",
                                         elem_id="probabilities")
                net_input = gr.Image(label="What the Net receives (28×28 after preprocessing)",
                                     height=200, interactive=False, elem_id="net_input")
        net_input_state = gr.State(None)
        show_inside = gr.Checkbox(label="Show what the Net sees: feature maps and saliency "
                                  "(computed only while shown)", value=False,
                                  elem_id="show_inside")
        with gr.Column(visible=False) as inside:
            gr.Markdown("### What the Net sees\nThe 8 most active feature maps of each conv layer "
                        "(after ReLU; brighter = stronger), and the saliency map: the input "
                        "pixels that most move the decision (|∂ log p / ∂ pixel|).")
            layers = []
            for pair in (explain.CONV_LAYERS[:2], explain.CONV_LAYERS[2:]):
                with gr.Row(equal_height=False):
                    layers += [gr.Image(label=f"{name}, receptive field {rf.get(name, '?')} px",
                                        height=230, interactive=False, min_width=300,
                                        elem_id=f"maps_{name}") for name in pair]
            saliency = gr.Image(label="Saliency over the Net's input", height=230,
                                interactive=False, elem_id="saliency")
        outputs = [prediction, probabilities, net_input, net_input_state]
        maps = {"fn": on_inside, "inputs": [net_input_state, show_inside],
                "outputs": [*layers, saliency], "show_progress": "hidden"}

        options = {"show_progress": "hidden", "trigger_mode": "always_last"}
        sketch.change(on_draw, sketch, outputs, api_name="draw", queue=False,
                      **options).then(**maps)
        # preprocess=False: the handler gets Gradio's record of the uploaded file (its path, the
        # user's name for it) unopened, where gr.Image's own preprocessing would open every upload
        # with PIL first (a generic error for a non-image) and decode it whole
        upload.change(on_upload, upload, outputs, api_name="upload", preprocess=False,
                      **options).then(**maps)
        show_inside.change(lambda wanted: gr.Column(visible=wanted), show_inside, inside,
                           show_progress="hidden").then(**maps)
        # the pad clears itself
        clear.click(lambda: None, None, upload, js=CLEAR_PAD, show_progress="hidden")
    return page
