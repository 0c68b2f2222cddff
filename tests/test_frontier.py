"""Time to accuracy (s5/frontier.py, tools/frontier.py): the evaluation schedule, the same numbers
as a plain training run, the statistics, the report from its record, and the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from s5 import frontier, training
from s5.mnist import load_mnist
from s5.recipes import RECIPES


def test_the_schedule_is_every_twentieth_epoch_then_every_quarter() -> None:
    assert frontier.schedule(60_000, 2) == [3000 * k for k in range(1, 21)] + [
        75_000, 90_000, 105_000, 120_000]
    assert frontier.schedule(1000, 0.5) == [50 * k for k in range(1, 11)]
    assert frontier.schedule(512, 1.3) == [round(512 * k / 20) for k in range(1, 21)] + [640]


def test_the_probe_evaluates_at_the_first_step_past_each_count_and_at_epoch_ends(
        tiny_mnist) -> None:
    data_dir, _ = tiny_mnist  # 512 training images: batch 50 is 10 full batches and one of 12
    settings = RECIPES["fast"].replace(epochs=1.5, batch_size=50, seed=2)
    run = frontier.recipe_run(settings, device="cpu", data_dir=data_dir, verify=False)
    measured = frontier.measure(run)
    # the 0.05-epoch counts 26, 51, 77, ... are passed at the steps that end at 50, 100, 100, ...;
    # 1.5 epochs are 16 batches (round(16.5)): the second epoch's 5 pass 1.25 epochs (640) at 3
    assert measured["images"] == [50 * k for k in range(1, 11)] + [512, 512 + 150, 512 + 250]
    assert measured["epoch"] == [round(i / 512, 4) for i in measured["images"]]
    assert len(measured["accuracy"]) == len(measured["seconds"]) == len(measured["images"])
    assert measured["seconds"] == sorted(measured["seconds"]) and measured["eval_seconds"] > 0


@pytest.mark.parametrize("recipe", ["fast", "seed"])
def test_the_epoch_ends_match_a_plain_training_run(tiny_mnist, tmp_path: Path,
                                                   recipe: str) -> None:
    data_dir, _ = tiny_mnist
    settings = RECIPES[recipe].replace(epochs=2, batch_size=64, test_batch_size=64, seed=3)
    plain = training.train(settings, device="cpu", data_dir=data_dir, verify=False,
                           log_dir=tmp_path / "logs", checkpoint_dir=tmp_path / "checkpoints",
                           save_model=False, tensorboard=False, progress=False)
    run = frontier.recipe_run(settings, device="cpu", data_dir=data_dir, verify=False)
    measured = frontier.measure(run)
    ends = [measured["accuracy"][measured["images"].index(512 * k)] for k in (1, 2)]
    assert ends == plain.history.eval_acc
    for column in ("train_loss", "train_acc", "eval_loss", "eval_correct", "lr"):
        assert getattr(run.history, column) == getattr(plain.history, column), column


def test_a_peer_trains_the_seed_net_with_its_own_parts(tiny_mnist) -> None:
    data_dir, _ = tiny_mnist
    data = load_mnist(data_dir, "cpu", md5s=None, log=lambda message: None)
    run = frontier.peer_run(frontier.PEERS["examples"], data, seed=1,
                            device=torch.device("cpu"), amp_dtype=None, max_epochs=2)
    assert isinstance(run.optimizer, torch.optim.Adadelta) and run.plan == [8, 8]
    measured = frontier.measure(run)
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.7 ** 2)  # StepLR per epoch
    assert measured["images"][-1] == 1024 and run.train_loader.shuffle
    one = frontier.peer_run(frontier.PEERS["onesecond"], data, seed=1,
                            device=torch.device("cpu"), amp_dtype=None)
    assert not one.train_loader.shuffle and one.plan == [2]  # batch 256: one epoch, file order
    assert one.schedule.scheduler.total_steps == 2


def hand_made_runs() -> list[dict]:
    return [{"seed": 1, "epoch": [0.5, 1.0, 1.5], "seconds": [1.0, 2.0, 3.0],
             "accuracy": [98.0, 99.1, 99.6], "eval_seconds": 0.5},
            {"seed": 2, "epoch": [0.5, 1.0, 1.5], "seconds": [2.0, 4.0, 6.0],
             "accuracy": [98.5, 98.9, 99.2], "eval_seconds": 1.5}]


def test_the_statistics_over_seeds() -> None:
    summary = frontier.summarize(hand_made_runs())
    t99, t995, t997 = summary["targets"]
    assert (t99["reached"], t99["mean_s"]) == (1.0, 4.0)  # 2 s and 6 s
    assert t99["std_s"] == pytest.approx(math.sqrt(8))
    assert (t995["reached"], t995["mean_s"], t995["std_s"]) == (0.5, 3.0, None)
    assert (t997["reached"], t997["mean_s"], t997["std_s"]) == (0.0, None, None)
    assert summary["final"] == pytest.approx(99.4)
    # t(0.975, 1 df) = 12.706; the standard deviation of 99.6 and 99.2 is 0.2 * sqrt(2)
    assert summary["final_ci95"] == pytest.approx(12.706 * 0.2 * math.sqrt(2) / math.sqrt(2))
    assert (summary["train_s"], summary["eval_s"], summary["epochs"]) == (4.5, 1.0, 1.5)
    assert frontier.summarize(hand_made_runs()[:1])["final_ci95"] is None
    assert frontier.t_quantile(9) == 2.262 and frontier.t_quantile(200) == 1.960
    assert frontier.mean_curve(hand_made_runs()) == ([1.5, 3.0, 4.5], [98.25, 99.0, 99.4])


def test_the_report_and_picture_render_from_the_record_alone(tmp_path: Path) -> None:
    from tools.frontier import plot

    runs = hand_made_runs()
    record = json.loads(json.dumps({
        "started": "2026-12-08 01:00:00", "command": "python -m tools.frontier", "machine": "CPU",
        "device": "cpu", "torch": "2", "precision": "bfloat16", "targets": [99.0, 99.5, 99.7],
        "fine_step": 0.05, "step": 0.25, "test_images": 10_000, "max_epochs": None,
        "load": [0.5, 1.25],
        "picture": "frontier.png",
        "entries": {"fast": {"kind": "recipe", "description": "the fast recipe", "runs": runs,
                             "summary": frontier.summarize(runs)}}}))
    report = frontier.format_report(record)
    assert "| recipe `fast` | 2 | 1.5 | 99.40% ± 2.54 | 4.00 ± 2.83 s (2/2) | 3.00 s (1/2) | " \
           "— (0/2) | 4.50 | 1.00 |" in report
    assert "load average (1 min) before / after: 0.50 / 1.25" in report
    assert "![test accuracy against training seconds](frontier.png)" in report
    plot(record, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes().startswith(b"\x89PNG")


def frontier_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.frontier", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_the_command_writes_the_record_report_and_picture(cli_mnist: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = frontier_command("--recipes", "fast", "--peers", "onesecond", "examples", "--seeds", "2",
                            "--max-epochs", "0.2", "--data-dir", str(cli_mnist), "--no-verify",
                            "--log-dir", str(logs), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    record_path, = logs.glob("frontier-*.json")
    record = json.loads(record_path.read_text())
    assert list(record["entries"]) == ["fast", "onesecond", "examples"]
    assert all(len(entry["runs"]) == 2 for entry in record["entries"].values())
    assert record["precision"] in ("bfloat16", "fp32") and record["max_epochs"] == 0.2
    assert record_path.with_suffix(".md").read_text() == frontier.format_report(record)
    assert record_path.with_suffix(".png").is_file()
    assert "| peer `examples` | 2 |" in proc.stdout


def test_an_unwritable_log_folder_is_one_line_before_any_training(cli_mnist: Path,
                                                                   tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    proc = frontier_command("--recipes", "fast", "--peers", "--data-dir", str(cli_mnist),
                            "--no-verify", "--log-dir", str(blocked))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("python -m tools.frontier: error: cannot write ")
    assert len(proc.stderr.splitlines()) == 1
