"""predict.py: preprocessing of user images, predictions from files and tensors, and its errors.

Everything is made here: digits drawn with PIL, a Net trained in seconds on them, MNIST-format
images from conftest's generator. Nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, synthetic_digits
from PIL import Image, ImageDraw

import predict
import utils
from model import Net
from s5 import checkpoint, digits
from s5.image import ImageError, preprocess, read_image

CLASSES = (0, 1, 7)


def draw_digit(digit: int, size: tuple[int, int] = (200, 300), thickness: int = 24,
               box: tuple[float, float, float, float] = (0.3, 0.15, 0.7, 0.85), slant: float = 0.0,
               dark_on_light: bool = True) -> Image.Image:
    """A 0 (ellipse), 1 (bar with a flag) or 7 (top bar and diagonal) in ``box``, given as
    fractions of the image size."""
    w, h = size
    ink, paper = (0, 255) if dark_on_light else (255, 0)
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    s = slant * (y1 - y0)
    if digit == 0:
        draw.ellipse([x0, y0, x1, y1], outline=ink, width=thickness)
    elif digit == 1:
        xm = (x0 + x1) / 2
        draw.line([(xm + s, y0), (xm - s, y1)], fill=ink, width=thickness)
        draw.line([(xm + s, y0), (xm + s - 0.25 * (x1 - x0), y0 + 0.2 * (y1 - y0))], fill=ink,
                  width=thickness)
    elif digit == 7:
        draw.line([(x0 + s, y0), (x1 + s, y0)], fill=ink, width=thickness)
        draw.line([(x1 + s, y0), (x0 + 0.3 * (x1 - x0) - s, y1)], fill=ink, width=thickness)
    else:
        raise ValueError(f"no drawing for {digit}")
    return img


def jittered_digit(digit: int, rng: np.random.Generator) -> Image.Image:
    """``draw_digit`` with random canvas size, stroke thickness, position, size, slant, polarity."""
    w, h = int(rng.integers(60, 320)), int(rng.integers(60, 320))
    bw = rng.uniform(0.25, 0.6) if digit == 1 else rng.uniform(0.35, 0.6)
    bh = rng.uniform(0.4, 0.8)
    x0, y0 = rng.uniform(0.05, 0.95 - bw), rng.uniform(0.05, 0.95 - bh)
    thickness = max(2, int(min(w, h) * rng.uniform(0.04, 0.12)))
    return draw_digit(digit, (w, h), thickness, (x0, y0, x0 + bw, y0 + bh),
                      rng.uniform(-0.15, 0.15), bool(rng.random() < 0.5))


def odd_image_files(folder: Path) -> list[Path]:
    """Four drawn digits, one per way a file is read: dark ink on light paper (8-bit PNG), a 12-bit
    scan in a 16-bit PNG, light ink on dark paper as a float TIFF in 0..1, and black ink on a
    transparent sheet (RGBA PNG)."""
    files = [folder / name
             for name in ("dark-on-light.png", "twelve-bit.png", "float.tif", "sheet.png")]
    draw_digit(7, size=(220, 260), thickness=18).save(files[0])
    Image.fromarray(np.asarray(draw_digit(1, size=(180, 240), slant=0.2),
                               dtype=np.uint16) * 16).save(files[1])
    light = draw_digit(0, size=(300, 200), thickness=30, dark_on_light=False)
    Image.fromarray(np.asarray(light, dtype=np.float32) / 255, "F").save(files[2])
    sheet = Image.new("RGBA", (240, 240), (0, 0, 0, 0))
    sheet.putalpha(Image.eval(draw_digit(7, size=(240, 240), slant=0.5), lambda v: 255 - v))
    sheet.save(files[3])
    return files


def drawn_dataset(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Jittered drawings of each class in CLASSES, through predict's own preprocessing."""
    rng = np.random.default_rng(seed)
    labels = [c for _ in range(n_per_class) for c in CLASSES]
    images = [preprocess(np.asarray(jittered_digit(c, rng), dtype=np.float64)) for c in labels]
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


@contextmanager
def one_thread() -> Iterator[None]:
    """Small CPU work runs far faster on one thread when the cores are busy with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Net, Path]:
    """A Net that reads drawn 0, 1 and 7, and its checkpoint file.

    Only fc1 and fc2 are trained, on fc1's cached input, so that it takes seconds on one core; the
    convolutions keep their seeded random weights. The real ``Net.forward`` is then checked.
    """
    torch.manual_seed(0)
    net = Net().eval()
    images, labels = drawn_dataset(200, seed=0)
    x = utils.normalize(images)
    with one_thread():
        cached = []
        hook = net.fc1.register_forward_hook(
            lambda module, inputs, output: cached.append(inputs[0]))
        with torch.no_grad():
            net(x)
        hook.remove()
        features = cached[0]
        head = [*net.fc1.parameters(), *net.fc2.parameters()]
        optimizer = torch.optim.Adam(head, lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(400):
            idx = torch.randint(0, len(x), (64,), generator=generator)
            loss = F.nll_loss(F.log_softmax(net.fc2(F.relu(net.fc1(features[idx]))), dim=1),
                              labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        held_out, held_labels = drawn_dataset(50, seed=1)
        train_acc = np.mean([p.digit == y for p, y in zip(digits.predict(net, images),
                                                           labels.tolist(), strict=True)])
        held_acc = np.mean([p.digit == y for p, y in zip(digits.predict(net, held_out),
                                                          held_labels.tolist(), strict=True)])
    assert train_acc >= 0.98 and held_acc >= 0.95, ("the test's Net did not learn: "
                                                    f"{train_acc=} {held_acc=}")
    path = checkpoint.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "drawn.pt", model=net)
    return net, path


def run_predict(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "predict.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every path under ``folder`` with its bytes (folders map to b"")."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    a = np.asarray(image, dtype=np.float64)
    ys, xs = np.indices(a.shape)
    return float((ys * a).sum() / a.sum()), float((xs * a).sum() / a.sum())


# --------------------------------------------------------------------------------------------------
# Preprocessing: a user's image becomes an MNIST-style 28x28 digit
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", [1, 7, 0])
def test_preprocess_makes_an_mnist_style_digit(digit: int, tmp_path: Path) -> None:
    path = tmp_path / f"{digit}.png"
    draw_digit(digit).save(path)
    out = read_image(path)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    rows, cols = np.nonzero(out)
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    # the longer side fills the 20-px box
    assert max(height, width) in (19, 20) and height <= 20 and width <= 20
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)
    border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
    assert border.max() == 0  # black background: the white paper was inverted
    assert out.max() >= 250  # white ink, full contrast


def test_light_and_dark_backgrounds_give_the_same_digit(tmp_path: Path) -> None:
    dark_ink, light_ink = draw_digit(7, dark_on_light=True), draw_digit(7, dark_on_light=False)
    dark_ink.save(tmp_path / "dark.png")
    light_ink.save(tmp_path / "light.png")
    assert np.asarray(dark_ink)[0, 0] == 255 and np.asarray(light_ink)[0, 0] == 0
    assert np.array_equal(read_image(tmp_path / "dark.png"), read_image(tmp_path / "light.png"))


def test_modes_and_formats_read_alike(tmp_path: Path) -> None:
    gray = draw_digit(1, size=(240, 180), slant=0.1)
    gray.save(tmp_path / "gray.png")
    reference = read_image(tmp_path / "gray.png")
    gray.convert("RGB").save(tmp_path / "rgb.bmp")
    gray.convert("P").save(tmp_path / "palette.png")
    # 16-bit grey
    Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    transparent = Image.new("RGBA", gray.size, (0, 0, 0, 0))  # black ink on a transparent sheet
    transparent.putalpha(Image.eval(gray, lambda v: 255 - v))
    transparent.save(tmp_path / "transparent.png")
    for name in ("rgb.bmp", "palette.png", "sixteen.png", "transparent.png"):
        assert np.array_equal(read_image(tmp_path / name), reference), name
    assert np.array_equal(preprocess(gray), reference)  # an in-memory PIL image
    gray.convert("RGB").save(tmp_path / "photo.jpg", quality=85)  # lossy: close, not equal
    diff = np.abs(read_image(tmp_path / "photo.jpg").astype(float) - reference).mean()
    assert diff < 8, diff


def test_a_28x28_image_with_dark_background_is_taken_as_mnist(tmp_path: Path) -> None:
    images, _ = synthetic_digits(3, seed=5)  # bars off-centre: re-centring would move them
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        assert np.array_equal(read_image(tmp_path / f"{i}.png"), image)
    Image.fromarray(255 - images[0]).save(tmp_path / "light.png")  # dark ink on white: preprocessed
    assert not np.array_equal(read_image(tmp_path / "light.png"), images[0])


# --------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------


def test_cli_reads_drawn_digits_with_the_newest_checkpoint(trained: tuple[Net, Path],
                                                           tmp_path: Path) -> None:
    _, ckpt = trained
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    old = checkpoint.save_checkpoint(project / "checkpoints" / "20200101-000000-old.pt",
                                     model=Net())  # untrained
    os.utime(old, (1_000_000_000, 1_000_000_000))
    (project / "checkpoints" / "20261124-031646-drawn.pt").write_bytes(ckpt.read_bytes())
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_digit(1).save(photos / "one.png")  # 200x300, dark on white
    draw_digit(7).convert("RGB").save(photos / "seven.jpg", quality=90)
    draw_digit(7, size=(300, 200), slant=0.1,
               dark_on_light=False).save(photos / "seven_on_black.bmp")
    draw_digit(0, size=(150, 150), thickness=12,
               dark_on_light=False).save(photos / "zero_on_black.png")
    draw_digit(1, size=(400, 400), thickness=30,
               box=(0.1, 0.5, 0.3, 0.95)).save(photos / "small_one.png")
    before = snapshot(photos)

    proc = run_predict(photos / "one.png", photos / "seven.jpg", photos, cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checkpoints/20261124-031646-drawn.pt" in proc.stderr
    lines = [line.split(": ", 1) for line in proc.stdout.splitlines()]
    names = ["one.png", "seven.jpg", "one.png", "seven.jpg", "seven_on_black.bmp", "small_one.png",
             "zero_on_black.png"]
    # the two files named, then the folder's, sorted
    assert [Path(file).name for file, _ in lines] == names
    expected = {"one.png": 1, "seven.jpg": 7, "seven_on_black.bmp": 7, "zero_on_black.png": 0,
                "small_one.png": 1}
    for file, result in lines:
        assert result.startswith(f"{expected[Path(file).name]} (probability "), (file, result)
        assert "top 3: " in result
    assert snapshot(photos) == before


def test_files_and_tensor_agree_on_100_mnist_images(trained: tuple[Net, Path],
                                                    tmp_path: Path) -> None:
    net, ckpt = trained
    images, _ = synthetic_digits(100, seed=11)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")  # 28x28 greyscale PNG
    files = sorted(folder.iterdir())
    from_files = np.stack([read_image(p) for p in files])
    assert np.array_equal(from_files, images)
    with one_thread():
        by_tensor = digits.predict(net, torch.from_numpy(images))
        by_files = digits.predict(net, from_files)
        by_numpy_4d = digits.predict(net, images[:, None])
        by_float = digits.predict(net, torch.from_numpy(images).float() / 255)
    assert ([p.digit for p in by_files] == [p.digit for p in by_tensor]
            == [p.digit for p in by_numpy_4d])
    assert [p.digit for p in by_float] == [p.digit for p in by_tensor]
    np.testing.assert_allclose([p.probability for p in by_files],
                               [p.probability for p in by_tensor], atol=1e-6)
    np.testing.assert_allclose([p.probability for p in by_float],
                               [p.probability for p in by_tensor], atol=1e-4)

    proc = run_predict("--json", "--checkpoint", ckpt, folder, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["file"] for r in results] == [str(p) for p in files]
    assert [r["digit"] for r in results] == [p.digit for p in by_tensor]
    np.testing.assert_allclose([r["probability"] for r in results],
                               [p.probability for p in by_tensor], atol=1e-4)


def test_predict_returns_digit_probability_and_top3(trained: tuple[Net, Path]) -> None:
    net, _ = trained
    images, _ = drawn_dataset(2, seed=3)
    results = digits.predict(net, images)
    assert len(results) == 6
    for r in results:
        assert isinstance(r.digit, int) and 0 <= r.digit <= 9
        assert len(r.top3) == 3 and r.top3[0] == (r.digit, r.probability)
        probs = [p for _, p in r.top3]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    [single] = digits.predict(net, images[0])  # one (28, 28) image
    assert (single.digit == results[0].digit
            and single.probability == pytest.approx(results[0].probability, abs=1e-5))
    assert digits.predict(net, images[:0]) == []


def test_a_folder_sized_batch_agrees_with_small_batches_and_leaves_the_net_alone(
        trained: tuple[Net, Path]) -> None:
    net, _ = trained
    images, _ = drawn_dataset(30, seed=4)  # 300 images: the channels_last path
    whole = digits.predict(net, images)
    parts = [r for i in range(0, 300, 100) for r in digits.predict(net, images[i:i + 100])]
    assert [r.digit for r in whole] == [r.digit for r in parts]
    assert max(abs(a.probability - b.probability) for a, b in zip(whole, parts, strict=True)) < 1e-5
    assert all(p.is_contiguous() for p in net.parameters())  # the caller's Net keeps its own layout


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_text("not an image at all\n"),
     "bad.png is not an image PIL can read (PNG, JPEG, BMP, ...)"),
    (lambda p: p.write_bytes(b""), "bad.png is empty (0 bytes), not an image"),
    (lambda p: Image.new("L", (200, 300), 255).save(p, format="PNG"),
     "bad.png is an empty image: no ink"),
    (lambda p: Image.new("RGB", (64, 64), (90, 20, 200)).save(p, format="PNG"),
     "bad.png is an empty image: no ink"),
    (lambda p: p.write_bytes(_png_bytes()[:200]), "bad.png could not be read"),
])
def test_bad_image_files_are_clear_errors(make, message: str, tmp_path: Path) -> None:
    make(tmp_path / "bad.png")
    with pytest.raises(ImageError, match=re.escape(message)):
        read_image(tmp_path / "bad.png")


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64),
                                                      dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_missing_file_and_zero_size_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"nothere\.png: no such file"):
        read_image(tmp_path / "nothere.png")
    with pytest.raises(ImageError, match=r"scan is an empty image \(zero size\)"):
        preprocess(np.zeros((0, 40)), "scan")


@pytest.mark.parametrize(("images", "message"), [
    (torch.zeros(4, 32, 32, dtype=torch.uint8),
     r"\(N, 28, 28\) or \(N, 1, 28, 28\).*got \(4, 32, 32\)"),
    (torch.zeros(4, 3, 28, 28, dtype=torch.uint8),
     r"\(N, 28, 28\) or \(N, 1, 28, 28\).*got \(4, 3, 28, 28\)"),
    (torch.zeros(784, dtype=torch.uint8), r"got \(784,\)"),
    (torch.full((2, 28, 28), 255.0), r"float images must be in \[0, 1\]"),
    (utils.normalize(torch.zeros(2, 28, 28, dtype=torch.uint8)),
     r"float images must be in \[0, 1\]"),
    (torch.zeros(2, 28, 28, dtype=torch.int64), "must be uint8"),
])
def test_wrong_tensors_are_value_errors(images: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        digits.predict(Net().eval(), images)


def test_folder_of_mixed_files_reports_each_bad_one(trained: tuple[Net, Path],
                                                    tmp_path: Path) -> None:
    _, ckpt = trained
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    draw_digit(7).save(folder / "a_seven.png")
    draw_digit(1, dark_on_light=False).save(folder / "b_one.png")
    (folder / "c_notes.txt").write_text("shopping list\n")
    (folder / "d_fake.png").write_text("definitely not a PNG")
    (folder / "e_empty.png").write_bytes(b"")
    Image.new("L", (200, 300), 255).save(folder / "f_blank.png")
    (folder / "g_cut.png").write_bytes(_png_bytes()[:200])
    (folder / ".hidden").write_text("skipped")
    draw_digit(0).save(folder / "sub" / "zero.png")  # folders are not searched recursively
    before = snapshot(folder)

    proc = run_predict("--checkpoint", ckpt, folder, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{folder / 'a_seven.png'}: 7 (probability ")
    assert lines[1].startswith(f"{folder / 'b_one.png'}: 1 (probability ")
    for gist in (f"{folder / 'c_notes.txt'} is not an image PIL can read (PNG, JPEG, BMP, ...)",
                 f"{folder / 'd_fake.png'} is not an image PIL can read",
                 f"{folder / 'e_empty.png'} is empty (0 bytes)",
                 f"{folder / 'f_blank.png'} is an empty image: no ink",
                 f"{folder / 'g_cut.png'} could not be read"):
        assert gist in proc.stderr, gist
    assert proc.stderr.count("error: ") == 5 and "zero.png" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "error: " in line]
    assert all(line.startswith("predict.py: error: ") for line in errors), errors

    json_proc = run_predict("--json", "--checkpoint", ckpt, folder, cwd=tmp_path)
    assert json_proc.returncode == 1
    results = json.loads(json_proc.stdout)
    assert [Path(r["file"]).name for r in results] == [
        "a_seven.png", "b_one.png", "c_notes.txt", "d_fake.png", "e_empty.png", "f_blank.png",
        "g_cut.png"]
    assert [r.get("digit") for r in results[:2]] == [7, 1]
    for r in results[:2]:
        assert set(r) == {"file", "digit", "probability", "top3", "uncertain", "probabilities"}
        assert len(r["top3"]) == 3 and r["top3"][0] == [r["digit"], r["probability"]]
        assert len(r["probabilities"]) == 10 and r["probabilities"][r["digit"]] == r["probability"]
    for r in results[2:]:
        assert set(r) == {"file", "error"} and r["file"] in r["error"]
    assert snapshot(folder) == before  # nothing changed, nothing added


def test_no_checkpoint_exits_2_and_a_bad_one_1(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    draw_digit(7).save(tmp_path / "seven.png")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cases = [
        ((), "no checkpoint found: checkpoints/ holds no *.pt file. Run `make train`", 2),
        (("--checkpoint", tmp_path / "missing.pt"),
         "missing.pt: no such checkpoint file (it does not exist)", 2),
        (("--checkpoint", tmp_path / "notes.txt"),
         f"predict.py: error: {tmp_path / 'notes.txt'} ", 1),
    ]
    for args, message, status in cases:
        proc = run_predict(*args, tmp_path / "seven.png", cwd=tmp_path)
        assert proc.returncode == status, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout == ""
    with pytest.raises(SystemExit) as usage:  # no image named
        predict.main([])
    assert usage.value.code == 2 and "usage:" in capsys.readouterr().err


def test_folder_with_nan_pixels_and_broken_links_reports_each_file(trained: tuple[Net, Path],
                                                                   tmp_path: Path) -> None:
    _, ckpt = trained
    folder = tmp_path / "odd"
    folder.mkdir()
    draw_digit(7).save(folder / "a_seven.png")
    nan = np.asarray(draw_digit(1), dtype=np.float32) / 255
    nan[5, 5] = np.nan
    Image.fromarray(nan, "F").save(folder / "b_nan.tif")
    Image.fromarray(np.asarray(draw_digit(1), dtype=np.float32) / 255,
                    "F").save(folder / "c_float.tif")  # 0..1
    os.symlink(folder / "gone.png", folder / "d_dangling.png")
    os.symlink(folder / "e_loop.png", folder / "e_loop.png")
    proc = run_predict("--checkpoint", ckpt, folder, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert [line.split(": ")[0] for line in proc.stdout.splitlines()] == [
        str(folder / "a_seven.png"), str(folder / "c_float.tif")]
    assert proc.stdout.splitlines()[1].split(": ")[1].startswith("1 (probability")
    for gist in ("b_nan.tif has NaN or infinite pixel values",
                 "d_dangling.png is a broken symbolic link", "e_loop.png is a symbolic link loop"):
        assert gist in proc.stderr, proc.stderr
    assert proc.stderr.count("error: ") == 3
    results = json.loads(run_predict("--json", "--checkpoint", ckpt, folder, cwd=tmp_path).stdout)
    assert [("error" in r) for r in results] == [False, True, False, True, True]


def test_uncertain_answers_are_marked_in_text_and_json(trained: tuple[Net, Path],
                                                       tmp_path: Path) -> None:
    _, ckpt = trained
    unsure = Net()
    torch.nn.init.zeros_(unsure.fc2.weight)  # every digit equally likely: probability 0.1
    torch.nn.init.zeros_(unsure.fc2.bias)
    vague = checkpoint.save_checkpoint(tmp_path / "vague.pt", model=unsure)
    draw_digit(7).save(tmp_path / "seven.png")
    sure = json.loads(run_predict("--json", "--checkpoint", ckpt, tmp_path / "seven.png",
                                  cwd=tmp_path).stdout)
    assert (sure[0]["digit"] == 7
            and sure[0]["uncertain"] is (sure[0]["probability"] < digits.UNCERTAIN_BELOW))
    vague_json = json.loads(run_predict("--json", "--checkpoint", vague, tmp_path / "seven.png",
                                        cwd=tmp_path).stdout)
    assert (vague_json[0]["uncertain"] is True
            and vague_json[0]["probability"] == pytest.approx(0.1, abs=1e-3))
    text = run_predict("--checkpoint", vague, tmp_path / "seven.png", cwd=tmp_path).stdout
    assert "(probability 0.100, uncertain; top 3: " in text


def test_the_newest_finished_checkpoint_is_picked_and_named_with_its_accuracy(
        trained: tuple[Net, Path], tmp_path: Path) -> None:
    net, _ = trained
    folder = tmp_path / "checkpoints"
    history = {"split": "test", "epoch": [1.0, 2.0], "eval_acc": [97.0, 98.25]}
    done = checkpoint.save_checkpoint(folder / "20260101-000000.pt", model=net, epoch=2,
                                      history=history, settings={"epochs": 2},
                                      run_id="20260101-000000")
    os.utime(done, (1_000_000_000, 1_000_000_000))
    cut = checkpoint.save_checkpoint(folder / "20260102-000000.pt", model=Net(), epoch=0,
                                     run_id="20260102-000000", settings={"epochs": 40},
                                     partial={"batches": 3})  # newer, but interrupted
    draw_digit(7).save(tmp_path / "seven.png")
    proc = run_predict(tmp_path / "seven.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.splitlines()[0]
    expected = (f"{Path('checkpoints') / done.name} "
                "(run 20260101-000000, test accuracy 98.25% after 2 epochs)")
    assert first == f"checkpoint: {expected}"
    only_cut = run_predict("--checkpoint", cut, tmp_path / "seven.png", cwd=tmp_path)
    assert "an unfinished run" in only_cut.stderr.splitlines()[0]


def test_the_python_api_says_what_it_expects(trained: tuple[Net, Path]) -> None:
    net, ckpt = trained
    for images, gist in ((None, "got None"), (np.zeros(0, np.uint8), r"got \(0,\)")):
        with pytest.raises(ValueError, match=gist) as info:
            digits.predict(net, images)
        assert "(N, 28, 28)" in str(info.value)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        digits.predict(net, torch.zeros(2, 28, 28, dtype=torch.uint8), batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda'.*no such device here"):
            checkpoint.load_trained_net(ckpt, device="cuda")


def test_a_folder_that_cannot_be_listed_is_not_called_empty(tmp_path: Path, monkeypatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    """A folder predict.py may not list is unreadable input (1), said so, not "no files in it"
    (os.listdir is refused here as chmod 000 would: the tests may run as root, who reads all)."""
    locked, empty = tmp_path / "locked", tmp_path / "empty"
    locked.mkdir()
    empty.mkdir()
    draw_digit(7).save(locked / "seven.png")
    listdir = os.listdir

    def refused(path: str | os.PathLike = ".") -> list[str]:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refused)
    ckpt = checkpoint.save_checkpoint(tmp_path / "run.pt", model=Net(), epoch=1)
    assert predict.main([str(locked), str(empty), "--checkpoint", str(ckpt)]) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"predict.py: error: {locked} is a folder that cannot be read: Permission denied",
        f"predict.py: error: {empty} is a folder with no files in it"]


def test_weights_that_give_nan_are_an_unusable_checkpoint(tmp_path: Path) -> None:
    """Finite weights so large that the outputs overflow to NaN: one line, exit 1 (the file is
    there but unusable), nothing printed as a prediction."""
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e12)
    ckpt = checkpoint.save_checkpoint(tmp_path / "huge.pt", model=net, epoch=1)
    draw_digit(7).save(tmp_path / "seven.png")
    proc = run_predict("--checkpoint", ckpt, tmp_path / "seven.png", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1] == (f"predict.py: error: {ckpt}: the model's outputs are "
                                            "NaN or infinite: its weights are broken")
