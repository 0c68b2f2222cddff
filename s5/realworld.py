"""The project's own real-world digit set, image files a user would have and no recipe trains on,
and predict.py's accuracy on it; also training digits of other handwriting fonts
(``--font-digits``).

Sources: handwriting fonts from Debian font packages, rendered like scans and phone photos in five
categories (clean, shadow, thin_pen, low_contrast, large_photo), and the real handwritten 8x8 scans
that scikit-learn ships (``load_digits``, 1,797 digits by 43 writers), upsampled and laid on paper
like a scan. Everything is seeded: the same call writes the same files. An evaluation is a JSON
record of its figures (percentages), with the markdown report and the README block rendered from
it. ``python -m tools.realworld`` is the command line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from s5 import digits, image
from s5.checkpoint import load_given_or_newest
from s5.constants import UNCERTAIN_BELOW
from s5.files import atomic_write_text, update_block, write_json
from s5.mnist import FONT_DIGITS_FILES, font_digits_dir, write_idx

# (Debian package, font file): handwriting-like faces whose digits look written, not typeset
FONTS = [
    ("fonts-dkg-handwriting", "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf"),
    ("fonts-dkg-handwriting", "/usr/share/fonts/truetype/fifthhorseman/dkgBd.ttf"),
    ("fonts-dkg-handwriting", "/usr/share/fonts/truetype/fifthhorseman/dkgBI.ttf"),
    ("fonts-breip", "/usr/share/fonts/truetype/breip/Breip.ttf"),
    ("fonts-rufscript", "/usr/share/fonts/truetype/rufscript/Rufscript010.ttf"),
    ("fonts-sjfonts", "/usr/share/fonts/truetype/sjfonts/Delphine.ttf"),
    ("fonts-sjfonts", "/usr/share/fonts/truetype/sjfonts/SteveHand.ttf"),
    ("fonts-kristi", "/usr/share/fonts/truetype/kristi/Kristi.ttf"),
    ("fonts-humor-sans", "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf"),
    ("fonts-dancingscript", "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf"),
    ("fonts-dancingscript", "/usr/share/fonts/opentype/dancingscript/DancingScript-Bold.otf"),
    ("fonts-kaushanscript", "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf"),
    ("fonts-comic-neue", "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf"),
    ("fonts-comic-neue", "/usr/share/fonts/opentype/comic-neue/ComicNeue-BoldItalic.otf"),
]
# Other Debian handwriting fonts, for training only: no face, and no package, of FONTS is among
# them, so the real-world set stays unseen (tests/test_digits.py checks it).
TRAINING_FONTS = [
    *[("fonts-bwht", f"/usr/share/fonts/opentype/bwht/BecauseWe{name}-Regular.otf")
      for name in ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")],
    *[("fonts-kiloji", f"/usr/share/fonts/truetype/kiloji/kiloji{end}.ttf")
      for end in ("", "_b", "_d", "_p")],
    ("fonts-klee", "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf"),
    ("fonts-klee", "/usr/share/fonts/truetype/klee/KleeOne-SemiBold.ttf"),
    *[("fonts-tlwg-purisa-ttf", f"/usr/share/fonts/truetype/tlwg/Purisa{end}.ttf")
      for end in ("", "-Bold", "-Oblique", "-BoldOblique")],
    ("fonts-tomsontalks", "/usr/share/fonts/truetype/tomsontalks/TomsonTalks.ttf"),
    ("fonts-yusei-magic", "/usr/share/fonts/truetype/yusei-magic/YuseiMagic-Regular.ttf"),
]
FONT_DIGITS_PENS = (0, 3, 6)  # extra pen in px on a 96-px glyph: the font's own, bolder, boldest
FONT_DIGITS_SLANTS = (-0.25, 0.0, 0.25)  # horizontal shear: upright and leaning either way
CATEGORIES = ("clean", "shadow", "thin_pen", "low_contrast", "large_photo")
SKLEARN = "scikit-learn==1.9.1"  # a wheel that carries the digits' CSV
SKLEARN_MEMBER = "sklearn/datasets/data/digits.csv.gz"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # the report's sweep of the uncertainty threshold
FAILURES_SHOWN = 40


class FontsMissingError(RuntimeError):
    """Font packages that must be installed first (apt-get)."""

    exit_status = 1


def missing_fonts(fonts: list[tuple[str, str]] = FONTS) -> list[str]:
    """The Debian packages whose font files are not installed."""
    return sorted({pkg for pkg, path in fonts if not Path(path).is_file()})


def require_fonts(fonts: list[tuple[str, str]]) -> None:
    """``FontsMissingError`` naming the apt-get command when any of ``fonts`` is missing."""
    if missing := missing_fonts(fonts):
        raise FontsMissingError("fonts missing; install them with: apt-get install "
                                + " ".join(missing))


# --------------------------------------------------------------------------------------------------
# Drawing: a glyph, a pen, a sheet of paper, a camera
# --------------------------------------------------------------------------------------------------


def glyph(font_path: str, digit: int, height: int, stroke: int = 0) -> np.ndarray:
    """The digit's ink (0..1) in a font, cropped to its box, about ``height`` px tall; ``stroke``
    widens the pen."""
    font = ImageFont.truetype(font_path, height)
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=stroke)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), str(digit), font=font, fill=255,
                             stroke_width=stroke, stroke_fill=255)
    a = np.asarray(img, dtype=np.float64) / 255
    rows, cols = np.flatnonzero(a.max(1) > 0.5), np.flatnonzero(a.max(0) > 0.5)
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel centre lines of a boolean mask (how a fine pen would draw
    the glyph)."""
    m = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            c = m[1:-1, 1:-1]
            p = [m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:], m[2:, 2:], m[2:, 1:-1], m[2:, :-2],
                 m[1:-1, :-2], m[:-2, :-2]]
            count = sum(q.astype(int) for q in p)
            turns = sum((~p[i] & p[(i + 1) % 8]).astype(int) for i in range(8))
            if step == 0:
                side = ~(p[0] & p[2] & p[4]) & ~(p[2] & p[4] & p[6])
            else:
                side = ~(p[0] & p[2] & p[6]) & ~(p[0] & p[4] & p[6])
            remove = c & (count >= 2) & (count <= 6) & (turns == 1) & side
            if remove.any():
                m[1:-1, 1:-1] = c & ~remove
                changed = True
        if not changed:
            return m[1:-1, 1:-1]


def thin_pen(ink: np.ndarray, width: int) -> np.ndarray:
    """The glyph redrawn along its centre lines with a ``width`` px pen (1..3)."""
    line = Image.fromarray(skeleton(ink > 0.5).astype(np.uint8) * 255)
    if width == 2:
        line = _widen2(line)
    elif width >= 3:
        line = line.filter(ImageFilter.MaxFilter(3))
    return np.asarray(line, dtype=np.float64) / 255


def _widen2(line: Image.Image) -> Image.Image:
    """A 2 px pen: the line ORed with itself shifted by one pixel right and down."""
    a = np.asarray(line) > 0
    b = a.copy()
    b[1:, :] |= a[:-1, :]
    b[:, 1:] |= a[:, :-1]
    return Image.fromarray(b.astype(np.uint8) * 255)


def shadow(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A soft shadow across the sheet: the light falls by 12-45% beyond a blurred edge at a random
    angle."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    along = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle)
    edge, soft = rng.uniform(-0.25, 0.25), rng.uniform(0.03, 0.15)
    return 1 - rng.uniform(0.12, 0.45) / (1 + np.exp(-(along - edge) / soft))


def sheet(ink: np.ndarray, size: tuple[int, int], fill: float, paper: float, pen: float,
          rng: np.random.Generator) -> np.ndarray:
    """Grey levels of a sheet ``size`` (w, h) with the ink scaled to ``fill`` of its height, placed
    at random."""
    w, h = size
    scale = min(fill * h / ink.shape[0], 0.9 * w / ink.shape[1])
    glyph_size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize(
        glyph_size, Image.Resampling.LANCZOS))
    page = np.zeros((h, w))
    top = int(rng.integers(0, h - glyph_size[1] + 1))
    left = int(rng.integers(0, w - glyph_size[0] + 1))
    page[top : top + glyph_size[1], left : left + glyph_size[0]] = ink / 255
    return paper + (pen - paper) * page


def camera(gray: np.ndarray, rng: np.random.Generator, blur: float, noise: float) -> Image.Image:
    """Blur (focus) and sensor noise on a grey sheet, as a uint8 "L" image."""
    img = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(img, dtype=np.float64) + rng.normal(0, noise, (img.height, img.width))
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def render(font_path: str, digit: int, category: str, rng: np.random.Generator) -> Image.Image:
    """One picture of ``digit`` in a font, with the stress of ``category``."""
    thin = category == "thin_pen"
    large = category == "large_photo"
    low, high = (240, 561) if thin else (1600, 3201) if large else (40, 421)
    h = int(rng.integers(low, high))
    w = int(h * rng.uniform(0.7, 1.3))
    fill = rng.uniform(0.55, 0.85) if thin else rng.uniform(0.3, 0.8)
    size = int(np.clip(fill * h * 1.3, 96, 700))  # large pictures get a sharp, large glyph
    stroke = 0 if thin else int(rng.choice([0, 0, 1, 2, 3])) * size // 96
    ink = glyph(font_path, digit, size, stroke)
    ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).rotate(
        rng.uniform(-10, 10), Image.Resampling.BILINEAR, expand=True), dtype=np.float64) / 255
    if thin:  # the glyph at its final size, redrawn along its centre lines with a 1-3 px pen
        scale = min(fill * h / ink.shape[0], 0.9 * w / ink.shape[1])
        side = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
        big = Image.fromarray((ink * 255).astype(np.uint8)).resize(side, Image.Resampling.BILINEAR)
        ink = thin_pen(np.asarray(big, dtype=np.float64) / 255, int(rng.integers(1, 4)))
        fill = ink.shape[0] / h
    paper, pen = rng.uniform(200, 250), rng.uniform(15, 80)
    if category == "low_contrast":
        paper = rng.uniform(140, 225)
        pen = paper - rng.uniform(25, 60)
    gray = sheet(ink, (w, h), fill, paper, pen, rng)
    if category == "shadow" or (large and rng.random() < 0.5):
        gray = gray * shadow(h, w, rng)
    blur = rng.uniform(0, 0.6) if thin else rng.uniform(0, 1.2) * max(1, h / 400)
    noise = rng.uniform(1, 5) if category == "low_contrast" else rng.uniform(0, 3)
    return camera(gray, rng, blur, noise)


def scan(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An 8x8 scan (0..16 ink) upsampled as a scanner or a phone would show it: smooth, on paper,
    with margins."""
    side = int(rng.integers(24, 97))
    small = Image.fromarray((cells / 16 * 255).astype(np.uint8))
    ink = np.asarray(small.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    margin = int(side * rng.uniform(0.15, 0.5))
    page = np.pad(ink, margin)
    paper, pen = rng.uniform(200, 250), rng.uniform(15, 80)
    return camera(paper + (pen - paper) * page, rng, rng.uniform(0, 0.8), rng.uniform(0, 3))


def sklearn_digits(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 scans (values 0..16) and labels, from an installed sklearn or its
    PyPI wheel."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        found = spec and spec.origin and Path(spec.origin).parent / "datasets/data/digits.csv.gz"
        raw = found.read_bytes() if found and found.is_file() else None
    except (ImportError, ValueError):
        raw = None
    if raw is None:
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob("scikit_learn-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                            ":all:", "-q", "-d", str(cache), SKLEARN], check=True)
            wheels = sorted(cache.glob("scikit_learn-*.whl"))
        with zipfile.ZipFile(wheels[0]) as z:
            raw = z.read(SKLEARN_MEMBER)
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",")
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(int)


# --------------------------------------------------------------------------------------------------
# The set: image files and their manifest
# --------------------------------------------------------------------------------------------------


def save(img: Image.Image, path: Path, rng: np.random.Generator) -> Path:
    """Write as JPEG (quality 70-95) or PNG, as a user's files come; returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if rng.random() < 0.5:
        path = path.with_suffix(".jpg")
        img.save(path, quality=int(rng.integers(70, 96)))
    else:
        img.save(path.with_suffix(".png"))
        path = path.with_suffix(".png")
    return path


def build(out: Path, per_font: int, n_sklearn: int, seed: int, limit: int | None) -> int:
    """Write the set under ``out`` with ``out/manifest.csv``; returns the number of images
    (``FontsMissingError`` first if fonts are missing)."""
    require_fonts(FONTS)
    rows = []
    jobs = [(i, f, d, c) for i in range(per_font) for f in range(len(FONTS)) for d in range(10)
            for c in CATEGORIES]
    for i, f, d, category in jobs[:limit]:
        rng = np.random.default_rng([seed, i, f, d, CATEGORIES.index(category)])
        name = Path(FONTS[f][1]).stem
        target = out / "fonts" / category / f"{name}-{d}-{i}"
        path = save(render(FONTS[f][1], d, category, rng), target, rng)
        rows.append((path, d, "fonts", category, name))
    if n_sklearn:
        cells, labels = sklearn_digits(out / ".cache")
        order = np.random.default_rng([seed, 1797]).permutation(len(labels))
        for k in order[: min(n_sklearn, limit or n_sklearn)]:
            rng = np.random.default_rng([seed, 8, int(k)])
            path = save(scan(cells[k], rng), out / "sklearn" / f"scan-{k:04d}-{labels[k]}", rng)
            rows.append((path, int(labels[k]), "sklearn_digits", "scan", "sklearn"))
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "source", "category", "style", "width", "height"])
        for path, label, source, category, style in rows:
            with Image.open(path) as img:
                writer.writerow([path.relative_to(out).as_posix(), label, source, category, style,
                                 *img.size])
    return len(rows)


# --------------------------------------------------------------------------------------------------
# Evaluation: a JSON record of the figures, and what is rendered from it
# --------------------------------------------------------------------------------------------------


def read_manifest(out: Path) -> list[dict]:
    """The rows of ``out/manifest.csv``; ``ValueError`` for a label that is not a digit."""
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    bad = next((r for r in rows if r["label"] not in {str(d) for d in range(10)}), None)
    if bad is not None:
        raise ValueError(f"{out / 'manifest.csv'}: {bad['file']} has the label {bad['label']!r}, "
                         "not a digit 0-9; build the set again with "
                         "`python -m tools.realworld build`")
    return rows


def percent(part: np.ndarray) -> float | None:
    """The share of true values in percent; None for no values."""
    return 100 * float(part.mean()) if part.size else None


def evaluation_record(checkpoint: Path, out: Path, rows: list[dict], preds: dict,
                      when: datetime) -> dict:
    """The figures of one evaluation (percentages): per group, a threshold sweep, the first
    failures. ``preds`` maps a row's index to its ``digits.Prediction`` (an unreadable file has
    none)."""
    labels = np.array([int(r["label"]) for r in rows])
    right = np.array([i in preds and preds[i].digit == labels[i] for i in range(len(rows))])
    top3 = np.array([i in preds and labels[i] in [d for d, _ in preds[i].top3]
                     for i in range(len(rows))])
    prob = np.array([preds[i].probability if i in preds else 0.0 for i in range(len(rows))])
    groups = [("all", np.ones(len(rows), bool))]
    groups += [(f"source: {s}", np.array([r["source"] == s for r in rows]))
               for s in sorted({r["source"] for r in rows})]
    groups += [(f"category: {c}", np.array([r["category"] == c for r in rows]))
               for c in (*CATEGORIES, "scan") if any(r["category"] == c for r in rows)]
    return {
        "date": when.isoformat(sep=" ", timespec="seconds"),
        "checkpoint": Path(checkpoint).as_posix(), "folder": Path(out).as_posix(),
        "images": len(rows), "unreadable": len(rows) - len(preds),
        "uncertain_below": UNCERTAIN_BELOW,
        "groups": [{"group": name, "images": int(m.sum()), "accuracy": percent(right[m]),
                    "top3": percent(top3[m]), "flagged": percent(prob[m] < UNCERTAIN_BELOW),
                    "accuracy_when_not_flagged": percent(right[m & (prob >= UNCERTAIN_BELOW)])}
                   for name, m in groups],
        "sweep": [{"threshold": t, "flagged": percent(prob < t),
                   "accuracy_when_not_flagged": percent(right[prob >= t])} for t in THRESHOLDS],
        "failures": [{"file": rows[i]["file"], "label": int(labels[i]),
                      "read": preds[i].digit if i in preds else "error"}
                     for i in np.flatnonzero(~right)[:FAILURES_SHOWN]],
    }


def shown(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"{value:.{decimals}f}%"


def summary_lines(record: dict) -> list[str]:
    """What was read, and the accuracy per group: the report's head and the README block."""
    lines = [f"Checkpoint `{record['checkpoint']}`; {record['images']} images from "
             f"`{record['folder']}` (built by `python -m tools.realworld build`); "
             f"{record['unreadable']} could not be read. Uncertain: top probability < "
             f"{record['uncertain_below']}.", "",
             "| group | images | accuracy | top-3 | flagged uncertain | accuracy when not flagged "
             "|", "|---|---:|---:|---:|---:|---:|"]
    for g in record["groups"]:
        lines.append(f"| {g['group']} | {g['images']} | {shown(g['accuracy'], 2)} | "
                     f"{shown(g['top3'], 2)} | {shown(g['flagged'], 1)} | "
                     f"{shown(g['accuracy_when_not_flagged'], 2)} |")
    return lines


def markdown(record: dict) -> str:
    """The report: the summary, the threshold sweep and the first failures."""
    when = datetime.fromisoformat(record["date"])
    lines = [f"# Real-world set: predict.py's accuracy ({when:%Y-%m-%d %H:%M})", "",
             *summary_lines(record), "",
             "Threshold sweep (all images): threshold, fraction flagged, accuracy when not "
             "flagged", "",
             "| threshold | flagged | accuracy when not flagged |", "|---:|---:|---:|"]
    lines += [f"| {s['threshold']} | {shown(s['flagged'], 1)} | "
              f"{shown(s['accuracy_when_not_flagged'], 2)} |" for s in record["sweep"]]
    lines += ["", "First failures:", "",
              *[f"- {f['file']}: {f['label']} read as {f['read']}" for f in record["failures"]]]
    return "\n".join(lines) + "\n"


def readme_block(record: dict, path: Path) -> str:
    """The README's realworld block from the record at ``path`` (its report and picture beside)."""
    return "\n".join([
        f"From `{path.with_suffix('.md').as_posix()}` (`python -m tools.realworld eval`):", "",
        *summary_lines(record), "",
        f"![Real-world inputs and the 28x28 the Net sees]({path.with_suffix('.png').as_posix()})"])


def write_readme_block(readme: Path, path: Path) -> None:
    """Regenerate ``readme``'s realworld block from the evaluation record at ``path``."""
    update_block(readme, "realworld", readme_block(json.loads(Path(path).read_text()), Path(path)))


def evaluate(out: Path, checkpoint: Path | None, logs: Path, readme: Path | None = None) -> Path:
    """predict.py's path (``image.read_images`` + ``digits.predict``) on the set: writes
    logs/realworld-<date>.json, the markdown report rendered from it (.md) and a picture (.png), and
    with ``readme`` its realworld block. Returns the JSON record's path."""
    net, path, _ = load_given_or_newest(checkpoint)
    rows = read_manifest(out)
    read = image.read_images([out / r["file"] for r in rows])
    ok = [i for i, r in enumerate(read) if not isinstance(r, image.ImageError)]
    found = digits.predict(net, np.stack([read[i] for i in ok])) if ok else []
    when = datetime.now()
    record = evaluation_record(path, out, rows, dict(zip(ok, found, strict=True)), when)
    report = Path(logs) / f"realworld-{when:%Y%m%d-%H%M%S}.json"
    write_json(report, record)
    atomic_write_text(report.with_suffix(".md"), markdown(record))
    picture(out, rows, read, report.with_suffix(".png"))
    if readme is not None:
        write_readme_block(readme, report)
    return report


def picture(out: Path, rows: list[dict], read: list, path: Path, per: int = 4) -> None:
    """A few inputs of each category (top) above what the Net sees (the 28x28 it is given)."""
    cats = [c for c in (*CATEGORIES, "scan") if any(r["category"] == c for r in rows)]
    tile = 112
    sheet = Image.new("L", (tile * per * len(cats), tile * 2 + 16), 255)
    draw = ImageDraw.Draw(sheet)
    for j, cat in enumerate(cats):
        found = [i for i, r in enumerate(rows)
                 if r["category"] == cat and isinstance(read[i], np.ndarray)]
        picks = found[:: len(found) // per + 1][:per]  # spread over fonts and digits
        draw.text((j * per * tile + 4, 2), cat, fill=0)
        for k, i in enumerate(picks):
            with Image.open(out / rows[i]["file"]) as img:
                img = img.convert("L")
                img.thumbnail((tile - 4, tile - 4))
            x = (j * per + k) * tile
            sheet.paste(img, (x + 2, 16))
            seen = Image.fromarray(read[i]).resize((tile - 4, tile - 4),
                                                           Image.Resampling.NEAREST)
            sheet.paste(seen, (x + 2, 16 + tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


# --------------------------------------------------------------------------------------------------
# Training digits from other handwriting fonts
# --------------------------------------------------------------------------------------------------


def font_digit(font_path: str, digit: int, pen: int, slant: float) -> torch.Tensor:
    """One training digit: the glyph with ``pen`` px more pen, sheared by ``slant``, drawn dark on
    white paper and read by predict.py's preprocessing (``image.preprocess``) with every slant
    kept: the 28x28 the Net would see of it, before predict.py's slant step."""
    ink = glyph(font_path, digit, 96, pen)
    margin = int(abs(slant) * ink.shape[0]) + 16
    padded = np.pad((1 - ink) * 255, ((16, 16), (margin, margin)), constant_values=255)
    paper = Image.fromarray(padded.astype(np.uint8))
    # x_in = x_out + slant * (y_out - centre): the glyph leans right (as italics do) for slant > 0
    shear = (1, slant, -slant * paper.size[1] / 2, 0, 1, 0)
    paper = paper.transform(paper.size, Image.Transform.AFFINE, shear,
                            resample=Image.Resampling.BILINEAR, fillcolor=255)
    seen = image.preprocess(paper, name=f"{Path(font_path).stem} {digit}", deslant=False)
    return torch.from_numpy(seen)


def build_font_digits(data_dir: Path) -> Path:
    """Write ``data_dir/font-digits/{images,labels}-idx?-ubyte`` (MNIST's IDX format) from
    TRAINING_FONTS: every digit of every face with each pen and slant (``FontsMissingError`` first
    if fonts are missing). Returns the folder."""
    require_fonts(TRAINING_FONTS)
    images, labels = [], []
    for _, path in TRAINING_FONTS:
        for d in range(10):
            for pen in FONT_DIGITS_PENS:
                for slant in FONT_DIGITS_SLANTS:
                    images.append(font_digit(path, d, pen, slant).numpy())
                    labels.append(d)
    folder = font_digits_dir(data_dir)
    write_idx(folder / FONT_DIGITS_FILES[1], np.array(labels, dtype=np.uint8))
    # the images last: their presence means the pair is complete
    write_idx(folder / FONT_DIGITS_FILES[0], np.stack(images))
    return folder
