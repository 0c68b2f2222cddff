"""Faults met before or around training, each ending in one line with the documented exit status:
a signal during set-up, an empty IDX file, a TensorBoard folder that cannot be written, a report
whose targets cannot all be written, and a resumed epoch's seconds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, stop_after

from s5 import mnist, recipes, runs, train_cli, training
from tools import report as report_tool


def flags(data_dir: Path, tmp_path: Path, *more: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--no-verify", "--no-progress", "--device", "cpu",
            "--recipe", "fast", "--epochs", "0.25", "--log-dir", str(tmp_path / "logs"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), *more]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) \
        if folder.exists() else []


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_set_up_is_one_line_and_releases_the_claim(tiny_mnist, tmp_path: Path,
                                                                   monkeypatch, capsys, sent,
                                                                   status) -> None:
    data_dir, _ = tiny_mnist
    loading = training.prepare

    def prepare(run: training.Run) -> None:  # the signal arrives while the data load
        os.kill(os.getpid(), sent)
        loading(run)

    monkeypatch.setattr(training, "prepare", prepare)
    assert train_cli.main(flags(data_dir, tmp_path)) == status
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"Interrupted ({sent.name}) during the run's set-up: nothing was "
                              "trained or saved"), out
    assert hidden(tmp_path / "ckpt") == [] and not list((tmp_path / "ckpt").glob("*.pt"))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers given back


def test_a_library_error_raised_by_the_interruption_is_still_an_interruption(
        tiny_mnist, tmp_path: Path, monkeypatch) -> None:
    """A library stopped mid-way (tqdm creating its lock) may raise its own error instead."""
    data_dir, _ = tiny_mnist

    def prepare(run: training.Run) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            raise RuntimeError("the library's own error") from None

    monkeypatch.setattr(training, "prepare", prepare)
    assert train_cli.main(flags(data_dir, tmp_path)) == 143
    assert hidden(tmp_path / "ckpt") == []
    (log,) = (tmp_path / "logs").glob("*.log")
    assert "crashed" not in log.read_text() and "during the run's set-up" in log.read_text()


def test_held_signals_arrive_when_the_block_ends() -> None:
    """The claim is taken with signals held: one never lands between the claim and its release."""
    reached = False
    with training.abort_on_signals(), pytest.raises(training.Interrupted):
        with training.held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached = True
    assert reached


def test_sigterm_as_soon_as_the_run_is_claimed_leaves_no_claim(tiny_mnist, tmp_path: Path) -> None:
    """The real process: SIGTERM once its log exists (set-up, or at most its first step)."""
    data_dir, _ = tiny_mnist
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *flags(data_dir, tmp_path)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "logs").glob("*.log")):
        time.sleep(0.01)
    proc.terminate()
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143 and "interrupted (sigterm)" in output.lower(), output
    assert "Traceback" not in output and hidden(tmp_path / "ckpt") == []


def test_an_idx_file_of_zero_images_is_named_in_one_line(tiny_mnist, tmp_path: Path,
                                                         capsys) -> None:
    data_dir, _ = tiny_mnist
    empty = mnist.mnist_raw_dir(data_dir) / "t10k-images-idx3-ubyte"
    mnist.write_idx(empty, np.zeros((0, 28, 28), dtype=np.uint8))
    with pytest.raises(mnist.MnistError, match="holds no images or labels"):
        mnist.read_raw_file(empty, None)
    assert train_cli.main(flags(data_dir, tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (len(err) == 1 and str(empty) in err[0] and "holds no images" in err[0]
            and "buffer length" not in err[0]), err


def test_a_resumed_epoch_keeps_the_seconds_before_its_interruption(tiny_mnist, tmp_path: Path,
                                                                   monkeypatch) -> None:
    data_dir, _ = tiny_mnist
    settings = recipes.RECIPES["fast"].replace(epochs=2, test_batch_size=128)
    monkeypatch.setattr(training, "stop_on_signals", stop_after(11))  # epoch 2, step 3 of 8
    cut = training.train(settings, data_dir=data_dir, verify=False, device="cpu", progress=False,
                         log_dir=tmp_path / "logs", checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.undo()
    state = torch.load(cut.checkpoint, weights_only=True)
    assert cut.status == "interrupted" and state["partial"]["seconds"] > 0
    state["partial"]["seconds"] = 1000.0  # as if the first part had taken that long
    torch.save(state, cut.checkpoint)
    resumed = training.resume(cut.checkpoint, progress=False)
    assert resumed.status == "finished" and 1000 < resumed.history.seconds[1] < 1100
    # a checkpoint saved before the seconds were kept still resumes (its part counts 0 s)
    del state["partial"]["seconds"]
    old = tmp_path / "old.pt"
    torch.save({**state, "run_id": None}, old)
    assert training.resume(old, progress=False, log_dir=tmp_path / "old").status == "finished"


def test_an_unwritable_tensorboard_folder_fails_before_training(tiny_mnist, tmp_path: Path,
                                                                 capsys) -> None:
    if not runs.tensorboard_installed():
        pytest.skip("tensorboard is not installed: no events are written, nothing to check")
    data_dir, _ = tiny_mnist
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "tensorboard").write_text("a file where the folder should be")
    assert train_cli.main(flags(data_dir, tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-tensorboard" in err[0] and "tensorboard" in err[0], err
    # nothing claimed, nothing trained
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["tensorboard"]
    assert train_cli.main(flags(data_dir, tmp_path, "--no-tensorboard")) == 0


def test_a_disk_that_fills_up_stops_the_events_not_the_run(tiny_mnist, tmp_path: Path,
                                                           monkeypatch, capsys) -> None:
    if not runs.tensorboard_installed():
        pytest.skip("tensorboard is not installed: no events are written, nothing to check")
    from torch.utils.tensorboard import SummaryWriter

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    data_dir, _ = tiny_mnist
    assert train_cli.main(flags(data_dir, tmp_path)) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    (log,) = (tmp_path / "logs").glob("*.log")
    assert log.read_text().count("WARNING: TensorBoard events stopped") == 1
    assert "(No space left on device); the CSV and log go on" in log.read_text()
    assert len(next((tmp_path / "logs").glob("*.csv")).read_text().splitlines()) == 2


@pytest.fixture
def reported(tiny_mnist, tmp_path: Path) -> tuple[list[str], Path]:
    """A finished run and the report flags that would write it into ``tmp_path``'s README."""
    data_dir, _ = tiny_mnist
    result = training.train(recipes.RECIPES["fast"].replace(epochs=0.25, test_batch_size=128),
                             data_dir=data_dir, verify=False, device="cpu", progress=False,
                             log_dir=tmp_path / "logs", checkpoint_dir=tmp_path / "ckpt")
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- {b}:start -->\nold\n<!-- {b}:end -->\n"
                              for b in ("summary", "rf", "results")))
    args = ["--run", result.files.run_id, "--log-dir", str(tmp_path / "logs"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--data-dir", str(data_dir),
            "--no-verify", "--images", str(tmp_path / "images"), "--readme", str(readme)]
    return args, readme


def test_a_report_writes_all_its_files_or_none(reported, tmp_path: Path, capsys) -> None:
    args, readme = reported
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "per_class.png").write_bytes(b"the committed picture")
    # the record's place taken by a folder: found before any picture is drawn or moved
    (tmp_path / "docs" / "results.json").mkdir(parents=True)
    assert report_tool.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json" in err[0] and "nothing was written" in err[0], err
    assert (tmp_path / "images" / "per_class.png").read_bytes() == b"the committed picture"
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["per_class.png"]
    assert "old" in readme.read_text() and hidden(tmp_path) == []
    (tmp_path / "docs" / "results.json").rmdir()
    assert report_tool.main(args) == 0
    assert len(list((tmp_path / "images").glob("*.png"))) == 10 and "old" not in readme.read_text()
    assert hidden(tmp_path) == []  # the staging folder is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_report_into_a_read_only_readme_writes_nothing(reported, tmp_path: Path) -> None:
    args, readme = reported
    readme.chmod(0o444)
    assert report_tool.main(args) == 1
    assert not (tmp_path / "images").exists() and not (tmp_path / "docs").exists()


def test_a_report_into_a_missing_readme_is_a_usage_error(reported, tmp_path: Path,
                                                         capsys) -> None:
    args, readme = reported
    readme.unlink()
    assert report_tool.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m tools.report: error: --readme {readme}: no such file"]
    assert not (tmp_path / "images").exists() and not (tmp_path / "docs").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_make_train_installs_only_what_training_needs(tmp_path: Path) -> None:
    """`make train` reads requirements.txt alone; the test extras come with `make test`."""
    def planned(target: str) -> str:
        return subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout

    train, test = planned("train"), planned("test")
    assert "-r requirements.txt" in train and "requirements-dev.txt" not in train
    assert "-r requirements-dev.txt" in test and "pytest" in test
    for target in ("setup", "setup-dev", "data", "report", "notebook", "tune", "app", "bench"):
        planned(target)  # every documented target still parses


@pytest.mark.parametrize("command", [[str(ROOT / "train.py")], [str(ROOT / "predict.py"), "x.png"],
                                     ["-m", "tools.tune"]])
def test_ctrl_c_while_a_command_loads_is_one_line(command: list[str], tmp_path: Path) -> None:
    """Ctrl-C in the first moments (torch still loading): status 130, one line, no traceback."""
    proc = subprocess.Popen([sys.executable, *command], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)  # importing torch alone takes longer
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == -signal.SIGINT, output  # what a shell reports as 130
    assert output.strip().endswith(": error: interrupted (Ctrl-C)") and "Traceback" not in output
