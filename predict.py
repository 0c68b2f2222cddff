"""Read handwritten digits in your own image files with a trained Net.

    python predict.py IMAGE_OR_FOLDER... [--checkpoint PATH] [--json]

Each image is made to look like an MNIST digit (see ``preprocess``), then classified. From Python:

    import predict
    from checkpoint import load_trained_net
    net = load_trained_net("checkpoints/<run-id>.pt")
    [result] = predict.predict(net, predict.read_image("seven.png"))  # or a (N, 28, 28) uint8 batch
    result.digit, result.probability, result.top3

Exit status: 0 every file was predicted; 1 some files could not be read (the others are still
printed); 2 usage error or no usable checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from checkpoint import CheckpointError, load_trained_net, newest_checkpoint
from mnist import normalize

INK = 50  # after inversion and contrast stretch, a pixel above this (of 255) is ink
MIN_CONTRAST = 32  # ink must be this much brighter than the background (of 255), else the image is empty
BOX, SIDE = 20, 28  # as in MNIST: the longer side of the digit is 20 px, centred by mass in 28x28


class ImageError(ValueError):
    """A file that holds no digit image we can read; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    """The most likely digit, its probability, and the three likeliest (digit, probability) pairs."""

    digit: int
    probability: float
    top3: list[tuple[int, float]]


def load_gray(path: str | Path) -> np.ndarray:
    """The image file as float grey levels 0..255, shape (H, W); transparent parts are laid on white."""
    name = str(path)
    try:
        if Path(path).is_dir():
            raise ImageError(f"{name} is a folder with no files in it")
        if Path(path).stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes), not an image")
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # photos: apply the camera's rotation
            if img.mode.startswith(("I", "F")):  # 16/32-bit integer or float grey: scale into 0..255
                gray = np.asarray(img, dtype=np.float64)
                return gray * (255 / max(float(gray.max()), 255)) if gray.size else gray
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
            return np.asarray(img.convert("L"), dtype=np.float64)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image PIL can read (PNG, JPEG, BMP, ...)") from None
    except Exception as exc:  # damaged, truncated, unreadable (permissions), too large
        raise ImageError(f"{name} could not be read: {type(exc).__name__}: {exc}") from None


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def preprocess(gray: np.ndarray | Image.Image, name: str = "image") -> torch.Tensor:
    """Grey levels 0..255 (H, W), or an "L" PIL image -> a uint8 (28, 28) MNIST-style digit: white ink on black.

    Inverts when the border is light (median > 127), stretches the contrast between background and
    ink, crops to the ink (pixels > ``INK``), scales the longer side to 20 px (LANCZOS) and pastes it
    into 28x28 with its centre of mass at (14, 14). A 28x28 image with a dark border is taken as
    already MNIST-formatted and returned unchanged. Raises ``ImageError`` for an image with no ink.
    """
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2:
        raise ValueError(f"preprocess expects one grey image (H, W), got shape {gray.shape}")
    if gray.size == 0:
        raise ImageError(f"{name} is an empty image (zero size)")
    light = np.median(_border(gray)) > 127
    ink = 255 - gray if light else gray
    background = np.median(_border(ink))
    contrast = float(ink.max() - background)
    if contrast < MIN_CONTRAST:
        raise ImageError(f"{name} is an empty image: no ink, it is (nearly) all one colour")
    if gray.shape == (SIDE, SIDE) and not light:
        return torch.from_numpy(np.clip(np.rint(gray), 0, 255).astype(np.uint8))
    ink = np.clip((ink - background) * (255 / contrast), 0, 255)
    rows, cols = np.flatnonzero((ink > INK).any(1)), np.flatnonzero((ink > INK).any(0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = BOX / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(np.rint(ink).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS))
    h, w = digit.shape
    ys, xs = np.indices(digit.shape)
    mass = float(digit.sum())
    cy, cx = ((ys * digit).sum() / mass, (xs * digit).sum() / mass) if mass else ((h - 1) / 2, (w - 1) / 2)
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - h))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - w))
    canvas = np.zeros((SIDE, SIDE), dtype=np.uint8)
    canvas[top : top + h, left : left + w] = digit
    return torch.from_numpy(canvas)


def read_image(path: str | Path) -> torch.Tensor:
    """Read an image file and preprocess it: a uint8 (28, 28) tensor; ``ImageError`` naming the file."""
    return preprocess(load_gray(path), str(path))


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
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"float images must be in [0, 1] (white ink on black), got values {float(x.min()):.3g}.."
                f"{float(x.max()):.3g}; pass uint8 0..255, or divide by 255 (do not normalize first)"
            )
        return normalize(x)
    raise ValueError(f"images must be uint8 (0..255) or float (0..1), got {x.dtype}")


def predict(model: torch.nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 1000) -> list[Prediction]:
    """One ``Prediction`` per image. ``images`` are MNIST-style already (white digit on black, 28x28):
    they are only normalized, never re-centred; see ``to_batch`` for the accepted shapes and dtypes."""
    x = to_batch(images)
    device = next(model.parameters()).device
    results = []
    with torch.inference_mode():
        for chunk in x.split(batch_size):
            top_p, top_d = model(chunk.to(device)).exp().topk(3, dim=1)
            for p, d in zip(top_p.tolist(), top_d.tolist(), strict=True):
                results.append(Prediction(d[0], p[0], list(zip(d, p, strict=True))))
    return results


def expand(args: list[str]) -> list[Path]:
    """The files named, with each folder replaced by its files (sorted, not recursive, hidden ones skipped)."""
    files = []
    for arg in args:
        path = Path(arg)
        inside = sorted(path.iterdir()) if path.is_dir() else []
        inside = [p for p in inside if p.is_file() and not p.name.startswith(".")]
        files += inside or [path]  # a file, or a folder with no files (reported as such)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Read the digit in each image file with a trained Net.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, BMP, ...) or folders")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of train.py (default: newest checkpoints/*.pt)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of results instead of text")
    args = parser.parse_args(argv)
    try:
        checkpoint = args.checkpoint or newest_checkpoint()
        model = load_trained_net(checkpoint)
    except CheckpointError as exc:
        print(f"predict.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {checkpoint}", file=sys.stderr)
    entries, images = [], []
    for path in expand(args.images):
        entries.append({"file": str(path)})
        try:
            images.append(read_image(path))
        except ImageError as exc:
            entries[-1]["error"] = str(exc)
    good = [e for e in entries if "error" not in e]
    for entry, p in zip(good, predict(model, torch.stack(images)) if images else [], strict=True):
        entry.update(digit=p.digit, probability=round(p.probability, 6), top3=[[d, round(q, 6)] for d, q in p.top3])
    if args.json:
        print("[\n" + ",\n".join(f"  {json.dumps(e)}" for e in entries) + "\n]")  # one file a line
    else:
        for e in entries:
            if "error" in e:
                print(f"error: {e['error']}", file=sys.stderr)
            else:
                top3 = ", ".join(f"{d} {q:.3f}" for d, q in e["top3"])
                print(f"{e['file']}: {e['digit']} (probability {e['probability']:.3f}; top 3: {top3})")
    return 0 if len(good) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
