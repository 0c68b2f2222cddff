"""``python -m tools.export`` run as a user runs it (a subprocess), and
``python -m tools.onnx_predict`` without torch, on a tiny trained Net."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, write_mnist
from test_predict import odd_image_files

import utils
from model import Net
from s5 import checkpoint, digits, mnist

ort = pytest.importorskip("onnxruntime")  # a guard only: requirements-dev.txt installs it
onnx = pytest.importorskip("onnx")

# after the guards: these need onnx and onnxruntime at run time
from s5 import export, onnx_predict  # noqa: E402
from tools import export as export_tool  # noqa: E402
from tools import onnx_predict as onnx_predict_tool  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, checkpoint) of a Net trained briefly on 512 synthetic digits, enough for
    confident predictions."""
    tmp = tmp_path_factory.mktemp("export")
    data_dir = tmp / "data"
    write_mnist(data_dir, 512, 128)
    data = mnist.load_mnist(data_dir, md5s=None, fetch=False, log=lambda _: None)
    torch.manual_seed(0)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    loader = utils.DeviceLoader(data.train_images, data.train_labels, 64, shuffle=True)
    for epoch in (1, 2):
        for x, y in loader.batches(epoch):
            optimizer.zero_grad()
            torch.nn.functional.nll_loss(net(x), y).backward()
            optimizer.step()
    ckpt = checkpoint.save_checkpoint(tmp / "ckpt" / "tiny-run.pt", model=net, epoch=2)
    return data_dir, ckpt


def run_export(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tools.export", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


def test_export_verify_and_bench_through_the_cli(trained: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    data_dir, ckpt = trained
    out = tmp_path / "out"
    proc = run_export(ckpt, "--out", out, "--data-dir", data_dir, "--no-verify", "--bench",
                      "--bench-seconds", "0.05", "--threads", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "onnxruntime: 128/128 identical predictions, max |log-prob difference|" in proc.stdout
    assert "torch.export program: 128/128 identical predictions" in proc.stdout
    assert "fp32, 1 thread(s): images/s" in proc.stdout
    assert ("| onnxruntime |" in proc.stdout and "\n1000 | " in proc.stdout
            and "\n1 | " in proc.stdout)
    onnx_path, program_path = out / "tiny-run.onnx", out / "tiny-run.pt2"
    # no temporary left behind
    assert sorted(p.name for p in out.iterdir()) == ["tiny-run.onnx", "tiny-run.pt2"]

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size
    net = checkpoint.load_trained_net(ckpt)
    data = mnist.load_mnist(data_dir, md5s=None, fetch=False, log=lambda _: None)
    session = onnx_predict.load(onnx_path)
    program = torch.export.load(str(program_path)).module()
    for n in (1, 5, 128):
        x = utils.normalize(data.test_images[:n])
        expected = export.torch_log_probs(net, x)
        assert export.ort_log_probs(session, x).shape == (n, 10)
        assert np.abs(export.ort_log_probs(session, x) - expected).max() <= export.TOLERANCE
        assert np.abs(export.torch_log_probs(program, x) - expected).max() <= export.TOLERANCE


def test_refuses_to_overwrite(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, ckpt = trained
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny-run.pt2").write_bytes(b"the user's own file")
    proc = run_export(ckpt, "--out", out, "--data-dir", data_dir, "--no-verify", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"python -m tools.export: error: {out / 'tiny-run.pt2'} already exists; "
        "an export never overwrites a file: delete it or choose another folder"]
    assert (out / "tiny-run.pt2").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["tiny-run.pt2"]  # nothing else was written


def test_export_onnx_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "net.onnx"
    target.write_text("keep me")
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_onnx(Net().eval(), target)
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["missing", "garbage", "foreign"])
def test_bad_checkpoint_is_a_one_line_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.pt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "foreign":
        torch.save({"format": checkpoint.CHECKPOINT_FORMAT,
                    "model": torch.nn.Linear(2, 2).state_dict()}, path)
    proc = run_export(path, "--data-dir", tmp_path / "no-data", cwd=tmp_path)
    assert proc.returncode == (2 if kind == "missing" else 1), proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"python -m tools.export: error: {path}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.onnx"))


def test_a_differing_export_fails_the_check(trained: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    data_dir, ckpt = trained
    real = export.ort_log_probs
    monkeypatch.setattr(export, "ort_log_probs", lambda session, x: real(session, x) + 1e-3)
    status = export_tool.main([str(ckpt), "--out", str(tmp_path), "--data-dir", str(data_dir),
                               "--no-verify", "--no-program"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "onnxruntime: 128/128 identical predictions" in out and "FAILED" in out


def test_compare_counts_differing_predictions() -> None:
    a = np.log(np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]], dtype=np.float32))
    b = np.log(np.array([[0.7, 0.3], [0.6, 0.4], [0.5, 0.5]], dtype=np.float32))
    result = export.compare("x", a, b, np.array([0, 0, 1]))
    assert (result.identical, result.total, result.correct) == (2, 3, 2)
    assert result.max_abs_diff == pytest.approx(np.log(0.6) - np.log(0.4))
    assert not result.ok and export.compare("y", a, a, np.zeros(3)).ok


def test_inference_speed_rows(trained: tuple[Path, Path]) -> None:
    data_dir, ckpt = trained
    data = mnist.load_mnist(data_dir, md5s=None, fetch=False, log=lambda _: None)
    rows = export.inference_speed(checkpoint.load_trained_net(ckpt), data.test_images,
                                  batch_sizes=(64, 1), min_seconds=0.02)
    assert [(r.runtime, r.batch_size) for r in rows] == [("PyTorch", 64), ("onnxruntime", 64),
                                                          ("PyTorch", 1), ("onnxruntime", 1)]
    assert all(r.images_per_second > 0 for r in rows)
    table = export.format_speed(rows)
    assert "batch size | PyTorch | onnxruntime" in table and "\n64 | " in table


NO_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # any `import torch` now fails
try:
    # as `python -m tools.onnx_predict ARGS` runs it
    runpy.run_module("tools.onnx_predict", run_name="__main__")
finally:
    assert "torch" not in [name.split(".")[0]
                           for name, m in sys.modules.items() if m], "torch was imported"
"""


def test_onnx_predict_runs_without_torch(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, ckpt = trained
    onnx_path = export.export_onnx(checkpoint.load_trained_net(ckpt), tmp_path / "net.onnx")
    data = mnist.load_mnist(data_dir, md5s=None, fetch=False, log=lambda _: None)
    images = data.test_images[:20]
    np.save(tmp_path / "digits.npy", images.numpy())
    from PIL import Image

    Image.fromarray(255 - images[0].numpy()).resize((84, 84)).save(tmp_path / "dark-on-light.png")
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(onnx_path),
                           str(tmp_path / "digits.npy"), str(tmp_path / "dark-on-light.png")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = checkpoint.load_trained_net(ckpt)(utils.normalize(images)).argmax(dim=1).tolist()
    lines = proc.stdout.strip().splitlines()
    assert [int(line.split(": ")[1].split()[0]) for line in lines[:20]] == expected
    assert (lines[0].startswith("digits.npy[0]: ")
            or lines[0].startswith(f"{tmp_path / 'digits.npy'}[0]: "))
    assert lines[20].startswith(f"{tmp_path / 'dark-on-light.png'}: {expected[0]} (probability ")

    missing = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / "none.onnx"), "x.npy"],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert missing.returncode == 2 and "no such model file (it does not exist)" in missing.stderr


def test_onnx_predict_reads_image_files_as_predict_py_does(trained: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    _, ckpt = trained
    # not beside the checkpoint: predict.py runs PyTorch
    onnx_path = export.export_onnx(checkpoint.load_trained_net(ckpt), tmp_path / "net.onnx")
    folder = tmp_path / "images"
    folder.mkdir()
    odd_image_files(folder)
    # a bad file: the same message, the others still answered, exit 1
    (folder / "blank.png").write_bytes(b"")
    ours = subprocess.run([sys.executable, "-c", NO_TORCH, str(onnx_path), str(folder)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    theirs = subprocess.run([sys.executable, str(ROOT / "predict.py"), str(folder), "--checkpoint",
                             str(ckpt), "--json"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert ours.returncode == theirs.returncode == 1, ours.stderr + theirs.stderr
    entries = json.loads(theirs.stdout)
    expected = {e["file"]: (e["digit"], e["uncertain"], e["probability"])
                for e in entries if "error" not in e}
    got = {name: (int(rest.split()[0]), rest.endswith(", uncertain)"),
                  float(rest.split("probability ")[1][:5]))
           for name, rest in (line.split(": ", 1) for line in ours.stdout.strip().splitlines())}
    assert len(expected) == 4 and got.keys() == expected.keys()
    for name, (digit, uncertain, probability) in got.items():  # printed to 3 decimals
        assert ((digit, uncertain) == expected[name][:2]
                and abs(probability - expected[name][2]) <= 6e-4), name
    assert ours.stderr.splitlines() == [f"python -m tools.onnx_predict: error: {e['error']}"
                                        for e in entries if "error" in e]
    assert "is empty (0 bytes)" in ours.stderr

    # --json: predict.py's list, entry for entry (probabilities to within float32 rounding)
    as_json = subprocess.run([sys.executable, "-c", NO_TORCH, str(onnx_path), str(folder),
                              "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert as_json.returncode == 1 and as_json.stderr == ""
    mine = json.loads(as_json.stdout)
    assert [list(e) for e in mine] == [list(e) for e in entries]
    for e, theirs_e in zip(mine, entries, strict=True):
        assert {k: v for k, v in e.items() if k not in ("probability", "top3", "probabilities")} \
            == {k: v for k, v in theirs_e.items() if k not in ("probability", "top3",
                                                               "probabilities")}
        if "error" not in e:
            assert np.allclose(e["probabilities"], theirs_e["probabilities"], atol=1e-4)


def test_onnx_predict_refuses_a_model_that_is_no_file_or_answers_nan(trained: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    """A FIFO or folder given as the model is no model file (2, before onnxruntime would block on
    the FIFO); an export whose weights give NaN is refused in one line (1), as predict.py refuses
    such a checkpoint, instead of printing "probability nan"."""
    _, ckpt = trained
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), np.uint8))
    os.mkfifo(tmp_path / "fifo.onnx")
    (tmp_path / "folder.onnx").mkdir()
    for name, what in (("fifo.onnx", "is not a regular file"), ("folder.onnx", "is a folder")):
        proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / name),
                               str(tmp_path / "digits.npy")], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr == (f"python -m tools.onnx_predict: error: {tmp_path / name}: no such "
                               f"model file (it {what})\n")

    model = onnx.load(str(export.export_onnx(checkpoint.load_trained_net(ckpt),
                                             tmp_path / "net.onnx")))
    weights = model.graph.initializer[0]
    array = onnx.numpy_helper.to_array(weights).copy()
    array.flat[0] = np.nan
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(model.SerializeToString())
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(broken),
                           str(tmp_path / "digits.npy")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 1 and proc.stdout == "" and "nan" not in proc.stdout
    assert proc.stderr == (f"python -m tools.onnx_predict: error: {broken}: the model's outputs "
                           "are NaN or infinite: its weights are broken\n")


def test_skip_compare_needs_no_data(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, ckpt = trained
    proc = run_export(ckpt, "--out", tmp_path / "out", "--data-dir", tmp_path / "no-data",
                      "--skip-compare", "--no-program", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny-run.onnx"]
    assert "identical predictions" not in proc.stdout and not (tmp_path / "no-data").exists()


def test_predict_runs_the_export_beside_its_own_checkpoint_only(trained: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    data_dir, source = trained
    ckpt, other = tmp_path / "run.pt", tmp_path / "other" / "run.pt"
    ckpt.write_bytes(source.read_bytes())
    # writes run.onnx beside run.pt
    proc = run_export(ckpt, "--skip-compare", "--no-program", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = mnist.load_mnist(data_dir, md5s=None, fetch=False, log=lambda _: None)
    images = data.test_images[:300]
    onnx_net, net = digits.exported_net(ckpt), checkpoint.load_trained_net(ckpt)
    assert onnx_net is not None and onnx_net.path == tmp_path / "run.onnx"
    fast, reference = digits.predict(onnx_net, images), digits.predict(net, images)
    assert [p.digit for p in fast] == [p.digit for p in reference]
    assert max(abs(p.probability - q.probability)
               for p, q in zip(fast, reference, strict=True)) < 1e-5

    folder = tmp_path / "folder"
    folder.mkdir()
    from PIL import Image

    for k in range(40):
        Image.fromarray(255 - images[k].numpy()).resize((56, 56)).save(folder / f"{k:02d}.png")

    def predict_cli(checkpoint_path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "predict.py"), str(folder),
                               "--checkpoint", str(checkpoint_path), "--json"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)

    with_onnx = predict_cli(ckpt)
    assert with_onnx.returncode == 0 and f"onnxruntime: {tmp_path / 'run.onnx'}" in with_onnx.stderr
    # the same checkpoint changed after the export (as --resume does): its stale export is not used
    other.parent.mkdir()
    checkpoint.save_checkpoint(other, model=net, epoch=3)
    (other.parent / "run.onnx").write_bytes((tmp_path / "run.onnx").read_bytes())
    assert digits.exported_net(other) is None
    without = predict_cli(other)
    assert without.returncode == 0 and "onnxruntime" not in without.stderr
    digits_of = lambda proc: [e["digit"] for e in json.loads(proc.stdout)]  # noqa: E731
    assert digits_of(with_onnx) == digits_of(without)
    assert digits.exported_net(tmp_path / "missing.pt") is None  # no export: PyTorch


def test_a_failed_export_leaves_no_half_of_it(trained: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch, capsys) -> None:
    """The .pt2 cannot be written (a full disk): neither it nor the finished .onnx is left, and the
    error is one line."""
    _, ckpt = trained

    def full_disk(model):
        def write(tmp: Path) -> None:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    monkeypatch.setattr(export, "program_writer", full_disk)
    status = export_tool.main([str(ckpt), "--out", str(tmp_path / "out"), "--skip-compare"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (status != 0 and err[-1].startswith("python -m tools.export: error:")
            and "No space left" in err[-1])
    assert list((tmp_path / "out").iterdir()) == []  # no .onnx, no .pt2, no temporary file


def test_onnx_predict_refuses_what_it_cannot_read_and_flags_uncertain_answers(
        trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    from onnx import TensorProto, helper
    from PIL import Image

    _, ckpt = trained
    onnx_path = export.export_onnx(checkpoint.load_trained_net(ckpt), tmp_path / "net.onnx")
    np.save(tmp_path / "nan.npy", np.full((2, 28, 28), np.nan, np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28), np.uint8))
    np.save(tmp_path / "wide.npy", np.zeros((3, 32, 32), np.uint8))
    os.mkfifo(tmp_path / "fifo.png")  # would block a reader forever
    Image.fromarray(np.full((28, 28), np.nan, np.float32), "F").save(tmp_path / "nan.tiff")
    status = onnx_predict_tool.main([str(onnx_path), *(str(tmp_path / n) for n in
                                                        ("nan.npy", "empty.npy", "wide.npy",
                                                         "fifo.png", "nan.tiff"))])
    err = capsys.readouterr().err.splitlines()
    assert status == 1 and len(err) == 5
    assert all(line.startswith("python -m tools.onnx_predict: error: ") for line in err), err
    assert ("finite and in 0..1" in err[0] and "got (0, 28, 28)" in err[1]
            and "got (3, 32, 32)" in err[2])
    assert "not a regular file" in err[3] and "NaN or infinite" in err[4]

    uniform = np.full((1, 28, 28), 0.5, np.float32)  # no digit at all: the answer cannot be sure
    ((_, probability, uncertain),) = onnx_predict.best_digits(onnx_predict.load(onnx_path), uniform)
    assert uncertain == (probability < onnx_predict.UNCERTAIN_BELOW)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])
    outs = [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, ["n", 3, 32, 32])
            for k in range(5)]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], [f"y{k}"]) for k in range(5)],
                              "g", [x], outs)
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(helper.make_model(graph).SerializeToString())
    assert onnx_predict_tool.main([str(foreign), str(tmp_path / "wide.npy")]) == 1
    assert "not an export of this Net" in capsys.readouterr().err
