"""Predictions with a trained Net on MNIST-style digits, and the digits of image files as tensors.

The library behind predict.py (it never imports a script); the reading and preprocessing itself is s5/image.py's
(no torch: ``python -m tools.onnx_predict`` reads files with it too). From Python:

    from s5 import digits
    from s5.checkpoint import load_trained_net
    net = load_trained_net("checkpoints/<run-id>.pt")
    [result] = digits.predict(net, digits.read_image("seven.png"))   # or digits.preprocess(gray_array)
    result.digit, result.probability, result.top3, result.uncertain
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from s5 import image
from s5.checkpoint import file_sha256
from s5.constants import SIDE, UNCERTAIN_BELOW
from s5.image import ImageError  # what read_image(s) raise, for digits' callers
from utils import normalize

SOURCE_KEY = "source_checkpoint_sha256"  # export.py records in an ONNX file which checkpoint bytes it was made from


@dataclass(frozen=True)
class Prediction:
    """The most likely digit, its probability, the three likeliest (digit, probability) pairs, and whether
    the probability is below ``UNCERTAIN_BELOW``."""

    digit: int
    probability: float
    top3: list[tuple[int, float]]
    uncertain: bool


# --------------------------------------------------------------------------------------------------
# Image files as tensors (s5/image.py reads and preprocesses them)
# --------------------------------------------------------------------------------------------------


def preprocess(gray: np.ndarray | Image.Image, name: str = "image", *, deslant: bool = True) -> torch.Tensor:
    """``image.preprocess`` as a tensor: grey levels 0..255 (H, W) -> a uint8 (28, 28) MNIST-style digit."""
    return torch.from_numpy(image.preprocess(gray, name, deslant=deslant))


def read_image(path: str | Path) -> torch.Tensor:
    """``image.read_image`` as a tensor: the file's uint8 (28, 28) digit; ``ImageError`` naming the file."""
    return torch.from_numpy(image.read_image(path))


def read_images(paths: Iterable[str | Path], workers: int | None = None) -> list[torch.Tensor | ImageError]:
    """``image.read_images`` as tensors: a (28, 28) uint8 tensor or the file's ``ImageError`` for each, in order."""
    return [r if isinstance(r, ImageError) else torch.from_numpy(r) for r in image.read_images(paths, workers)]


# --------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------


def to_batch(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 0..255 or float 0..1, shape (28, 28), (N, 28, 28) or (N, 1, 28, 28) -> normalized (N, 1, 28, 28)."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or tuple(x.shape[1:]) != (SIDE, SIDE):
        raise ValueError(
            f"predict expects images of shape (N, 28, 28) or (N, 1, 28, 28), or one (28, 28) image; "
            f"got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return normalize(x)
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError("images hold NaN or infinite values; predict needs finite pixels")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"float images must be in [0, 1] (white ink on black), got values {float(x.min()):.3g}.."
                f"{float(x.max()):.3g}; pass uint8 0..255, or divide by 255 (do not normalize first)"
            )
        return normalize(x)
    raise ValueError(f"images must be uint8 (0..255) or float (0..1), got {x.dtype}")


class OnnxNet:
    """A Net exported by export.py, run by onnxruntime on the CPU: called like the Net on a normalized
    (N, 1, 28, 28) batch, it returns the (N, 10) log-probabilities (export.py checks the digits and
    log-probabilities against PyTorch's on the MNIST test set)."""

    def __init__(self, path: str | Path) -> None:
        from s5 import onnx_predict  # imports onnxruntime (requirements-extras.txt)

        self.path = Path(path)
        self.session = onnx_predict.load(self.path, torch.get_num_threads())  # as many threads as PyTorch
        self.source_sha256 = self.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.session.get_inputs()[0].name: x.numpy()})[0])


def exported_net(checkpoint: str | Path) -> OnnxNet | None:
    """The checkpoint's ONNX export beside it (``python -m tools.export CHECKPOINT`` writes ``<name>.onnx``), when
    onnxruntime is installed and the export was made from this very file (export.py records its SHA-256: a
    checkpoint changed since, e.g. by --resume, keeps PyTorch); otherwise None."""
    path = Path(checkpoint).with_suffix(".onnx")
    if not path.is_file() or importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        net = OnnxNet(path)
    except Exception:  # a damaged or foreign .onnx file: the checkpoint's own Net is used, as without one
        return None
    return net if net.source_sha256 == file_sha256(checkpoint) else None


def predict(model: torch.nn.Module | OnnxNet, images: torch.Tensor | np.ndarray,
            batch_size: int = 128) -> list[Prediction]:
    """One ``Prediction`` per image. ``images`` are MNIST-style already (white digit on black, 28x28):
    they are only normalized, never re-centred; see ``to_batch`` for the accepted shapes and dtypes.
    ``batch_size`` 128: the activations of 128 images stay in the CPU's cache (1,000 at once ran 1.45x slower).
    Raises ``ValueError`` on non-finite input, or when the model's outputs are not finite (broken weights)."""
    if images is None:  # an empty (0, 28, 28) batch is fine: no images, no predictions
        raise ValueError("predict expects images: uint8 0..255 or float 0..1, shaped (N, 28, 28), (N, 1, 28, 28) "
                         "or (28, 28); got None")
    if batch_size < 1:
        raise ValueError(f"predict's batch_size must be at least 1, got {batch_size}")
    x = to_batch(images)
    onnx = isinstance(model, OnnxNet)  # onnxruntime takes the batch as it is, on the CPU
    device = torch.device("cpu") if onnx else next(model.parameters()).device
    if len(x) >= 256 and not onnx:  # a folder: a channels_last copy of the Net runs 1.6x
        # faster on a CPU (oneDNN); the same digits, probabilities within about 1e-6 (the caller's Net is unchanged)
        layout = torch.channels_last
        model, x = copy.deepcopy(model).to(memory_format=layout), x.contiguous(memory_format=layout)
    results = []
    with torch.inference_mode():
        for chunk in x.split(batch_size):
            probs = model(chunk.to(device)).exp()
            if not torch.isfinite(probs).all():
                raise ValueError("the model's outputs are NaN or infinite: its weights are broken")
            top_p, top_d = probs.topk(3, dim=1)
            for p, d in zip(top_p.tolist(), top_d.tolist(), strict=True):
                results.append(Prediction(d[0], p[0], list(zip(d, p, strict=True)), p[0] < UNCERTAIN_BELOW))
    return results
