"""train.py run as a user runs it: a subprocess, on tiny MNIST-format data written by the tests."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import DEVICES, ROOT, cli_run, interrupt_when_logged, synthetic_digits, write_mnist

import utils
from s5 import benchmarks, checkpoint, mnist, report, runs
from s5.files import replace_block


def run_train(tmp: Path, data_dir: Path, *args: str,
              check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--no-verify",
           "--no-progress", "--log-dir", str(tmp / "logs"), "--checkpoint-dir", str(tmp / "ckpt"),
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def csv_rows(path: Path, drop: tuple[str, ...] = ("seconds",)) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


SMALL = ("--batch-size", "64", "--test-batch-size", "128", "--epochs", "3", "--seed", "3")


@pytest.fixture(scope="module")
def reference_runs(cli_mnist: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The CSV of an uninterrupted 3-epoch run on a device, trained once per device on first use."""
    made: dict[str, Path] = {}

    def reference(device: str) -> Path:
        if device not in made:
            tmp = tmp_path_factory.mktemp(f"reference-{device}")
            run_train(tmp, cli_mnist, *SMALL, "--device", device)
            made[device] = only(tmp / "logs", "*.csv")
        return made[device]

    return reference


@pytest.fixture(scope="module")
def reference_run(reference_runs: Callable[[str], Path]) -> Path:
    """The CSV of an uninterrupted 3-epoch run on the CPU."""
    return reference_runs("cpu")


def test_dry_run_writes_log_and_csv_but_no_checkpoint(cli_mnist: Path, tmp_path: Path) -> None:
    proc = run_train(tmp_path, cli_mnist, "--dry-run")
    log = only(tmp_path / "logs", "*-dry-run.log").read_text()
    assert "INFO:utils:Test set: Average loss:" in log and "Train: Loss=" in log
    assert "Final test accuracy" in proc.stdout
    rows = csv_rows(only(tmp_path / "logs", "*.csv"))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert runs.read_run_info(only(tmp_path / "logs", "*.json"))["kind"] == "dry-run"
    # nothing predict.py could mistake for a trained model
    assert not list((tmp_path / "ckpt").iterdir())


def test_font_digits_join_training_or_the_run_says_how_to_build_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_mnist(data_dir, 256, 64)
    proc = run_train(tmp_path, data_dir, "--dry-run", "--font-digits", "0.2", check=False)
    assert (proc.returncode != 0 and "make font-digits" in proc.stderr
            and "Traceback" not in proc.stderr)
    images, labels = synthetic_digits(40, seed=9)
    mnist.write_idx(mnist.font_digits_dir(data_dir) / "images-idx3-ubyte", images)
    mnist.write_idx(mnist.font_digits_dir(data_dir) / "labels-idx1-ubyte", labels)
    proc = run_train(tmp_path, data_dir, "--dry-run", "--font-digits", "0.2")
    assert "Font digits: 40 from" in proc.stdout and "20% of the training images" in proc.stdout
    assert runs.read_run_info(
        sorted((tmp_path / "logs").glob("*.json"))[-1])["settings"]["font_digits"] == 0.2


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_numbers(cli_mnist: Path, tmp_path: Path,
                                reference_runs: Callable[[str], Path], device: str) -> None:
    run_train(tmp_path, cli_mnist, *SMALL, "--device", device)
    rows = csv_rows(only(tmp_path / "logs", "*.csv"))
    assert len(rows) == 3
    assert rows == csv_rows(reference_runs(device))

    dry = {seed: cli_run(["--data-dir", str(cli_mnist), "--no-verify", "--no-progress",
                          "--dry-run", "--seed", seed, "--device", device,
                          "--log-dir", str(tmp_path / seed)])[1]
           for seed in ("3", "4")}
    # another seed, other numbers (dry runs keep it cheap)
    assert csv_rows(dry["3"].csv) != csv_rows(dry["4"].csv)


def test_checkpoint_reproduces_the_logged_accuracy(cli_mnist: Path, tmp_path: Path,
                                                   reference_run: Path) -> None:
    ckpt = only(reference_run.parent.parent / "ckpt", "*.pt")
    net = checkpoint.load_trained_net(ckpt)
    data = mnist.load_mnist(cli_mnist, md5s=None, fetch=False)
    result = utils.test(net, utils.DeviceLoader(data.test_images, data.test_labels, 1000))
    last = utils.load_history(reference_run)
    assert result.correct == last.eval_correct[-1]
    assert f"{result.loss:.6f}" == f"{last.eval_loss[-1]:.6f}"


@pytest.mark.parametrize("device", DEVICES)
def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(
    cli_mnist: Path, tmp_path: Path, reference_runs: Callable[[str], Path], device: str
) -> None:
    cmd = [sys.executable, str(ROOT / "train.py"), "--data-dir", str(cli_mnist), "--no-verify",
           "--no-progress", "--log-dir", str(tmp_path / "logs"),
           "--checkpoint-dir", str(tmp_path / "ckpt"), *SMALL, "--device", device]
    proc = interrupt_when_logged(cmd, tmp_path, tmp_path / "logs", "Epoch 2")
    output = proc.stdout
    assert proc.returncode == 130, output
    assert "Interrupted at epoch" in output and "--resume" in output
    ckpt = only(tmp_path / "ckpt", "*.pt")
    state = checkpoint.load_checkpoint(ckpt)
    assert state["partial"] is not None or state["epoch"] >= 2
    first_log = only(tmp_path / "logs", "*.log")
    first_lines = first_log.read_text().splitlines()

    run_train(tmp_path, cli_mnist, "--resume", str(ckpt))
    # the same run goes on: one id, one log (its first part kept, the resume noted in it),
    # one CSV, one checkpoint
    assert only(tmp_path / "logs", "*.log") == first_log and only(tmp_path / "ckpt", "*.pt") == ckpt
    log = first_log.read_text().splitlines()
    assert log[: len(first_lines)] == first_lines
    assert any(f"Run {ckpt.stem} continues: python train.py" in line and "--resume" in line
               for line in log)
    assert any("Resumed from" in line for line in log)
    info = runs.read_run_info(only(tmp_path / "logs", "*.json"))
    assert (info["command"].startswith("python train.py --data-dir")
            and len(info["resumed_with"]) == 1)
    assert csv_rows(only(tmp_path / "logs", "*.csv")) == csv_rows(reference_runs(device))


def test_resume_refuses_a_foreign_checkpoint(cli_mnist: Path, tmp_path: Path) -> None:
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "model": {"w": torch.zeros(2)}, "args": {},
                "optimizer": None, "scheduler": None, "epoch": 0, "partial": None, "history": {}},
               tmp_path / "foreign.pt")
    proc = run_train(tmp_path, cli_mnist, "--resume", str(tmp_path / "foreign.pt"), check=False)
    assert proc.returncode != 0
    assert "foreign.pt was made for a different architecture than Net" in proc.stderr


def test_report_regenerates_readme_blocks_and_images_from_a_run(
    cli_mnist: Path, tmp_path: Path, reference_run: Path
) -> None:
    readme = tmp_path / "README.md"
    blocks = "".join(f"<!-- {b}:start -->\nold\n<!-- {b}:end -->\n"
                     for b in ("summary", "rf", "results"))
    readme.write_text("# Title\n" + blocks + "tail\n")
    run_dir = reference_run.parent.parent
    cmd = [sys.executable, "-m", "tools.report", "--log-dir", str(run_dir / "logs"),
           "--checkpoint-dir", str(run_dir / "ckpt"), "--data-dir", str(cli_mnist), "--no-verify",
           "--images", str(tmp_path / "images"), "--readme", str(readme)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = readme.read_text()
    assert "old" not in text and text.startswith("# Title\n") and text.endswith("tail\n")
    last = utils.load_history(reference_run)
    assert f"**Final test accuracy: {last.eval_acc[-1]:.2f}%**" in text
    # the block is drawn from its record, docs/results.json beside the README: the run's figures
    record = json.loads((tmp_path / "docs" / "results.json").read_text())
    assert record["run_id"] == reference_run.stem and record["epochs"] == last.rows()
    assert record["rescored"]["correct"] == last.eval_correct[-1]
    assert replace_block(text, "results", report.results_section(record)) == text
    assert report.reported_run(readme) == reference_run.stem
    assert ("Total params: 593,200" in text
            and "conv4 | 10 | 10 | 2 | 1 | 0 | 3 | 14 | 8 | 2" in text)
    assert "images/per_class.png" in text and "images/saliency.png" in text
    # 7 results + conv1 filters, feature maps, saliency
    assert len(list((tmp_path / "images").glob("*.png"))) == 10


def test_report_picks_finished_runs_and_never_replaces_the_readme_results_unasked(
    cli_mnist: Path, tmp_path: Path, reference_run: Path
) -> None:
    # copies: the shared reference run stays as it is
    logs, ckpts = tmp_path / "logs", tmp_path / "ckpt"
    shutil.copytree(reference_run.parent, logs)
    shutil.copytree(reference_run.parent.parent / "ckpt", ckpts)
    run_id = reference_run.stem
    unfinished = logs / "20991231-235959.json"  # newer, but its CSV stops before its planned epochs
    info = runs.read_run_info(logs / f"{run_id}.json")
    unfinished.write_text(json.dumps({**info, "run_id": unfinished.stem,
                                      "settings": {**info["settings"], "epochs": 40}}))
    shutil.copy(reference_run, logs / f"{unfinished.stem}.csv")
    shutil.copy(only(ckpts, "*.pt"), ckpts / f"{unfinished.stem}.pt")
    readme = tmp_path / "README.md"  # its results come from another run, as its record says
    committed = ("<!-- results:start -->\nRun `20200101-000000` (`python train.py`), ...\n"
                 "<!-- results:end -->\n")
    readme.write_text(committed)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.json").write_text(json.dumps({"run_id": "20200101-000000"}))
    base = [sys.executable, "-m", "tools.report", "--log-dir", str(logs),
            "--checkpoint-dir", str(ckpts), "--data-dir", str(cli_mnist), "--no-verify",
            "--images", str(tmp_path / "images"), "--readme", str(readme)]
    refused = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (refused.returncode == 1
            and f"run {run_id}: the newest finished training run" in refused.stdout)
    assert "reports run 20200101-000000" in refused.stderr and "--replace" in refused.stderr
    assert readme.read_text() == committed and not (tmp_path / "images").exists()
    climbing = subprocess.run([*base, "--run", "../../etc/passwd"], capture_output=True, text=True,
                              timeout=300)
    assert climbing.returncode == 2 and climbing.stderr.splitlines() == [
        "python -m tools.report: error: --run takes a run id such as 20261204-220208, got "
        "'../../etc/passwd'"]
    missing = subprocess.run([*base, "--run", "20000101-000000"], capture_output=True, text=True,
                             timeout=300)
    assert (missing.returncode == 2
            and missing.stderr.splitlines()[-1].startswith(
                "python -m tools.report: error: no run 20000101-000000")
            and "Traceback" not in missing.stderr)
    # a run whose checkpoint is not one: one line, no traceback
    foreign = logs / "20991230-000000.csv"
    shutil.copy(reference_run, foreign)
    (ckpts / f"{foreign.stem}.pt").write_bytes(b"not a checkpoint")
    bad = subprocess.run([*base, "--run", foreign.stem, "--replace"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 1 and "not a readable checkpoint" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("device", DEVICES)
def test_bench_quick_runs_and_writes_a_report(cli_mnist: Path, tmp_path: Path, device: str) -> None:
    cmd = [sys.executable, "-m", "tools.bench", "--quick", "--data-dir", str(cli_mnist),
           "--no-verify", "--log-dir", str(tmp_path / "logs"),
           "--readme", str(tmp_path / "none.md"), "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gpu = device == "cuda"
    found = only(tmp_path / "logs", f"bench-*-quick{'-cuda' if gpu else ''}.json")
    record = json.loads(found.read_text())  # the figures first; the report is drawn from them
    report = found.with_suffix(".md").read_text()
    assert report == benchmarks.format_report(record)
    assert (record["benchmark"] == "quick" and record["device"] == device
            and record["picture"] is None)
    for row in ("| seed-style pipeline |", "| bare fwd+bwd step |", "| our training step |",
                "| ours ÷ bare step |", "| ours ÷ seed-style |", "Median over 1 seed: final",
                "GPU memory allocated MB" if gpu else "process peak RSS MB"):
        assert row in report, row
    assert (("| ours + torch.compile |" in report) == gpu
            and ("torch.compile's one-time" in report) == gpu)
    recipe = "gpu" if gpu else "default"  # the device's own recipe first
    assert f"(recipe `{recipe}`)" in report
    (run,) = record["recipes"][recipe]["runs"]  # accuracy from a logged run, as its CSV has it
    assert run["accuracy"] == utils.load_history(
        tmp_path / "logs" / f"{run['run_id']}.csv").eval_acc
    assert run["run_id"].endswith(f"bench-{recipe}-seed1")
    # inference on the CPU, as users meet it: onnxruntime vs PyTorch, the page's latency,
    # predict.py on folders
    for row in ("| PyTorch img/s, batch 1000 |", "| onnxruntime img/s, batch 1 |",
                "| page: the server's share of a stroke, ms (median) |",
                "| page: stroke-to-prediction in Chromium",
                "| predict.py folder img/s, small images (28-64 px PNG) |",
                "| predict.py folder img/s, 500 px photos"):
        assert row in report, row


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(cli_mnist: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:

    calls = []
    real = utils.smoothed_nll

    def nan_in_epoch_two(log_probs, target, smoothing=0.0):
        calls.append(1)
        loss = real(log_probs, target, smoothing)
        return loss * float("nan") if len(calls) == 16 + 5 else loss  # epoch 1 has 16 batches

    monkeypatch.setattr(utils, "smoothed_nll", nan_in_epoch_two)
    status, files = cli_run(["--data-dir", str(cli_mnist), "--no-verify", "--no-progress",
                             "--batch-size", "64", "--epochs", "3",
                             "--log-dir", str(tmp_path / "logs"),
                             "--checkpoint-dir", str(tmp_path / "ckpt"),
                             "--device", "cpu"])  # no GPU warm-up
    assert status == 1
    log = files.log.read_text()
    assert "the training loss became NaN/inf at epoch 2, batch 4" in log
    assert f"The last good checkpoint is {files.checkpoint}" in log
    state = checkpoint.load_checkpoint(files.checkpoint)
    assert state["epoch"] == 1  # written after epoch 1, not overwritten by the diverged epoch
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert len(utils.load_history(files.csv)) == 1


def test_bench_draws_accuracy_against_seconds_from_logged_histories(tmp_path: Path) -> None:
    from tools import bench

    def history(accuracies: list[float], seconds: list[float]) -> utils.History:
        h = utils.History()
        for epoch, (acc, sec) in enumerate(zip(accuracies, seconds, strict=True), start=1):
            result = utils.EvalResult(0.1, int(acc * 100), 10000, torch.zeros(0, 10),
                                      torch.zeros(0))
            h.append(epoch, utils.EpochTotals(batches=1, seen=1), result, sec)
        return h

    runs = {"default": [bench.run_record("r1", history([98.9, 99.4, 99.6], [50, 50, 50]), 1.0)],
            "fast": [bench.run_record("r2", history([99.1], [27]), 1.0)]}
    fig = bench.plot_accuracy_vs_seconds(runs, 120.0, title="t", save=tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    lines = fig.axes[0].get_lines()
    # cumulative training seconds
    assert [list(line.get_xdata()) for line in lines[:2]] == [[50, 100, 150], [27]]
    assert benchmarks.time_to(runs["default"][0], 99.5) == 150
    assert benchmarks.time_to(runs["fast"][0], 99.5) is None


def test_a_benchmark_run_that_does_not_finish_is_one_line_and_writes_no_record(
        cli_mnist: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from types import SimpleNamespace

    from s5 import training
    from tools import bench

    monkeypatch.setattr(bench, "measure_throughput", lambda *args: (
        {"seed-style pipeline": 1.0, "bare fwd+bwd step": 1.0, "our training step": 1.0}, None))
    log = tmp_path / "logs" / "r.log"
    monkeypatch.setattr(training, "train", lambda settings, **places: SimpleNamespace(
        status="diverged", exit_status=1, files=SimpleNamespace(run_id="r", log=log)),
        raising=False)
    status = bench.main(["--data-dir", str(cli_mnist), "--no-verify", "--recipes", "fast",
                         "--seeds", "1", "--log-dir", str(tmp_path / "logs"),
                         "--readme", str(tmp_path / "none.md"), "--no-inference",
                         "--device", "cpu"])
    assert status == 1 and capsys.readouterr().err.splitlines() == [
        "python -m tools.bench: error: the fast run with seed 1 diverged (exit status 1); "
        f"its log: {log}"]
    assert not list(tmp_path.rglob("bench-*"))
