"""Predict MNIST digits with a model written by export.py, using onnxruntime and numpy alone (no torch).

    pip install onnxruntime numpy pillow
    python onnx_predict.py MODEL.onnx DIGIT...     # 28x28 image files, or .npy arrays of (N, 28, 28) uint8

From Python (this file has no dependency on the rest of the package; copy it anywhere):

    from s5 import onnx_predict
    session = onnx_predict.load("checkpoints/<run-id>.onnx")
    onnx_predict.predict(session, images)  # uint8 (N, 28, 28), white digit on black -> [(digit, probability), ...]

The images must already look like MNIST digits (white on black, 28x28, digit centred). Image files that are
not 28x28 are resized and dark-on-light ones inverted, nothing more; for photos and scans use predict.py,
which crops and centres the digit as MNIST did.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnxruntime as ort

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the normalization the Net was trained with
UNCERTAIN_BELOW = 0.7  # a top probability below this is reported as uncertain, here and by predict.py


def load(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the CPU for an exported Net, with ``threads`` intra-op threads (default:
    onnxruntime's, one per core); a model whose input is not (N, 1, 28, 28) or whose output is not (N, 10) is a
    ``ValueError``. predict.py (digits.OnnxNet) and export.py make their sessions here too."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if (len(inputs) != 1 or list(inputs[0].shape)[1:] != [1, 28, 28] or len(outputs) != 1
            or list(outputs[0].shape)[-1:] != [10]):
        shapes = lambda nodes: ", ".join(str(list(n.shape)) for n in nodes)  # noqa: E731
        raise ValueError(f"its inputs are {shapes(inputs)} and outputs {shapes(outputs)}, not one (N, 1, 28, 28) "
                         "input and one (N, 10) output: not an export of this Net (make one with python -m s5.export)")
    return session


def log_probs(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """(N, 10) log-probabilities for uint8 0..255 (or float 0..1) images of shape (N, 28, 28) or (28, 28)."""
    images = np.asarray(images)
    x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    x = ((x - MNIST_MEAN) / MNIST_STD).reshape(-1, 1, 28, 28)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def predict(session: ort.InferenceSession, images: np.ndarray) -> list[tuple[int, float, bool]]:
    """The most likely digit, its probability and whether that is below ``UNCERTAIN_BELOW``, one per image."""
    probs = np.exp(log_probs(session, checked(images, "images")))
    return [(int(p.argmax()), float(p.max()), float(p.max()) < UNCERTAIN_BELOW) for p in probs]


def checked(images: np.ndarray, name: str) -> np.ndarray:
    """``images`` as (N, 28, 28), or a ``ValueError`` that says what was expected (shape, dtype, range)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 0..255 or float 0..1 images, got {images.dtype}")
    if images.size == 0 or images.shape[-2:] != (28, 28) or images.ndim not in (2, 3):
        raise ValueError(f"{name}: expected images of shape (N, 28, 28) or (28, 28), got {images.shape}")
    if images.dtype != np.uint8 and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise ValueError(f"{name}: float images must be finite and in 0..1 (white digit on black)")
    return images.reshape(-1, 28, 28)


def read_digits(path: str | Path) -> np.ndarray:
    """(N, 28, 28) from a .npy file or an image file (greyscale, resized to 28x28, made white on black)."""
    path = Path(path)
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
        raise ValueError("not a regular file")
    if path.suffix == ".npy":
        return checked(np.load(path, allow_pickle=False), str(path))
    from PIL import Image

    with Image.open(path) as img:
        if img.mode.startswith(("I", "F")):  # 16/32-bit and float images: read as predict.py reads them
            pixels = np.asarray(img.convert("F"), dtype=np.float64)
            if not np.isfinite(pixels).all():
                raise ValueError("NaN or infinite pixel values")
            top = float(pixels.max())
            scale = 255 if img.mode.startswith("F") and pixels.min() >= 0 and top <= 1 else 255 / max(top, 255)
            gray = Image.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8))
        else:
            gray = img.convert("L")
        if gray.size != (28, 28):
            gray = gray.resize((28, 28), Image.LANCZOS)
        pixels = np.asarray(gray, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return (255 - pixels if border.mean() > 127 else pixels)[None]  # dark ink on light paper: invert


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\nusage: python -m s5.onnx_predict MODEL.onnx DIGIT...",
              file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        session = load(args[0])
    except Exception as exc:  # onnxruntime raises its own exception types for missing or damaged files
        print(f"onnx_predict.py: error: {args[0]}: cannot load the model: {str(exc).strip().splitlines()[0]}",
              file=sys.stderr)
        return 2
    status = 0
    for name in args[1:]:
        try:
            digits = read_digits(name)
        except Exception as exc:  # unreadable file: report it, go on with the others
            print(f"onnx_predict.py: error: {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        for i, (digit, probability, uncertain) in enumerate(predict(session, digits)):
            label = f"{name}[{i}]" if len(digits) > 1 else name
            print(f"{label}: {digit} (probability {probability:.3f}{', uncertain' if uncertain else ''})")
    return status


if __name__ == "__main__":
    sys.exit(main())
