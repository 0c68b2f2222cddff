"""Predict MNIST digits with a model written by export.py, using onnxruntime, numpy, Pillow and OpenCV (no torch).

    pip install onnxruntime numpy pillow opencv-python-headless
    python -m tools.onnx_predict MODEL.onnx IMAGE_OR_FOLDER...   # image files, folders, or .npy arrays (N, 28, 28)

Image files are read as predict.py reads them (s5/image.py: the digit found, cropped, its pen and slant brought to
MNIST's, centred in 28x28), so both give the same digits and flag the same answers uncertain; a .npy array must hold
MNIST-style digits already (white on black, 28x28, uint8 0..255 or float 0..1). From Python:

    from s5 import image, onnx_predict
    session = onnx_predict.load("checkpoints/<run-id>.onnx")
    onnx_predict.predict(session, image.read_image("seven.png"))  # -> [(digit, probability, uncertain)]

Exit status, as predict.py's: 0 every file was predicted; 1 some files could not be read (the others are still
printed); 2 usage error or a model that cannot be loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from s5 import image
from s5.constants import MNIST_MEAN, MNIST_STD, UNCERTAIN_BELOW
from s5.image import ImageError

if TYPE_CHECKING:
    import onnxruntime as ort



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
                         "input and one (N, 10) output: not an export of this Net (make one with python -m tools.export)")
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
    """``images`` as (N, 28, 28), or an ``ImageError`` (a ``ValueError``) that says what was expected (shape, dtype,
    range)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ImageError(f"{name}: expected uint8 0..255 or float 0..1 images, got {images.dtype}")
    if images.size == 0 or images.shape[-2:] != (28, 28) or images.ndim not in (2, 3):
        raise ImageError(f"{name}: expected images of shape (N, 28, 28) or (28, 28), got {images.shape}")
    if images.dtype != np.uint8 and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise ImageError(f"{name}: float images must be finite and in 0..1 (white digit on black)")
    return images.reshape(-1, 28, 28)


def read_npy(path: Path) -> np.ndarray | ImageError:
    """The (N, 28, 28) digits of a .npy array, taken as they are, or the file's error (naming it)."""
    name = str(path)
    try:
        image.check_file(path, name)
        return checked(np.load(path, allow_pickle=False), name)
    except ImageError as exc:
        return exc
    except FileNotFoundError:
        return ImageError(f"{name}: no such file")
    except Exception as exc:  # damaged, truncated, pickled objects, unreadable
        return ImageError(f"{name} could not be read as a .npy array: {type(exc).__name__}: {exc}")


def read_all(paths: list[Path]) -> list[np.ndarray | ImageError]:
    """Each file's digits or its error, in order: a .npy array's (N, 28, 28) as they are, an image file's (28, 28)
    as predict.py reads it (``image.read_images``: worker processes for a large folder)."""
    npy = [p.suffix.lower() == ".npy" for p in paths]
    pictures = iter(image.read_images([p for p, is_npy in zip(paths, npy, strict=True) if not is_npy]))
    return [read_npy(p) if is_npy else next(pictures) for p, is_npy in zip(paths, npy, strict=True)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\nusage: python -m tools.onnx_predict MODEL.onnx IMAGE_OR_FOLDER...",
              file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        session = load(args[0])
    except Exception as exc:  # onnxruntime raises its own exception types for missing or damaged files
        print(f"onnx_predict.py: error: {args[0]}: cannot load the model: {str(exc).strip().splitlines()[0]}",
              file=sys.stderr)
        return 1 if Path(args[0]).is_file() else 2  # as for checkpoints: 2 when there is no file, 1 when it is unusable
    paths = image.expand(args[1:])
    status = 0
    for path, digits in zip(paths, read_all(paths), strict=True):
        if isinstance(digits, ImageError):  # unreadable file: report it, go on with the others
            print(f"onnx_predict.py: error: {digits}", file=sys.stderr)
            status = 1
            continue
        answers = predict(session, digits)
        for i, (digit, probability, uncertain) in enumerate(answers):
            label = f"{path}[{i}]" if len(answers) > 1 else str(path)
            print(f"{label}: {digit} (probability {probability:.3f}{', uncertain' if uncertain else ''})")
    return status


if __name__ == "__main__":
    sys.exit(main())
