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

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the normalization the Net was trained with


def load(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the CPU for an exported Net, with ``threads`` intra-op threads (default:
    onnxruntime's, one per core). predict.py (digits.OnnxNet) and export.py make their sessions here too."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def log_probs(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """(N, 10) log-probabilities for uint8 0..255 (or float 0..1) images of shape (N, 28, 28) or (28, 28)."""
    images = np.asarray(images)
    x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    x = ((x - MNIST_MEAN) / MNIST_STD).reshape(-1, 1, 28, 28)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def predict(session: ort.InferenceSession, images: np.ndarray) -> list[tuple[int, float]]:
    """The most likely digit and its probability, one pair per image."""
    probs = np.exp(log_probs(session, images))
    return [(int(p.argmax()), float(p.max())) for p in probs]


def read_digits(path: str | Path) -> np.ndarray:
    """uint8 (N, 28, 28) from a .npy file or an image file (greyscale, resized to 28x28, made white on black)."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.uint8).reshape(-1, 28, 28)
    from PIL import Image

    with Image.open(path) as img:
        gray = img.convert("L")
        if gray.size != (28, 28):
            gray = gray.resize((28, 28), Image.LANCZOS)
        pixels = np.asarray(gray, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return (255 - pixels if border.mean() > 127 else pixels)[None]  # dark ink on light paper: invert


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\nusage: python onnx_predict.py MODEL.onnx DIGIT...", file=sys.stderr)
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
        for i, (digit, probability) in enumerate(predict(session, digits)):
            label = f"{name}[{i}]" if len(digits) > 1 else name
            print(f"{label}: {digit} (probability {probability:.3f})")
    return status


if __name__ == "__main__":
    sys.exit(main())
