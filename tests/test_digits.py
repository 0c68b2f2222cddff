"""image.py: preprocessing that copes with shadows, thin pens and dark paper; odd, hostile files.

Every image is drawn here (with test_predict's ``draw_digit`` or PIL); nothing is downloaded,
nothing is timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, synthetic_digits
from PIL import Image, ImageDraw
from test_predict import draw_digit, odd_image_files

from s5 import digits, image, mnist, realworld
from tools import realworld as realworld_tool


def ink_box(out: np.ndarray, level: int = 60) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels above ``level`` in a 28x28 output."""
    rows, cols = np.nonzero(out > level)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def shade(img: Image.Image, depth: float = 0.45) -> np.ndarray:
    """The picture's grey levels under a soft shadow: light falls by ``depth`` towards the right."""
    gray = np.asarray(img, dtype=np.float64)
    x = np.linspace(-1, 1, gray.shape[1])
    return gray * (1 - depth / (1 + np.exp(-x / 0.15)))[None, :]


def test_a_shadow_does_not_grow_the_crop_box() -> None:
    img = draw_digit(7, size=(400, 400), thickness=20, box=(0.35, 0.3, 0.65, 0.7))
    clean, shadowed = image.preprocess(img), image.preprocess(shade(img))
    assert shadowed.shape == (28, 28) and shadowed.max() >= 250
    top, bottom, left, right = ink_box(shadowed)
    # the digit fills the 20-px box, not a grey wedge
    assert max(bottom - top, right - left) + 1 in (19, 20, 21)
    assert ink_box(shadowed) == ink_box(clean)
    assert np.abs(shadowed.astype(float) - clean).mean() < 6


def test_paper_light_follows_a_shadow_and_ignores_the_ink() -> None:
    img = draw_digit(0, size=(300, 300), thickness=25)
    shaded = shade(img, depth=0.4)
    light = image.paper_light(shaded)
    paper_only = shade(Image.new("L", img.size, 255), depth=0.4)
    assert np.abs(light - paper_only).max() < 0.06 * 255  # near the true light, on the strokes too


def test_a_one_pixel_line_on_a_large_canvas_survives() -> None:
    img = Image.new("L", (1200, 1600), 235)
    draw = ImageDraw.Draw(img)
    draw.line([(450, 300), (750, 300), (520, 1300)], fill=30, width=1)  # a 7 with a 1 px pen
    out = image.preprocess(img)
    assert out.max() >= 250  # contrast stretched after the reduction, not before
    assert image.pen_width(out / 255) >= 1.8  # a stroke as wide as MNIST's, not a faint trace
    top, bottom, left, right = ink_box(out)
    assert bottom - top + 1 >= 19 and right - left + 1 >= 6  # the whole 7, scaled to the box


def test_a_marker_drawn_digit_is_narrowed_towards_an_mnist_pen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    img = Image.new("L", (160, 240), 240)
    # a 1 as a fat bar, a third as wide as tall
    ImageDraw.Draw(img).line([(80, 30), (80, 210)], fill=20, width=60)
    out = image.preprocess(img)
    top, bottom, _, _ = ink_box(out)
    assert bottom - top + 1 >= 18  # still the whole bar
    with monkeypatch.context() as m:
        m.setattr(image, "BOLD", 99.0)  # no narrowing
        fat = image.preprocess(img)
    assert image.pen_width(out / 255) <= image.pen_width(fat / 255) - 1  # a px or more slimmer
    thin = Image.new("L", (160, 240), 240)
    # an MNIST-like pen: left as it is
    ImageDraw.Draw(thin).line([(80, 30), (80, 210)], fill=20, width=14)
    with monkeypatch.context() as m:
        m.setattr(image, "BOLD", 99.0)
        unchanged = image.preprocess(thin)
    assert np.array_equal(image.preprocess(thin), unchanged)


def leaning_zero(lean: float) -> Image.Image:
    """A 0 drawn as an ellipse whose top lies ``lean`` px right of its foot per px of height
    (italic for lean > 0)."""
    img = Image.new("L", (400, 300), 235)
    draw = ImageDraw.Draw(img)
    # each row of an upright ellipse moved sideways by its height above the centre
    for y in range(60, 241):
        t = (y - 150) / 90
        half = 45 * np.sqrt(max(0.0, 1 - t * t))
        x = 200 - lean * (y - 150)
        for side in (-1, 1):
            draw.ellipse([x + side * half - 7, y - 7, x + side * half + 7, y + 7], fill=30)
    return img


def test_slant_is_negative_for_ink_leaning_right_and_scale_free() -> None:
    img = Image.new("L", (200, 200), 0)
    # "/": the top is right of the foot
    ImageDraw.Draw(img).line([(140, 20), (60, 180)], fill=255, width=9)
    ink = np.asarray(img, dtype=np.float64) / 255
    assert image.slant(ink) == pytest.approx(-0.5, abs=0.03)
    assert image.slant(ink[:, ::-1]) == pytest.approx(0.5, abs=0.03)  # "\"
    small = np.asarray(img.resize((50, 50), Image.Resampling.BOX), dtype=np.float64) / 255
    assert image.slant(small) == pytest.approx(image.slant(ink), abs=0.03)


def test_a_fiercely_slanted_digit_is_sheared_back_to_mnists_range_and_others_are_left_alone(
) -> None:
    low, high = image.SLANT
    # about 45 degrees: beyond 19 in 20 of MNIST's
    steep = image.preprocess(leaning_zero(1.0)) / 255
    # reduced to the edge of MNIST's range, not upright
    assert image.slant(steep) == pytest.approx(low, abs=0.08)
    top, bottom, left, right = ink_box(steep * 255)
    # cropped again after the shear: it still fills the 20-px box
    assert max(bottom - top, right - left) + 1 >= 19
    # training digits keep every slant
    kept = image.preprocess(leaning_zero(1.0), deslant=False) / 255
    assert image.slant(kept) < low - 0.2
    mild = leaning_zero(0.25)  # within MNIST's range: the step does nothing
    assert low < image.slant(image.preprocess(mild) / 255) < 0
    ink = np.asarray(mild, dtype=np.float64)
    ink = (ink.max() - ink) / ink.max()
    assert image._deslant(ink) is ink
    # leaning left as far: sheared to the other edge
    backwards = image.preprocess(leaning_zero(-1.0)) / 255
    assert image.slant(backwards) == pytest.approx(high, abs=0.08)


def test_a_light_digit_on_dark_grey_paper() -> None:
    reference = image.preprocess(draw_digit(1, size=(240, 300)))
    gray = np.asarray(draw_digit(1, size=(240, 300), dark_on_light=False), dtype=np.float64)
    gray = 40 + gray * (170 - 40) / 255  # chalk-like 170 on a 40 board
    out = image.preprocess(gray)
    assert ink_box(out) == ink_box(reference)
    assert np.abs(out.astype(float) - reference).mean() < 6


def test_the_quick_polarity_answer_is_the_local_one_and_shadows_take_the_local_test(
        monkeypatch) -> None:
    rng = np.random.default_rng(1)
    pictures = []
    for k, (digit, dark) in enumerate([(0, True), (1, False), (7, True), (7, False), (0, False)]):
        gray = np.asarray(draw_digit(digit, size=(40 + 60 * k, 90), thickness=4 + 3 * k,
                                     dark_on_light=dark), dtype=np.float64)
        pictures.append((gray + rng.normal(0, 3, gray.shape), dark))
    local_calls = []
    real = image._dark_ink_local
    monkeypatch.setattr(image, "_dark_ink_local", lambda gray: local_calls.append(1) or real(gray))
    # evenly lit paper: answered from the border, the same as the local test
    for gray, dark in pictures:
        assert image._dark_ink(gray) == real(gray) == dark
    assert not local_calls
    # the shadow reaches the border
    shadowed = shade(draw_digit(7, size=(300, 300), thickness=6), depth=0.45)
    assert image._dark_ink(shadowed) and local_calls


def test_low_contrast_noisy_paper_keeps_a_tight_box() -> None:
    rng = np.random.default_rng(0)
    img = draw_digit(7, size=(300, 300), thickness=14, box=(0.4, 0.35, 0.6, 0.65))
    gray = 180 - (255 - np.asarray(img, dtype=np.float64)) * 30 / 255 + rng.normal(0, 4, (300, 300))
    out = image.preprocess(gray)
    top, bottom, left, right = ink_box(out)
    assert max(bottom - top, right - left) + 1 >= 19  # grain on the paper did not widen the crop
    border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
    assert border.max() < 40


def test_mnist_pngs_round_trip_exactly_also_through_worker_processes(tmp_path: Path) -> None:
    images, _ = synthetic_digits(80, seed=3)
    for i, picture in enumerate(images):
        Image.fromarray(picture).save(tmp_path / f"{i:03d}.png")
    paths = sorted(tmp_path.iterdir())
    parallel = image.read_images(paths, workers=2)
    assert all(isinstance(r, np.ndarray) for r in parallel)
    assert np.array_equal(np.stack(parallel), images)


def test_image_reads_files_alike_one_at_a_time_and_in_a_batch_and_imports_no_torch(
        tmp_path: Path) -> None:
    files = odd_image_files(tmp_path)
    for path, batch_read in zip(files, image.read_images(files), strict=True):
        alone = image.read_image(path)
        assert alone.dtype == np.uint8 and alone.shape == (28, 28), path
        assert np.array_equal(batch_read, alone), path
    code = ("import sys, s5.image; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_nan_and_inf_pixels_are_errors_for_that_file(tmp_path: Path) -> None:
    a = np.asarray(draw_digit(7), dtype=np.float32) / 255
    a[10, 10] = np.nan
    Image.fromarray(a, "F").save(tmp_path / "nan.tif")
    a[10, 10] = np.inf
    Image.fromarray(a, "F").save(tmp_path / "inf.tif")
    for name in ("nan.tif", "inf.tif"):
        with pytest.raises(image.ImageError, match=f"{name} has NaN or infinite pixel values"):
            image.read_image(tmp_path / name)
    with pytest.raises(image.ImageError, match="scan has NaN or infinite pixel values"):
        image.preprocess(a * 255, "scan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        digits.to_batch(torch.full((1, 28, 28), float("nan")))


def test_float_images_in_0_to_1_are_read_as_such(tmp_path: Path) -> None:
    img = draw_digit(1)
    img.save(tmp_path / "eight_bit.png")
    Image.fromarray(np.asarray(img, dtype=np.float32) / 255, "F").save(tmp_path / "float.tif")
    float_out = image.read_image(tmp_path / "float.tif")
    assert np.abs(float_out.astype(float) - image.read_image(tmp_path / "eight_bit.png")).max() <= 1


def test_a_failure_inside_preprocessing_is_the_files_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    draw_digit(7).save(tmp_path / "seven.png")

    def broken(gray: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    monkeypatch.setattr(image, "flatten", broken)
    with pytest.raises(image.ImageError,
                       match=r"seven\.png could not be preprocessed: RuntimeError: boom"):
        image.read_image(tmp_path / "seven.png")


def test_symlinks_that_lead_nowhere_are_clear_errors(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "loop_b.png", tmp_path / "loop_a.png")
    os.symlink(tmp_path / "loop_a.png", tmp_path / "loop_b.png")
    with pytest.raises(image.ImageError, match=r"dangling\.png is a broken symbolic link"):
        image.read_image(tmp_path / "dangling.png")
    with pytest.raises(image.ImageError, match=r"loop_a\.png is a symbolic link loop"):
        image.read_image(tmp_path / "loop_a.png")


def test_a_huge_one_bit_png_is_read_reduced(tmp_path: Path) -> None:
    img = Image.new("1", (12000, 12000), 1)
    ImageDraw.Draw(img).line([(6000, 2000), (6000, 10000)], fill=0, width=600)  # a tall bar: a 1
    img.save(tmp_path / "huge.png")
    del img
    gray = image.load_gray(tmp_path / "huge.png")
    assert max(gray.shape) <= image.READ_SIDE  # reduced while reading, before any float array
    out = image.read_image(tmp_path / "huge.png")
    top, bottom, left, right = ink_box(out)
    assert bottom - top + 1 >= 19 and right - left + 1 <= 5


def test_a_photos_exif_rotation_is_applied(tmp_path: Path) -> None:
    upright = draw_digit(7, size=(120, 200))
    exif = Image.Exif()
    # the camera was turned: the stored picture must be turned 90 degrees clockwise to show it
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.png", exif=exif)
    gray = image.load_gray(tmp_path / "turned.png")
    assert np.array_equal(gray, np.asarray(upright, dtype=np.float64))


def test_pictures_in_memory_are_read_as_files_are(tmp_path: Path) -> None:
    # a sketch pad: opaque strokes on a transparent canvas
    img = Image.new("RGBA", (900, 600), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(300, 100), (600, 100), (400, 500)], fill=(20, 20, 20, 255), width=40)
    img.save(tmp_path / "sketch.png")
    gray = image.to_gray(np.asarray(img), side=280)
    # laid on white, a quarter the size
    assert gray.shape == (150, 225) and gray.max() == 255 and gray.min() == 20
    assert np.array_equal(image.to_gray(img), image.load_gray(tmp_path / "sketch.png"))
    assert img.size == (900, 600) and img.mode == "RGBA"  # the caller's image is left as it was
    assert np.array_equal(image.to_gray(np.full((5, 4, 1), 9.5)), np.full((5, 4), 9.5))
    with pytest.raises(ValueError, match="expected a grey"):
        image.to_gray(np.zeros((5, 4, 2)))


def test_prediction_uncertain_flag_follows_the_threshold() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10),
                              torch.nn.LogSoftmax(dim=1))
    torch.nn.init.zeros_(net[1].weight)
    torch.nn.init.zeros_(net[1].bias)
    [unsure] = digits.predict(net, torch.zeros(1, 28, 28, dtype=torch.uint8))  # every digit 0.1
    assert unsure.uncertain and unsure.probability == pytest.approx(0.1)
    with torch.no_grad():
        net[1].bias[3] = 20.0
    [sure] = digits.predict(net, torch.zeros(1, 28, 28, dtype=torch.uint8))
    assert sure.digit == 3 and not sure.uncertain


def test_a_prediction_keeps_all_ten_probabilities_and_reads_the_rest_from_them() -> None:
    p = digits.Prediction((0.05, 0.1, 0.0, 0.6, 0.05, 0.0, 0.1, 0.1, 0.0, 0.0))
    assert p.digit == 3 and p.probability == 0.6 and p.uncertain == (0.6 < digits.UNCERTAIN_BELOW)
    assert p.top3 == [(3, 0.6), (1, 0.1), (6, 0.1)]  # a tie: the lower digit first
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10),
                              torch.nn.LogSoftmax(dim=1))
    [q] = digits.predict(net, np.zeros((28, 28), np.uint8))  # a numpy image, as s5.image reads it
    expected = net(digits.to_batch(np.zeros((28, 28), np.uint8))).exp()[0].tolist()
    assert len(q.probabilities) == 10 and q.probabilities == pytest.approx(expected)
    assert q.digit == max(range(10), key=expected.__getitem__)


def test_realworld_build_writes_files_and_a_manifest(tmp_path: Path) -> None:
    if realworld.missing_fonts():
        pytest.skip("handwriting fonts not installed "
                    f"(apt-get install {' '.join(realworld.missing_fonts())})")
    assert realworld.build(tmp_path, per_font=1, n_sklearn=0, seed=0, limit=10) == 10
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    assert lines[0] == "file,label,source,category,style,width,height" and len(lines) == 11
    rows = [line.split(",") for line in lines[1:]]
    assert {r[3] for r in rows} == set(realworld.CATEGORIES)
    for file, label, source, _, _, width, height in rows:
        with Image.open(tmp_path / file) as img:
            assert (img.size == (int(width), int(height)) and source == "fonts"
                    and label in "0123456789")


def test_training_fonts_share_no_face_or_package_with_the_real_world_set() -> None:
    """The real-world set stays unseen: train.py --font-digits draws from other faces of other
    packages."""
    assert not ({path for _, path in realworld.FONTS}
                & {path for _, path in realworld.TRAINING_FONTS})
    assert not {pkg for pkg, _ in realworld.FONTS} & {pkg for pkg, _ in realworld.TRAINING_FONTS}
    assert not ({Path(p).stem.lower() for _, p in realworld.FONTS}
                & {Path(p).stem.lower() for _, p in realworld.TRAINING_FONTS})


def test_font_digits_are_built_in_mnist_format_and_read_back(tmp_path: Path) -> None:
    missing = realworld.missing_fonts(realworld.TRAINING_FONTS)
    if missing:
        pytest.skip(f"training fonts not installed (apt-get install {' '.join(missing)})")
    per_face = 10 * len(realworld.FONT_DIGITS_PENS) * len(realworld.FONT_DIGITS_SLANTS)
    assert realworld_tool.main(["font-digits", "--data-dir", str(tmp_path)]) == 0
    images, labels = mnist.load_font_digits(tmp_path)
    assert (images.shape == (per_face * len(realworld.TRAINING_FONTS), 28, 28)
            and images.dtype == torch.uint8)
    assert labels.tolist()[:per_face] == [d for d in range(10) for _ in range(per_face // 10)]
    # MNIST's format: white ink on black, centred by the ink's mass, inside the middle 20x20 or so
    x = images.float()
    assert x[:, :2].max() == 0 and x[:, :, :2].max() == 0 and (x.amax((1, 2)) == 255).all()
    ys = torch.arange(28.0).view(1, 28, 1)
    rows = (x * ys).sum((1, 2)) / x.sum((1, 2))
    assert (rows - 13.5).abs().max() < 1.5
    upright, leaning = (realworld.font_digit(realworld.TRAINING_FONTS[0][1], 1, 0, s).float()
                        for s in (0.0, 0.25))
    xs = torch.arange(28.0).view(1, 28)

    def lean(img: torch.Tensor) -> float:  # the ink's column at the top minus at the bottom
        return float((img[:10] * xs).sum() / img[:10].sum()
                     - (img[-10:] * xs).sum() / img[-10:].sum())

    assert lean(leaning) > lean(upright) + 1  # a positive slant leans right, as italics do


def test_font_digits_missing_or_damaged_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(mnist.MnistError, match="make font-digits"):
        mnist.load_font_digits(tmp_path)
    folder = mnist.font_digits_dir(tmp_path)
    mnist.write_idx(folder / "images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    mnist.write_idx(folder / "labels-idx1-ubyte", np.array([1, 2], np.uint8))
    with pytest.raises(mnist.MnistError, match=r"expected images \(N, 28, 28\) and N labels"):
        mnist.load_font_digits(tmp_path)
    # says 5 labels, holds 1
    (folder / "labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(mnist.MnistError,
                       match=r"truncated.* Build them again with `make font-digits`$"):
        mnist.load_font_digits(tmp_path)
    mnist.write_idx(folder / "labels-idx1-ubyte", np.array([1, 2, 12], np.uint8))
    with pytest.raises(mnist.MnistError, match="labels above 9"):
        mnist.load_font_digits(tmp_path)
