"""Digit image files and pictures made into MNIST-style 28x28 digits, with numpy, Pillow and OpenCV
alone (no torch): what predict.py, the page and ``python -m tools.onnx_predict`` read."""

from __future__ import annotations

import errno
import os
import stat
import sys
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import cv2  # the filters, moments and resizing: faster than scipy.ndimage on small pictures
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageOps, UnidentifiedImageError

from s5.constants import BOX, SIDE

READ_SIDE = 640  # files larger than this (longer side, px) are reduced while being read
GRID = 16  # the paper's light is estimated on at most GRID x GRID cells: shadows are large-scale
MIN_CONTRAST = 0.1  # ink must be at least 10% darker than the paper around it, else no ink
INK = 0.3  # after flattening, a pixel above this fraction of the ink's strength counts for the crop
TRIM = 0.005  # the crop box may leave out this fraction of the ink's mass at each side (specks)
FLOOR = 0.15  # at MID px, ink fainter than this fraction of the strongest is taken as paper
MID = 80  # strokes are measured and thickened at this size (4x the 20-px box)
MNIST_PEN_PX = 2.7  # MNIST's median stroke width at the 20-px box, in px (``pen_width``)
# MNIST train's 5th and 95th percentile slant (``slant``; < 0 leans right): beyond, reduced to it
SLANT = (-0.57, 0.34)
# MNIST's 90th percentile stroke width at the 20-px box: bolder strokes (a marker) are narrowed
BOLD = 3.8


class ImageError(ValueError):
    """A file or array that holds no digit image we can read; the message names the file."""


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def check_file(path: Path, name: str) -> None:
    """Raise ``ImageError`` for what is not a non-empty regular file (broken links and loops
    included)."""
    if path.is_symlink() and not path.exists():  # exists() follows the link: False for both
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ImageError(f"{name} is a symbolic link loop") from None
        raise ImageError(f"{name} is a broken symbolic link (its target {os.readlink(path)} "
                         "does not exist)")
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):  # expand() lists a folder's files: here it had none, or was not listed
        try:
            os.listdir(path)
        except OSError as exc:
            raise ImageError(f"{name} is a folder that cannot be read: "
                             f"{exc.strerror or exc}") from None
        raise ImageError(f"{name} is a folder with no files in it")
    if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
        raise ImageError(f"{name} is not a regular file")
    if path.stat().st_size == 0:
        raise ImageError(f"{name} is empty (0 bytes), not an image")


def _gray_image(img: Image.Image) -> Image.Image:
    """The picture in mode "L" (8 bit) or "F" (16/32-bit and float kept exact); transparency laid
    on white."""
    if img.mode.startswith(("I", "F")):
        return img.convert("F")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        white = Image.new("RGBA", img.size, "white")
        return Image.alpha_composite(white, img.convert("RGBA")).convert("L")
    return img.convert("L")


def _reduce_decoded(img: Image.Image, factor: int) -> Image.Image:
    """A decoded picture (only JPEG decodes at a smaller scale) box-reduced by ``factor`` in its
    own mode, a band of rows at a time, so that no full-size copy is ever made. Modes Pillow
    cannot reduce (1-bit, palette) are returned as they are."""
    sixteen = img.mode.startswith("I;16")  # Pillow's reduce lacks 16-bit: OpenCV's area average
    if not sixteen and img.mode not in ("L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK",
                                        "PA"):
        return img
    img.load()
    small = Image.new(img.mode, (-(-img.width // factor), -(-img.height // factor)))
    rows = max(1, 2**22 // (4 * img.width * factor))  # rows of the result per band: about 4 MB
    for top in range(0, small.height, rows):
        band = img.crop((0, top * factor, img.width, min(img.height, (top + rows) * factor)))
        size = (small.width, -(-band.height // factor))
        if sixteen:
            part = Image.fromarray(cv2.resize(np.asarray(band), size, interpolation=cv2.INTER_AREA))
        else:
            part = band.reduce(factor)
        small.paste(part, (0, top))
    small.info = dict(img.info)  # EXIF rotation and transparency travel with the pixels
    return small


def _open_small(img: Image.Image, side: int = READ_SIDE) -> Image.Image:
    """Grey, upright and at most about ``side`` px: large pictures are reduced early (JPEG while
    decoding), so a huge file never becomes a huge float array."""
    factor = -(-max(img.size) // side)
    if factor >= 2 and img.format == "JPEG":  # the decoder skips detail: 1/2..1/8 scale
        img.draft("L", (img.width // factor, img.height // factor))
    elif factor >= 2:
        img = _reduce_decoded(img, factor)
    ImageOps.exif_transpose(img, in_place=True)  # while the metadata is still there
    img = _gray_image(img)
    factor = -(-max(img.size) // side)
    if factor >= 2:
        img = img.reduce(factor)  # box average: a thin pen stays as a fainter line, not lost
    return img


def to_gray(image: np.ndarray | Image.Image, side: int = READ_SIDE) -> np.ndarray:
    """A picture in memory made grey, upright and small as ``load_gray`` makes a file: float grey
    levels (H, W), at most about ``side`` px on the longer side.

    ``image``: a PIL image, or a grey (H, W), RGB or RGBA (H, W, 3|4) array of 0..255; transparent
    parts are laid on white (a sketch pad's strokes are opaque on a transparent canvas)."""
    if isinstance(image, np.ndarray):
        a = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        if a.ndim == 2 and a.dtype == np.uint8:  # grey levels kept as they are ("L" or "F")
            image = Image.fromarray(a)
        elif a.ndim == 2:
            image = Image.fromarray(a.astype(np.float32), "F")
        elif a.ndim == 3 and a.shape[2] in (3, 4):
            mode = "RGBA" if a.shape[2] == 4 else "RGB"
            image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode)
        else:
            raise ValueError("expected a grey (H, W), RGB or RGBA (H, W, 3|4) image, got shape "
                             f"{a.shape}")
    else:
        image = image.copy()  # _open_small rotates in place: the caller's image stays as it is
    return np.asarray(_open_small(image, side), dtype=np.float64)


def load_gray(path: str | Path) -> np.ndarray:
    """The image file as float grey levels 0..255, shape (H, W), at most about ``READ_SIDE`` px on
    the longer side.

    Transparent parts are laid on white; a photo's EXIF rotation is applied; 16/32-bit images are
    scaled into 0..255 and float images in 0..1 are read as 0..1 (times 255). ``ImageError`` names
    the file on any failure.
    """
    name = str(path)
    try:
        check_file(Path(path), name)
        with warnings.catch_warnings():
            # such a picture is never held at full size as floats (Pillow refuses above 179 Mpx)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                mode = img.mode
                gray = np.asarray(_open_small(img), dtype=np.float64)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image PIL can read (PNG, JPEG, BMP, ...)") from None
    except Exception as exc:  # damaged, truncated, unreadable (permissions), too large
        raise ImageError(f"{name} could not be read: {type(exc).__name__}: {exc}") from None
    _check_finite(gray, name)
    if mode.startswith(("I", "F")) and gray.size:
        top = float(gray.max())
        if mode.startswith("F") and gray.min() >= 0 and top <= 1:
            return gray * 255  # a float image in 0..1, not a nearly black 0..255 one
        return gray * (255 / max(top, 255))  # 16/32-bit: the brightest value becomes 255
    return gray


def _check_finite(gray: np.ndarray, name: str) -> None:
    """NaN or infinite pixels (float TIFFs) cannot be preprocessed: an error for this file only."""
    if not np.isfinite(gray).all():
        raise ImageError(f"{name} has NaN or infinite pixel values")


# --------------------------------------------------------------------------------------------------
# Preprocessing: any picture of one digit -> an MNIST-style 28x28
# --------------------------------------------------------------------------------------------------


def _border(a: np.ndarray) -> np.ndarray:
    """The outermost pixels of a 2-D array."""
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def _kth_largest(a: np.ndarray, per: int = 2000) -> float:
    """A robust maximum: the k-th largest value, k = 1 per ``per`` pixels (a few specks are not
    the ink)."""
    flat, k = a.ravel(), max(1, a.size // per)
    if k == 1:
        return float(flat.max())
    # the k largest 16-pixel block maxima are k pixels: only pixels above the k-th of them can be
    # among the k largest, so only those are partitioned
    blocks = flat[: flat.size // 16 * 16].reshape(-1, 16).max(axis=1)
    if len(blocks) >= k:
        flat = flat[flat >= np.partition(blocks, -k)[-k]]
    return float(np.partition(flat, -k)[-k])


def _square(size: int) -> np.ndarray:
    """A size x size structuring element for OpenCV's max (dilate) and min (erode) filters."""
    return np.ones((size, size), np.uint8)


def _grid(a: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (max or median) of each cell of a grid of at most ``GRID`` x ``GRID`` cells over
    the picture."""
    h, w = a.shape
    cell = max(1, -(-max(h, w) // GRID))
    rows, cols = -(-h // cell), -(-w // cell)
    padded = cv2.copyMakeBorder(a, 0, rows * cell - h, 0, cols * cell - w, cv2.BORDER_REPLICATE)
    cells = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3)
    return reduce(cells.reshape(rows, cols, -1), axis=2)


def _spread(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Grid values smoothed (3x3 cells) and interpolated back to every pixel of ``shape``."""
    # the cells' steps softened before interpolating
    cells = cv2.blur(cells, (3, 3), borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(cells, shape[::-1], interpolation=cv2.INTER_LINEAR)  # PIL's bilinear


def _dark_ink(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper: ``_dark_ink_local``'s answer, found from the
    border's median alone when the paper is evenly lit all around the border and one side clearly
    holds the ink (most pictures: the same answer for less work)."""
    e10, paper, e90 = np.percentile(_border(gray), (10, 50, 90))
    lo, hi = np.percentile(gray, (0.1, 99.9)) - paper
    even = e90 - e10 <= 0.1 * max(-lo, hi)  # no shadow reaches the border
    if even and max(-lo, hi) >= 2 * min(-lo, hi):
        return -lo >= hi
    return _dark_ink_local(gray)


def _dark_ink_local(gray: np.ndarray) -> bool:
    """Whether the far tail of the picture's difference from its local median (the paper, as ink
    covers less than half of any large neighbourhood) is on the dark side. Unlike the border's or
    the picture's brightness, this holds when a shadow covers most of the sheet."""
    cells = _grid(gray, np.median)
    r = max(1, max(cells.shape) // 4)  # half the picture
    windows = sliding_window_view(np.pad(cells, r, mode="edge"), (2 * r + 1, 2 * r + 1))
    # numpy's median: OpenCV's median filter takes only uint8 above 5x5
    local = _spread(np.median(windows, axis=(2, 3)), gray.shape)
    lo, hi = np.percentile(gray - local, (0.1, 99.9))
    return -lo >= hi


def paper_light(paper: np.ndarray) -> np.ndarray:
    """The paper's brightness at every pixel of a dark-ink picture, ignoring the ink (same shape).

    A morphological closing on a coarse grid: each cell's brightest pixel (paper, unless a stroke
    fills the cell), then a max filter that bridges strokes up to ~1/4 of the picture wide and a
    min filter that undoes the max filter's spread; a smooth ramp (a soft shadow) passes through
    unchanged.
    """
    cells = _grid(paper, np.max)
    size = 2 * max(1, max(cells.shape) // 8) + 1
    closed = cv2.morphologyEx(cells, cv2.MORPH_CLOSE, _square(size),
                              borderType=cv2.BORDER_REPLICATE)
    return _spread(closed, paper.shape)


def flatten(gray: np.ndarray) -> np.ndarray:
    """Ink strength 0 (paper) .. 1 (black) per pixel with the paper's uneven light divided out
    (noise may make paper pixels slightly negative).

    Light ink on dark paper is inverted first. Dividing (not subtracting) by the paper's light
    keeps the ink's contrast the same in a shadow, since both are lit by the same light.
    """
    paper = gray if _dark_ink(gray) else 255 - gray
    # not clipped: paper noise keeps a zero mean
    return 1 - paper / np.maximum(paper_light(paper), 1)


def _plain_ink(gray: np.ndarray) -> np.ndarray:
    """Ink strength 0..1 with the border's median as the paper (inverted when the border is
    light): the fallback for a picture that is mostly ink, where no paper is left to estimate the
    light from."""
    ink = 255 - gray if np.median(_border(gray)) > 127 else gray
    paper = float(np.median(_border(ink)))
    return (ink - paper) / max(float(ink.max()) - paper, 1.0)


def _resize(a: np.ndarray, longer: int) -> np.ndarray:
    """A float image scaled so its longer side is ``longer`` px (area average when shrinking)."""
    scale = longer / max(a.shape)
    size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
    if scale >= 1:  # OpenCV's bilinear is PIL's, to float32 rounding
        return cv2.resize(a, size, interpolation=cv2.INTER_LINEAR)
    # PIL's box filter: OpenCV's INTER_AREA weighs the pixels differently
    small = Image.fromarray(a.astype(np.float32), "F").resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def _crop(ink: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The ink's bounding box with the paper level subtracted, and the paper's noise (std); None
    if no ink.

    A pixel is ink when, smoothed, it exceeds ``INK`` of the ink's strength and the paper's noise
    5 times over (noise: see ``_paper_level``); the box holds all but ``TRIM`` of the ink's mass at
    each side, so specks of noise on grey, grainy paper do not widen it.
    """
    # a 3x3 mean: sensor and JPEG noise shrink 3-fold
    smooth = cv2.blur(ink, (3, 3), borderType=cv2.BORDER_REPLICATE)
    # the unsmoothed noise is for the later floor
    (paper, spread), (_, noise) = _paper_level(smooth, ink)
    strength = _kth_largest(smooth) - paper
    if strength < MIN_CONTRAST:
        return None
    weight = np.where(smooth > paper + max(INK * strength, 5 * spread), smooth - paper, 0)
    if not weight.any():  # nothing stands out of the paper's grain
        return None
    top, bottom = _span(weight.sum(1))
    left, right = _span(weight.sum(0))
    return ink[top : bottom + 1, left : right + 1] - paper, noise


def _paper_level(*pictures: np.ndarray) -> list[tuple[float, float]]:
    """The paper's level and noise (std) in each flattened picture (all of one shape), from its
    lightest quarter (ink lies on the other side, so a bold digit covering half of the picture
    does not count) or from its border if lower. (For Gaussian noise the 5th and 25th percentiles
    lie 1.645 and 0.674 std below the mean.)"""
    # the borders are mostly paper too: the better hint when a bold digit fills a tight crop;
    # all in one np.median call, whose overhead counts on small pictures
    edges = np.stack([_border(a) for a in pictures])
    mid = np.median(edges, axis=1)
    mad = np.median(np.abs(edges - mid[:, None]), axis=1)
    levels = []
    for a, m, d in zip(pictures, mid, mad, strict=True):
        p5, p25 = np.percentile(a, (5, 25))  # one picture at a time: quicker than along a stack
        grain = (p25 - p5) / (1.645 - 0.674)
        level = min(float(p25 + 0.674 * grain), float(m))
        levels.append((level, min(float(grain), 1.4826 * float(d))))
    return levels


def _span(profile: np.ndarray) -> tuple[int, int]:
    """First and last index inside the middle of the ink's mass, ``TRIM`` left out at each end: a
    few far-off specks (grain, dust) hold almost no mass, a digit's stroke ends lose under a
    pixel."""
    cum = np.cumsum(profile) / profile.sum()
    return int(np.searchsorted(cum, TRIM)), int(min(np.searchsorted(cum, 1 - TRIM), len(cum) - 1))


def pen_width(ink: np.ndarray) -> float:
    """The strokes' mean width in px: twice the ink's area over its outline's length (ink > 0.5)."""
    mask = (np.asarray(ink) > 0.5).astype(np.uint8)
    area = cv2.countNonZero(mask)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # inner: all 4 neighbours are ink
    # the edge counts as paper
    inner = cv2.erode(mask, cross, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = area - cv2.countNonZero(inner)
    return 2 * area / outline if outline else 0.0


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Strokes thinner than MNIST's pen (``MNIST_PEN_PX`` at the 20-px box) widened by a max
    filter, strokes bolder than ``BOLD`` narrowed to it by a min filter (a fat blob of a 1 reads as
    an 8 otherwise); others kept."""
    scale = max(ink.shape) / BOX
    width = pen_width(ink)
    r = round((MNIST_PEN_PX * scale - width) / 2)
    if r >= 1:  # padded first: a widened stroke may grow past the old box
        padded = cv2.copyMakeBorder(ink, r, r, r, r, cv2.BORDER_CONSTANT, value=0)
        return cv2.dilate(padded, _square(2 * r + 1))
    r = round((width - BOLD * scale) / 2)
    if r < 1:
        return ink
    # paper (0) around the crop: its edge strokes narrow too
    return cv2.erode(ink, _square(2 * r + 1), borderType=cv2.BORDER_CONSTANT, borderValue=0)


def slant(ink: np.ndarray) -> float:
    """How far the ink moves sideways per px down, from its second moments (mu11 / mu02): 0
    upright, < 0 leaning right as italics do. Scale-free, so the same at 80 px and 28 px."""
    m = cv2.moments(np.ascontiguousarray(ink, dtype=np.float64))
    return m["mu11"] / m["mu02"] if m["m00"] > 0 and m["mu02"] > 0 else 0.0


def _deslant(ink: np.ndarray) -> np.ndarray:
    """Ink slanted beyond ``SLANT`` (more than 9 in 10 of MNIST's digits) sheared back to its
    edge, about the ink's centre row, and cropped again; other ink unchanged. A fiercely slanted
    font's 8 reads as a 0 otherwise."""
    s = slant(ink)
    k = s - min(max(s, SLANT[0]), SLANT[1])
    if k == 0:
        return ink
    h, w = ink.shape
    m = cv2.moments(ink)
    cy = m["m01"] / m["m00"]
    off = max(-k * cy, k * (h - 1 - cy))  # the largest move to the left: the new picture's start
    size = (w + int(np.ceil(abs(k) * (h - 1))) + 1, h)
    # output (x, y) samples input (x + k * (y - cy) - off, y): a row y - cy below the centre
    # moves -k * (y - cy)
    out = Image.fromarray(ink.astype(np.float32), "F").transform(
        size, Image.Transform.AFFINE, (1, k, -off - k * cy, 0, 1, 0),
        resample=Image.Resampling.BILINEAR)
    out = np.maximum(np.asarray(out, dtype=np.float64), 0)
    cols = np.flatnonzero(out.max(0) > 0)
    return out[:, cols[0] : cols[-1] + 1] if len(cols) else ink


def _centre(digit: np.ndarray) -> np.ndarray:
    """A small uint8 digit pasted into a black 28x28 with its centre of mass at (14, 14), kept
    inside."""
    h, w = digit.shape
    m = cv2.moments(digit)
    cy, cx = (m["m01"] / m["m00"], m["m10"] / m["m00"]) if m["m00"] else ((h - 1) / 2, (w - 1) / 2)
    top = min(max(round(SIDE / 2 - cy), 0), SIDE - h)
    left = min(max(round(SIDE / 2 - cx), 0), SIDE - w)
    canvas = np.zeros((SIDE, SIDE), dtype=np.uint8)
    canvas[top : top + h, left : left + w] = digit
    return canvas


def _is_mnist_format(gray: np.ndarray) -> bool:
    """A 28x28 picture with a dark border is an MNIST digit already (white on black, centred)."""
    return gray.shape == (SIDE, SIDE) and np.median(_border(gray)) <= 127


def preprocess(gray: np.ndarray | Image.Image, name: str = "image", *,
               deslant: bool = True) -> np.ndarray:
    """Grey levels 0..255 (H, W), or an "L" PIL image -> a uint8 (28, 28) MNIST-style digit: white
    ink on black.

    Steps: find the ink's side and flatten the paper's light (``flatten``); crop to the ink (>
    ``INK`` of its strength); reduce to ``MID`` px and stretch the contrast again (a thin line faded
    by the reduction comes back); thicken strokes thinner than MNIST's pen and narrow bolder ones;
    shear a slant beyond ``SLANT`` back to its edge (``_deslant``; ``deslant=False`` keeps every
    slant, for training digits); scale the longer side to 20 px (area average), stretch to 255 and
    centre by mass in 28x28. A 28x28 image with a dark border is taken as MNIST already and
    returned unchanged. Raises ``ImageError`` for an image with no ink or non-finite values.
    """
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2:
        raise ValueError(f"preprocess expects one grey image (H, W), got shape {gray.shape}")
    if gray.size == 0:
        raise ImageError(f"{name} is an empty image (zero size)")
    _check_finite(gray, name)
    if _is_mnist_format(gray):
        if gray.max() - np.median(_border(gray)) < MIN_CONTRAST * 255:
            raise ImageError(f"{name} is an empty image: no ink, it is (nearly) all one colour")
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    found = _crop(flatten(gray)) or _crop(_plain_ink(gray))
    if found is None:
        raise ImageError(f"{name} is an empty image: no ink, it is (nearly) all one colour")
    ink, noise = found
    noise /= max(1.0, max(ink.shape) / MID)  # averaging f x f pixels into one divides it by f
    ink = _resize(ink, MID)
    top = max(_kth_largest(ink, per=400), 1e-6)
    ink = ink / top  # the reduction faded thin lines: stretch again
    floor = min(0.5, max(FLOOR, 3 * noise / top))  # fainter is paper grain: thickening spreads it
    ink = np.minimum(np.maximum((ink - floor) / (1 - floor), 0), 1)
    ink = _thicken(ink)
    digit = np.maximum(_resize(_deslant(ink) if deslant else ink, BOX), 0)
    # full contrast after scaling
    digit = np.rint(digit * (255 / max(float(digit.max()), 1e-6))).astype(np.uint8)
    return _centre(digit)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file and preprocess it: a uint8 (28, 28) array; ``ImageError`` naming the
    file."""
    gray = load_gray(path)
    try:
        return preprocess(gray, str(path))
    except ImageError:
        raise
    except Exception as exc:  # any failure inside preprocessing is this file's error, not the run's
        raise ImageError(f"{path} could not be preprocessed: {type(exc).__name__}: {exc}") from None


def _read_or_message(path: Path) -> np.ndarray | str:
    """``read_image`` for a worker process: the digit, or the error's message (it pickles as a
    plain string)."""
    try:
        return read_image(path)
    except ImageError as exc:
        return str(exc)


def usable_cores() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def read_images(paths: Iterable[str | Path],
                workers: int | None = None) -> list[np.ndarray | ImageError]:
    """``read_image`` for many files, in order: a (28, 28) uint8 array or the file's
    ``ImageError`` for each.

    Uses ``workers`` processes (default: one per core) when there are enough files to pay for
    starting them.
    """
    paths = [Path(p) for p in paths]
    workers = min(workers or usable_cores(), len(paths) // 32)
    if workers < 2:
        out = [_read_or_message(p) for p in paths]
    else:
        # fork: the workers start with the modules already imported (spawn imports them again)
        forks = "fork" in get_all_start_methods() and sys.platform != "darwin"
        context = get_context("fork") if forks else None
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            out = list(pool.map(_read_or_message, paths, chunksize=chunk))
    return [ImageError(r) if isinstance(r, str) else r for r in out]


def expand(args: Iterable[str | Path]) -> list[Path]:
    """The files named, with each folder replaced by its entries (sorted, not recursive, hidden
    ones skipped).

    Sub-folders are skipped; anything else in a folder is listed, so a broken symbolic link or a
    link loop is reported like any unreadable file rather than silently left out."""
    files = []
    for arg in args:
        path = Path(arg)
        try:
            inside = sorted(path.iterdir()) if path.is_dir() else []
        except OSError:  # a folder that cannot be listed: reported like an unreadable file
            inside = []
        inside = [p for p in inside if not p.is_dir() and not p.name.startswith(".")]
        files += inside or [path]  # a file, or a folder with no files (reported as such)
    return files
