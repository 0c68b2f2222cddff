"""Predictions of a trained Net, or of its ONNX export, on MNIST-style 28x28 digits (s5/image.py
makes them from pictures)."""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s5 import onnx_predict
from s5.checkpoint import file_sha256
from s5.constants import SIDE, UNCERTAIN_BELOW
from utils import normalize

SOURCE_KEY = "source_checkpoint_sha256"  # an ONNX file's record of the checkpoint it came from


@dataclass(frozen=True)
class Prediction:
    """The Net's answer for one image: the 10 probabilities in digit order, and what they say."""

    probabilities: tuple[float, ...]

    @property
    def digit(self) -> int:
        """The most likely digit (the lowest one on a tie)."""
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)

    @property
    def probability(self) -> float:
        """The most likely digit's probability."""
        return self.probabilities[self.digit]

    @property
    def top3(self) -> list[tuple[int, float]]:
        """The three likeliest (digit, probability) pairs, likeliest first."""
        p = self.probabilities
        return [(d, p[d]) for d in sorted(range(len(p)), key=lambda d: -p[d])[:3]]

    @property
    def uncertain(self) -> bool:
        """Whether the top probability is below ``UNCERTAIN_BELOW``."""
        return self.probability < UNCERTAIN_BELOW


def to_batch(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 0..255 or float 0..1, shape (28, 28), (N, 28, 28) or (N, 1, 28, 28) -> the Net's
    normalized (N, 1, 28, 28) float tensor."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or tuple(x.shape[1:]) != (SIDE, SIDE):
        raise ValueError(
            f"predict expects images of shape (N, 28, 28) or (N, 1, 28, 28), or one (28, 28) "
            f"image; got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return normalize(x)
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError("images hold NaN or infinite values; predict needs finite pixels")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"float images must be in [0, 1] (white ink on black), got values "
                f"{float(x.min()):.3g}..{float(x.max()):.3g}; pass uint8 0..255, or divide by 255 "
                "(do not normalize first)"
            )
        return normalize(x)
    raise ValueError(f"images must be uint8 (0..255) or float (0..1), got {x.dtype}")


class OnnxNet:
    """A Net exported by ``python -m tools.export``, run by onnxruntime on the CPU: called like the
    Net on a normalized (N, 1, 28, 28) batch, it returns the (N, 10) log-probabilities."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.session = onnx_predict.load(self.path, torch.get_num_threads())  # PyTorch's threads
        self.source_sha256 = self.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(onnx_predict.run(self.session, x.numpy(), batch_size=len(x)))


def exported_net(checkpoint: str | Path) -> OnnxNet | None:
    """The checkpoint's ONNX export beside it (``<name>.onnx``), when onnxruntime is installed and
    the export was made from this very file (its SHA-256 is recorded in the export: a checkpoint
    changed since, e.g. by --resume, keeps PyTorch); otherwise None."""
    path = Path(checkpoint).with_suffix(".onnx")
    if not path.is_file() or importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        net = OnnxNet(path)
    except Exception:  # a damaged or foreign .onnx file: the checkpoint's own Net is used instead
        return None
    return net if net.source_sha256 == file_sha256(checkpoint) else None


def predict(model: torch.nn.Module | OnnxNet, images: torch.Tensor | np.ndarray,
            batch_size: int = 128) -> list[Prediction]:
    """One ``Prediction`` per image. ``images`` are MNIST-style already (white digit on black,
    28x28): they are only normalized, never re-centred; see ``to_batch`` for the accepted shapes
    and dtypes. ``batch_size`` 128 keeps a batch's activations in the CPU's cache. Raises
    ``ValueError`` on non-finite input, or when the model's outputs are not finite (broken
    weights)."""
    if images is None:  # an empty (0, 28, 28) batch is fine: no images, no predictions
        raise ValueError("predict expects images: uint8 0..255 or float 0..1, shaped (N, 28, 28), "
                         "(N, 1, 28, 28) or (28, 28); got None")
    if batch_size < 1:
        raise ValueError(f"predict's batch_size must be at least 1, got {batch_size}")
    x = to_batch(images)
    onnx = isinstance(model, OnnxNet)  # onnxruntime takes the batch as it is, on the CPU
    device = torch.device("cpu") if onnx else next(model.parameters()).device
    if len(x) >= 256 and not onnx:
        # a folder: a channels_last copy of the Net is faster on a CPU (oneDNN); the same digits,
        # probabilities within about 1e-6, and the caller's Net is left as it is
        layout = torch.channels_last
        model, x = copy.deepcopy(model).to(memory_format=layout), x.contiguous(memory_format=layout)
    results = []
    with torch.inference_mode():
        for chunk in x.split(batch_size):
            probs = model(chunk.to(device)).exp()
            if not torch.isfinite(probs).all():
                raise ValueError("the model's outputs are NaN or infinite: its weights are broken")
            results += [Prediction(tuple(p)) for p in probs.float().cpu().tolist()]
    return results
