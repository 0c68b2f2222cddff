"""The Net's ONNX export run by onnxruntime, with numpy, Pillow and OpenCV alone (no torch): its
sessions, log-probabilities and best digits, and the .npy arrays and image files it reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from s5 import image
from s5.constants import MNIST_MEAN, MNIST_STD, UNCERTAIN_BELOW
from s5.image import ImageError

if TYPE_CHECKING:
    import onnxruntime as ort


class ModelError(ValueError):
    """An export that loads but cannot answer: its outputs are NaN or infinite (broken weights)."""


def no_model_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened as a model file (absent, a folder, a FIFO...), or None: the
    checkpoint rule of s5/checkpoint.py, without torch."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return f"{path}: no such model file (it does not exist)"
    if stat.S_ISREG(mode):
        return None
    # a FIFO would block onnxruntime's read forever
    what = "is a folder" if stat.S_ISDIR(mode) else "is not a regular file"
    return f"{path}: no such model file (it {what})"


def load(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the CPU for an exported Net, with ``threads`` intra-op threads
    (default: onnxruntime's, one per core); a model whose input is not (N, 1, 28, 28) or whose
    output is not (N, 10) is a ``ValueError``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if (len(inputs) != 1 or list(inputs[0].shape)[1:] != [1, 28, 28] or len(outputs) != 1
            or list(outputs[0].shape)[-1:] != [10]):
        shapes = lambda nodes: ", ".join(str(list(n.shape)) for n in nodes)  # noqa: E731
        raise ValueError(f"its inputs are {shapes(inputs)} and outputs {shapes(outputs)}, not one "
                         "(N, 1, 28, 28) input and one (N, 10) output: not an export of this Net "
                         "(make one with python -m tools.export)")
    return session


def run(session: ort.InferenceSession, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) log-probabilities of a normalized (N, 1, 28, 28) batch, ``batch_size`` images at a
    time."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    name = session.get_inputs()[0].name
    starts = range(0, len(x), batch_size)
    parts = [session.run(None, {name: x[i:i + batch_size]})[0] for i in starts]
    return np.concatenate(parts) if parts else np.zeros((0, 10), np.float32)


def log_probs(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """(N, 10) log-probabilities for uint8 0..255 (or float 0..1) images of shape (N, 28, 28) or
    (28, 28)."""
    images = np.asarray(images)
    x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    out = run(session, ((x - MNIST_MEAN) / MNIST_STD).reshape(-1, 1, 28, 28))
    if not np.isfinite(out).all():  # the images are checked finite: the weights are broken
        raise ModelError("the model's outputs are NaN or infinite: its weights are broken")
    return out


def best_digits(session: ort.InferenceSession,
                images: np.ndarray) -> list[tuple[int, float, bool]]:
    """For each image, the most likely digit, its probability and whether that is below
    ``UNCERTAIN_BELOW``; a ``ModelError`` when the model's outputs are not finite."""
    probs = np.exp(log_probs(session, checked(images, "images")))
    return [(int(p.argmax()), float(p.max()), float(p.max()) < UNCERTAIN_BELOW) for p in probs]


def answer(probabilities: list[float] | np.ndarray) -> dict:
    """One image's entry in ``--json`` output (predict.py's and this tool's): the digit (the lowest
    on a tie), its probability, the top 3, whether it is uncertain, and all ten, to 6 decimals."""
    p = [float(q) for q in probabilities]
    ranked = sorted(range(len(p)), key=lambda d: -p[d])  # stable: ties keep the lower digit first
    return {"digit": ranked[0], "probability": round(p[ranked[0]], 6),
            "top3": [[d, round(p[d], 6)] for d in ranked[:3]],
            "uncertain": p[ranked[0]] < UNCERTAIN_BELOW,
            "probabilities": [round(q, 6) for q in p]}


def checked(images: np.ndarray, name: str) -> np.ndarray:
    """``images`` as (N, 28, 28), or an ``ImageError`` (a ``ValueError``) that says what was
    expected (shape, dtype, range)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ImageError(f"{name}: expected uint8 0..255 or float 0..1 images, got {images.dtype}")
    if images.size == 0 or images.shape[-2:] != (28, 28) or images.ndim not in (2, 3):
        raise ImageError(f"{name}: expected images of shape (N, 28, 28) or (28, 28), got "
                         f"{images.shape}")
    if images.dtype != np.uint8 and not (np.isfinite(images).all() and images.min() >= 0
                                         and images.max() <= 1):
        raise ImageError(f"{name}: float images must be finite and in 0..1 (white digit on black)")
    return images.reshape(-1, 28, 28)


def read_npy(path: Path) -> np.ndarray | ImageError:
    """The (N, 28, 28) digits of a .npy array, taken as they are, or the file's error (naming
    it)."""
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
    """Each file's digits or its error, in order: a .npy array's (N, 28, 28) as they are, an image
    file's (28, 28) as predict.py reads it (``image.read_images``)."""
    npy = [p.suffix.lower() == ".npy" for p in paths]
    files = [p for p, is_npy in zip(paths, npy, strict=True) if not is_npy]
    pictures = iter(image.read_images(files))
    return [read_npy(p) if is_npy else next(pictures) for p, is_npy in zip(paths, npy, strict=True)]
