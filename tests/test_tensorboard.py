"""TensorBoard events of a run, read back: its CSV's numbers, and none where none were asked for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import cli_run, stop_after

import utils
from s5 import recipes, runs, training

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")


def tiny_run(data_dir: Path, tmp_path: Path, *flags: str) -> list[str]:
    """train.py's flags for a CPU run on the tiny data, files under ``tmp_path``."""
    return ["--data-dir", str(data_dir), "--no-verify", "--no-progress", "--device", "cpu",
            "--batch-size", "64", "--test-batch-size", "128", "--log-dir", str(tmp_path / "logs"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), *flags]


def test_events_hold_the_csv_numbers_and_a_resumed_run_adds_to_them(tiny_mnist, tmp_path: Path,
                                                                    monkeypatch) -> None:
    data_dir, _ = tiny_mnist
    # 384 training images (128 held out for --val): 6 steps an epoch; stopping after 8 is in epoch 2
    monkeypatch.setattr(training, "stop_on_signals", stop_after(8))
    status, cut = cli_run(tiny_run(data_dir, tmp_path, "--epochs", "2", "--val", "128"))
    assert status == 130
    monkeypatch.undo()
    status, files = cli_run(["--no-progress", "--resume", str(cut.checkpoint)])
    assert status == 0 and files.tensorboard == tmp_path / "logs" / "tensorboard" / files.run_id

    events = event_accumulator.EventAccumulator(str(files.tensorboard))
    events.Reload()
    history = utils.load_history(files.csv)
    assert len(history) == 2 and history.split == "val"
    for column, name in zip(utils.COLUMNS, utils.csv_header("val"), strict=True):
        if column in ("eval_correct", "eval_total"):
            continue
        tag = name.replace("_", "/", 1)  # train/loss, val/acc, lr, seconds, epoch
        logged = events.Scalars(tag)
        # one point per epoch, two processes, one folder
        assert [e.step for e in logged] == [6, 12], tag
        # the CSV's 6 decimals (seconds: 2), against float32 events
        tolerance = 0.006 if column == "seconds" else 1e-6
        assert [e.value for e in logged] == pytest.approx(getattr(history, column), rel=1e-5,
                                                          abs=tolerance), tag
    assert events.Scalars("hparam/val_acc")[0].value == pytest.approx(history.eval_acc[-1])
    assert set(events.Tags()["images"]) == {"figures/metrics", "figures/confusion"}
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["recipe"].string_value == "default" and hparams["val"].number_value == 128
    assert set(hparams) == set(recipes.TRAINING_KEYS)  # the training settings, not the places
    assert "tensorboard" in training.Places().recorded()  # a place, kept on resume unless given
    assert "tensorboard" not in recipes.TRAINING_KEYS


def test_no_events_when_turned_off_in_a_dry_run_or_without_tensorboard(tiny_mnist, tmp_path: Path,
                                                                       monkeypatch) -> None:
    data_dir, _ = tiny_mnist
    board = tmp_path / "logs" / "tensorboard"
    # --no-tensorboard holds for the resumed run too (it is one of the run's places, like --log-dir)
    monkeypatch.setattr(training, "stop_on_signals", stop_after(1))
    status, cut = cli_run(tiny_run(data_dir, tmp_path, "--epochs", "0.25", "--no-tensorboard"))
    assert status == 130
    monkeypatch.undo()
    status, files = cli_run(["--no-progress", "--resume", str(cut.checkpoint)])
    assert status == 0 and runs.read_run_info(files.info)["settings"]["tensorboard"] is False
    assert cli_run(tiny_run(data_dir, tmp_path, "--dry-run"))[0] == 0
    assert not board.exists()

    # as where tensorboard is not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert not runs.tensorboard_installed()
    status, quiet = cli_run(tiny_run(data_dir, tmp_path, "--epochs", "0.25"))
    # on by default: absent without a word
    assert status == 0 and "WARNING" not in quiet.log.read_text()
    status, asked = cli_run(tiny_run(data_dir, tmp_path, "--epochs", "0.25", "--tensorboard"))
    assert status == 0 and not board.exists()
    warnings = [line for line in asked.log.read_text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "tensorboard package is not installed" in warnings[0]
