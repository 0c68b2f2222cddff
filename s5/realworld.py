"""The project's own real-world digit set: image files a user would have, never trained on.

    python -m tools.realworld build [--out realworld/]       # writes the images and realworld/manifest.csv
    python -m tools.realworld eval [--checkpoint PATH]       # predict.py's path on them; logs/realworld-<date>.md
    python -m tools.realworld font-digits [--data-dir data]  # training digits from OTHER fonts (train.py --font-digits)

Sources: handwriting fonts from Debian font packages, rendered like scans and phone photos in five
categories (clean, shadow, thin_pen, low_contrast, large_photo), and the real handwritten 8x8 scans that
scikit-learn ships (``load_digits``, 1,797 digits by 43 writers), upsampled and laid on paper like a scan.
Everything is seeded: the same command writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from s5 import digits, image
from s5.checkpoint import CheckpointError, load_given_or_newest
from s5.files import update_block
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
# Other Debian handwriting fonts, for training only (``font-digits``: train.py --font-digits): no face, and no
# package, of FONTS is among them, so the real-world set stays unseen (tests/test_digits.py checks it).
TRAINING_FONTS = [
    *[("fonts-bwht", f"/usr/share/fonts/opentype/bwht/BecauseWe{name}-Regular.otf")
      for name in ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")],
    *[("fonts-kiloji", f"/usr/share/fonts/truetype/kiloji/kiloji{end}.ttf") for end in ("", "_b", "_d", "_p")],
    ("fonts-klee", "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf"),
    ("fonts-klee", "/usr/share/fonts/truetype/klee/KleeOne-SemiBold.ttf"),
    *[("fonts-tlwg-purisa-ttf", f"/usr/share/fonts/truetype/tlwg/Purisa{end}.ttf")
      for end in ("", "-Bold", "-Oblique", "-BoldOblique")],
    ("fonts-tomsontalks", "/usr/share/fonts/truetype/tomsontalks/TomsonTalks.ttf"),
    ("fonts-yusei-magic", "/usr/share/fonts/truetype/yusei-magic/YuseiMagic-Regular.ttf"),
]
FONT_DIGITS_PENS = (0, 3, 6)  # extra pen width in px on a 96-px glyph: the font's own, bolder, boldest
FONT_DIGITS_SLANTS = (-0.25, 0.0, 0.25)  # horizontal shear: upright and leaning either way
CATEGORIES = ("clean", "shadow", "thin_pen", "low_contrast", "large_photo")
SKLEARN = "scikit-learn==1.9.1"  # its wheel carries sklearn/datasets/data/digits.csv.gz (57 kB)
SKLEARN_MEMBER = "sklearn/datasets/data/digits.csv.gz"


def missing_fonts(fonts: list[tuple[str, str]] = FONTS) -> list[str]:
    """The Debian packages whose font files are not installed."""
    return sorted({pkg for pkg, path in fonts if not Path(path).is_file()})


# --------------------------------------------------------------------------------------------------
# Drawing: a glyph, a pen, a sheet of paper, a camera
# --------------------------------------------------------------------------------------------------


def glyph(font_path: str, digit: int, height: int, stroke: int = 0) -> np.ndarray:
    """The digit's ink (0..1) in a font, cropped to its box, about ``height`` px tall; ``stroke`` widens the pen."""
    font = ImageFont.truetype(font_path, height)
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=stroke)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), str(digit), font=font, fill=255, stroke_width=stroke,
                             stroke_fill=255)
    a = np.asarray(img, dtype=np.float64) / 255
    rows, cols = np.flatnonzero(a.max(1) > 0.5), np.flatnonzero(a.max(0) > 0.5)
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel centre lines of a boolean mask (how a fine pen would draw the glyph)."""
    m = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            c = m[1:-1, 1:-1]
            p = [m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:], m[2:, 2:], m[2:, 1:-1], m[2:, :-2], m[1:-1, :-2], m[:-2, :-2]]
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
    """A soft shadow across the sheet: the light falls by 12-45% beyond a blurred edge at a random angle."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    along = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle)
    edge, soft = rng.uniform(-0.25, 0.25), rng.uniform(0.03, 0.15)
    return 1 - rng.uniform(0.12, 0.45) / (1 + np.exp(-(along - edge) / soft))


def sheet(ink: np.ndarray, size: tuple[int, int], fill: float, paper: float, pen: float,
          rng: np.random.Generator) -> np.ndarray:
    """Grey levels of a sheet ``size`` (w, h) with the ink scaled to ``fill`` of its height, placed at random."""
    w, h = size
    scale = min(fill * h / ink.shape[0], 0.9 * w / ink.shape[1])
    glyph_size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize(glyph_size, Image.Resampling.LANCZOS))
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
    h = int(rng.integers(240, 561)) if thin else int(rng.integers(1600, 3201)) if large else int(rng.integers(40, 421))
    w = int(h * rng.uniform(0.7, 1.3))
    fill = rng.uniform(0.55, 0.85) if thin else rng.uniform(0.3, 0.8)
    size = int(np.clip(fill * h * 1.3, 96, 700))  # font size: large pictures get a sharp, large glyph
    stroke = 0 if thin else int(rng.choice([0, 0, 1, 2, 3])) * size // 96
    ink = glyph(font_path, digit, size, stroke)
    ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).rotate(
        rng.uniform(-10, 10), Image.Resampling.BILINEAR, expand=True), dtype=np.float64) / 255
    if thin:  # the glyph at its final size, redrawn along its centre lines with a 1-3 px pen
        scale = min(fill * h / ink.shape[0], 0.9 * w / ink.shape[1])
        big = Image.fromarray((ink * 255).astype(np.uint8)).resize(
            (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale))), Image.Resampling.BILINEAR)
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
    return camera(gray, rng, blur, rng.uniform(1, 5) if category == "low_contrast" else rng.uniform(0, 3))


def sklearn_digits(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 scans (values 0..16) and labels, from an installed sklearn or its PyPI wheel."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        data = Path(spec.origin).parent / "datasets/data/digits.csv.gz" if spec and spec.origin else None
        raw = data.read_bytes() if data and data.is_file() else None
    except (ImportError, ValueError):
        raw = None
    if raw is None:
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob("scikit_learn-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                            "-d", str(cache), SKLEARN], check=True)
            wheels = sorted(cache.glob("scikit_learn-*.whl"))
        with zipfile.ZipFile(wheels[0]) as z:
            raw = z.read(SKLEARN_MEMBER)
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",")
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(int)


def scan(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An 8x8 scan (0..16 ink) upsampled as a scanner or a phone would show it: smooth, on paper, with margins."""
    side = int(rng.integers(24, 97))
    small = Image.fromarray((cells / 16 * 255).astype(np.uint8))
    ink = np.asarray(small.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    margin = int(side * rng.uniform(0.15, 0.5))
    page = np.pad(ink, margin)
    paper, pen = rng.uniform(200, 250), rng.uniform(15, 80)
    return camera(paper + (pen - paper) * page, rng, rng.uniform(0, 0.8), rng.uniform(0, 3))


# --------------------------------------------------------------------------------------------------
# Commands
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
    """Write the set under ``out`` with ``out/manifest.csv``; returns the number of images."""
    missing = missing_fonts()
    if missing:
        print(f"realworld.py: fonts missing; install them with: apt-get install {' '.join(missing)}", file=sys.stderr)
        return 0
    rows = []
    jobs = [(i, f, d, c) for i in range(per_font) for f in range(len(FONTS)) for d in range(10) for c in CATEGORIES]
    for i, f, d, category in jobs[:limit]:
        rng = np.random.default_rng([seed, i, f, d, CATEGORIES.index(category)])
        name = Path(FONTS[f][1]).stem
        path = save(render(FONTS[f][1], d, category, rng), out / "fonts" / category / f"{name}-{d}-{i}", rng)
        rows.append((path, d, "fonts", category, name))
    if n_sklearn:
        cells, labels = sklearn_digits(out / ".cache")
        for k in np.random.default_rng([seed, 1797]).permutation(len(labels))[: min(n_sklearn, limit or n_sklearn)]:
            rng = np.random.default_rng([seed, 8, int(k)])
            path = save(scan(cells[k], rng), out / "sklearn" / f"scan-{k:04d}-{labels[k]}", rng)
            rows.append((path, int(labels[k]), "sklearn_digits", "scan", "sklearn"))
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "source", "category", "style", "width", "height"])
        for path, label, source, category, style in rows:
            with Image.open(path) as img:
                writer.writerow([path.relative_to(out).as_posix(), label, source, category, style, *img.size])
    print(f"wrote {len(rows)} images and {out / 'manifest.csv'}")
    return len(rows)


def evaluate(out: Path, checkpoint: Path | None, logs: Path, readme: Path | None = None) -> Path:
    """predict.py's path (image.read_images + digits.predict) on the set; prints and writes a markdown report."""
    net, path, _ = load_given_or_newest(checkpoint)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    read = image.read_images([out / r["file"] for r in rows])
    ok = [i for i, r in enumerate(read) if not isinstance(r, image.ImageError)]
    preds = dict(zip(ok, digits.predict(net, np.stack([read[i] for i in ok])), strict=True)) if ok else {}
    bad = next((r for r in rows if r["label"] not in {str(d) for d in range(10)}), None)
    if bad is not None:
        raise ValueError(f"{out / 'manifest.csv'}: {bad['file']} has the label {bad['label']!r}, not a digit 0-9; "
                         "build the set again with `python -m tools.realworld build`")
    labels = np.array([int(r["label"]) for r in rows])
    right = np.array([i in preds and preds[i].digit == labels[i] for i in range(len(rows))])
    top3 = np.array([i in preds and labels[i] in [d for d, _ in preds[i].top3] for i in range(len(rows))])
    prob = np.array([preds[i].probability if i in preds else 0.0 for i in range(len(rows))])
    groups = [("all", np.ones(len(rows), bool))]
    sources = sorted({r["source"] for r in rows})
    groups += [(f"source: {s}", np.array([r["source"] == s for r in rows])) for s in sources]
    groups += [(f"category: {c}", np.array([r["category"] == c for r in rows]))
               for c in (*CATEGORIES, "scan") if any(r["category"] == c for r in rows)]
    t = digits.UNCERTAIN_BELOW
    lines = [f"# Real-world set: predict.py's accuracy ({datetime.now():%Y-%m-%d %H:%M})", "",
             f"Checkpoint `{path}`; {len(rows)} images from `{out}` (built by `python -m tools.realworld build`); "
             f"{len(rows) - len(ok)} could not be read. Uncertain: top probability < {t}.", "",
             "| group | images | accuracy | top-3 | flagged uncertain | accuracy when not flagged |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in groups:
        sure = m & (prob >= t)
        lines.append(f"| {name} | {m.sum()} | {right[m].mean():.2%} | {top3[m].mean():.2%} | "
                     f"{1 - sure.sum() / m.sum():.1%} | {right[sure].mean() if sure.any() else float('nan'):.2%} |")
    lines += ["", "Threshold sweep (all images): threshold, fraction flagged, accuracy when not flagged", "",
              "| threshold | flagged | accuracy when not flagged |", "|---:|---:|---:|"]
    for th in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        sure = prob >= th
        lines.append(f"| {th} | {1 - sure.mean():.1%} | {right[sure].mean() if sure.any() else float('nan'):.2%} |")
    wrong = [f"{rows[i]['file']}: {labels[i]} read as {preds[i].digit if i in preds else 'error'}"
             for i in np.flatnonzero(~right)[:40]]
    lines += ["", "First failures:", "", *[f"- {w}" for w in wrong]]
    text = "\n".join(lines) + "\n"
    print(text)
    logs.mkdir(parents=True, exist_ok=True)
    report = logs / f"realworld-{datetime.now():%Y%m%d-%H%M%S}.md"
    report.write_text(text)
    picture(out, rows, read, report.with_suffix(".png"))
    print(f"wrote {report} and {report.with_suffix('.png')}")
    if readme is not None:  # the summary table and the picture, into the README's realworld block
        table = lines[2:lines.index("", 4) + 1]  # the checkpoint line and the summary table
        update_block(readme, "realworld", "\n".join([
            f"From `{report.as_posix()}` (`python -m tools.realworld eval`):", "", *table,
            f"![Real-world inputs and the 28x28 the Net sees]({report.with_suffix('.png').as_posix()})"]))
    return report


def picture(out: Path, rows: list[dict], read: list, path: Path, per: int = 4) -> None:
    """A few inputs of each category (top) above what the Net sees (the 28x28 after preprocessing)."""
    cats = [c for c in (*CATEGORIES, "scan") if any(r["category"] == c for r in rows)]
    tile = 112
    sheet = Image.new("L", (tile * per * len(cats), tile * 2 + 16), 255)
    draw = ImageDraw.Draw(sheet)
    for j, cat in enumerate(cats):
        found = [i for i, r in enumerate(rows) if r["category"] == cat and isinstance(read[i], np.ndarray)]
        picks = found[:: len(found) // per + 1][:per]  # spread over fonts and digits
        draw.text((j * per * tile + 4, 2), cat, fill=0)
        for k, i in enumerate(picks):
            with Image.open(out / rows[i]["file"]) as img:
                img = img.convert("L")
                img.thumbnail((tile - 4, tile - 4))
            x = (j * per + k) * tile
            sheet.paste(img, (x + 2, 16))
            sheet.paste(Image.fromarray(read[i]).resize((tile - 4, tile - 4), Image.Resampling.NEAREST),
                        (x + 2, 16 + tile))
    sheet.save(path)


def font_digit(font_path: str, digit: int, pen: int, slant: float) -> torch.Tensor:
    """One training digit: the glyph with ``pen`` px more pen, sheared by ``slant``, drawn dark on white paper
    and read by predict.py's preprocessing (``image.preprocess``) with every slant kept: the 28x28 the Net would see
    of it, before predict.py's slant step."""
    ink = glyph(font_path, digit, 96, pen)
    margin = int(abs(slant) * ink.shape[0]) + 16
    paper = Image.fromarray(np.pad((1 - ink) * 255, ((16, 16), (margin, margin)), constant_values=255).astype(np.uint8))
    # x_in = x_out + slant * (y_out - centre): the glyph leans right (as italics do) for slant > 0
    paper = paper.transform(paper.size, Image.Transform.AFFINE, (1, slant, -slant * paper.size[1] / 2, 0, 1, 0),
                            resample=Image.Resampling.BILINEAR, fillcolor=255)
    return torch.from_numpy(image.preprocess(paper, name=f"{Path(font_path).stem} {digit}", deslant=False))


def build_font_digits(data_dir: Path) -> int:
    """Write ``data_dir/font-digits/{images,labels}-idx?-ubyte`` (MNIST's IDX format) from TRAINING_FONTS: every
    digit of every face with each pen and slant. Returns the number of digits, 0 if fonts are missing."""
    missing = missing_fonts(TRAINING_FONTS)
    if missing:
        print(f"realworld.py: fonts missing; install them with: apt-get install {' '.join(missing)}", file=sys.stderr)
        return 0
    images, labels = [], []
    for _, path in TRAINING_FONTS:
        for d in range(10):
            for pen in FONT_DIGITS_PENS:
                for slant in FONT_DIGITS_SLANTS:
                    images.append(font_digit(path, d, pen, slant).numpy())
                    labels.append(d)
    folder = font_digits_dir(data_dir)
    write_idx(folder / FONT_DIGITS_FILES[1], np.array(labels, dtype=np.uint8))
    write_idx(folder / FONT_DIGITS_FILES[0], np.stack(images))  # the images last: their presence means done
    print(f"wrote {len(images)} digits of {len(TRAINING_FONTS)} faces to {folder}")
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the image files and manifest.csv")
    b.add_argument("--out", type=Path, default=Path("realworld"))
    b.add_argument("--per-font", type=int, default=2, help="pictures per font, digit and category (default 2)")
    b.add_argument("--sklearn", type=int, default=1797, help="how many of scikit-learn's scans (default all 1797)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--limit", type=int, help="at most this many images per source (for a quick try)")
    e = sub.add_parser("eval", help="accuracy of predict.py's path per source and category")
    e.add_argument("--out", type=Path, default=Path("realworld"))
    e.add_argument("--checkpoint", type=Path)
    e.add_argument("--log-dir", type=Path, default=Path("logs"))
    e.add_argument("--readme", type=Path, help="also write the summary into this README's realworld block")
    t = sub.add_parser("font-digits", help="training digits from other handwriting fonts (train.py --font-digits)")
    t.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    if args.command == "font-digits":
        return 0 if build_font_digits(args.data_dir) else 1
    if args.command == "build":
        return 0 if build(args.out, args.per_font, args.sklearn, args.seed, args.limit) else 1
    if not (args.out / "manifest.csv").is_file():
        print(f"realworld.py: error: no {args.out / 'manifest.csv'}; run `python -m tools.realworld build` first",
              file=sys.stderr)
        return 2
    try:
        evaluate(args.out, args.checkpoint, args.log_dir, args.readme)
    except (CheckpointError, ValueError, KeyError, OSError) as exc:  # a bad checkpoint, a damaged manifest
        what = f"{args.out / 'manifest.csv'} lacks the column {exc}" if isinstance(exc, KeyError) else exc
        print(f"realworld.py: error: {what}", file=sys.stderr)
        return getattr(exc, "exit_status", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
