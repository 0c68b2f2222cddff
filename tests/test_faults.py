"""Nothing lost, nothing misleading: train.py under faults and misuse, a test per class of fault."""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import DEVICES, ROOT, cli_run, interrupt_when_logged, stop_after, write_mnist
from PIL import Image

import utils
from model import Net
from s5 import checkpoint, runs, train_cli, training


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--no-progress", *args]


def run_cli(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 training images (4 steps of batch 64), 64 test images."""
    data_dir = tmp_path_factory.mktemp("small") / "data"
    write_mnist(data_dir, 256, 64)
    return data_dir


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- work is never lost or overwritten -----------------------------------------------------


def test_the_printed_resume_command_resumes_verbatim(small: Path, tmp_path: Path) -> None:
    """Interrupted with Ctrl-C, the run prints a command; run as printed (no other flags), it
    finishes the run on the same data into the same folders, with an uninterrupted run's numbers."""
    common = ("--data-dir", str(small), "--no-verify", "--log-dir", "out/logs",
              "--checkpoint-dir", "out/ckpt", "--batch-size", "64", "--test-batch-size", "64",
              "--epochs", "3", "--seed", "5")
    proc = interrupt_when_logged(train_cmd(*common), tmp_path, tmp_path / "out" / "logs",
                                 "Train: Loss=")
    output = proc.stdout
    assert proc.returncode == 130, output
    printed = output.split("Continue with: ", 1)[1].splitlines()[0]
    words = shlex.split(printed)
    assert words[:3] == ["python", "train.py", "--resume"] and len(words) == 4
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), *words[2:]], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (tmp_path / "ref").mkdir()
    reference = run_cli(tmp_path / "ref", *common)
    assert reference.returncode == 0, reference.stderr

    def rows(folder: Path) -> list[list[str]]:
        csvs = sorted(folder.glob("*.csv"))
        # without seconds
        return [line.split(",")[:-1] for line in csvs[-1].read_text().splitlines()]

    assert rows(tmp_path / "out" / "logs") == rows(tmp_path / "ref" / "out" / "logs")
    assert len(rows(tmp_path / "out" / "logs")) == 4  # header + 3 epochs


def test_runs_sharing_a_checkpoint_folder_never_share_a_file(small: Path, tmp_path: Path) -> None:
    # made in the same second
    ids = [runs.new_run(tmp_path / f"logs{i}", tmp_path / "ckpt").run_id for i in range(5)]
    assert len(set(ids)) == 5
    procs = [subprocess.Popen(train_cmd("--data-dir", str(small), "--no-verify", "--epochs", "1",
                                        "--log-dir", f"logs-{k}", "--checkpoint-dir", "shared",
                                        "--test-batch-size", "64"),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for k in range(2)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stdout.read()
    models = sorted((tmp_path / "shared").glob("*.pt"))
    assert len(models) == 2 and all(checkpoint.load_trained_net(m) for m in models)
    # claims released
    assert not [p for p in (tmp_path / "shared").iterdir() if p.name.startswith(".")]


def test_a_nan_at_an_epochs_last_step_saves_nothing(small: Path, tmp_path: Path, monkeypatch,
                                                    capsys) -> None:
    real = utils.smoothed_nll
    calls = []

    def nan_at_step_4(log_probs, target, smoothing=0.0):
        calls.append(1)
        loss = real(log_probs, target, smoothing)
        return loss * float("nan") if len(calls) == 4 else loss  # the last of epoch 1's 4 steps

    monkeypatch.setattr(utils, "smoothed_nll", nan_at_step_4)
    # the CPU recipe's 4 steps per epoch, and no GPU warm-up
    status, files = cli_run(["--data-dir", str(small), "--no-verify", "--no-progress",
                             "--epochs", "2", "--log-dir", str(tmp_path / "logs"),
                             "--checkpoint-dir", str(tmp_path / "ckpt"), "--device", "cpu"])
    assert status == 1
    assert "NaN/inf at epoch 1, batch 3" in files.log.read_text()
    # promises no checkpoint it lacks
    assert "no checkpoint of this run was saved" in capsys.readouterr().err
    # no epoch finished, nothing claims one did
    assert not files.checkpoint.exists() and not files.csv.exists()
    with pytest.raises(checkpoint.CheckpointError, match="NaN or infinite"):
        checkpoint.save_checkpoint(tmp_path / "nan.pt", model=Net().apply(
            lambda m: (torch.nn.init.constant_(m.weight, float("nan")) if hasattr(m, "weight")
                       else None)))
    assert not (tmp_path / "nan.pt").exists()


def test_a_checkpoint_with_nan_weights_is_refused_by_predict(tmp_path: Path) -> None:
    weights = Net().state_dict()
    weights["fc2.bias"][3] = float("nan")
    torch.save(weights, tmp_path / "nan.pt")
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--checkpoint", "nan.pt",
                           "x.png"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "NaN or infinite weights (fc2.bias)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_folders_are_checked_before_training(small: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    proc = run_cli(tmp_path, "--data-dir", str(small), "--no-verify", "--checkpoint-dir", "a-file")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("train.py: error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "a-file" in proc.stderr
    assert not list(tmp_path.glob("logs/*.csv"))  # nothing was trained


def test_a_full_disk_is_one_line_and_the_csv_never_claims_the_lost_epoch(
        small: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    real_open = open

    def disk_full_for_checkpoints(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".tmp") and ".pt." in str(file):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", disk_full_for_checkpoints)
    status = train_cli.main(["--data-dir", str(small), "--no-verify", "--no-progress",
                             "--epochs", "2", "--log-dir", str(tmp_path / "logs"),
                             "--checkpoint-dir", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "No space left on device" in err
    (log,) = (tmp_path / "logs").glob("*.log")
    assert "ERROR: could not write" in log.read_text()
    # epoch 1 was lost with its checkpoint: no row claims it
    assert not list((tmp_path / "logs").glob("*.csv"))


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_resume_restores_the_loss_scale(small: Path, tmp_path: Path, monkeypatch,
                                             device: str) -> None:
    # fp16 is emulated on a CPU: 128 training images (the rest held out), 4 steps of 32 an epoch
    args = ["--data-dir", str(small), "--no-verify", "--no-progress", "--amp", "fp16",
            "--epochs", "2", "--val", "128", "--batch-size", "32", "--test-batch-size", "64",
            "--device", device]
    status, full = cli_run([*args, "--log-dir", str(tmp_path / "a"),
                            "--checkpoint-dir", str(tmp_path / "a")])
    assert status == 0
    saved = checkpoint.load_checkpoint(full.checkpoint)["scaler"]
    assert saved and saved["scale"] > 0

    # in epoch 2, after 2 of its 4 steps
    monkeypatch.setattr(training, "stop_on_signals", stop_after(6))
    status, cut = cli_run([*args, "--log-dir", str(tmp_path / "b"),
                           "--checkpoint-dir", str(tmp_path / "b")])
    assert status == 130
    assert checkpoint.load_checkpoint(cut.checkpoint)["scaler"] is not None
    monkeypatch.undo()
    status, resumed = cli_run(["--no-progress", "--resume", str(cut.checkpoint)])
    assert status == 0

    def rows(path: Path) -> list[list[str]]:
        return [line.split(",")[:-1] for line in path.read_text().splitlines()]

    assert rows(resumed.csv) == rows(full.csv)


def test_resume_edge_cases(small: Path, tmp_path: Path) -> None:
    base = ("--data-dir", str(small), "--no-verify", "--epochs", "1", "--test-batch-size", "64")
    assert run_cli(tmp_path, *base).returncode == 0
    (finished,) = (tmp_path / "checkpoints").glob("*.pt")
    before = files_in(tmp_path / "logs")
    done = run_cli(tmp_path, "--resume", str(finished))
    assert (done.returncode == 0 and "Nothing to train" in done.stdout
            and "finished all 1 epochs" in done.stdout)
    assert files_in(tmp_path / "logs") == before  # no new run was started

    dry = run_cli(tmp_path, "--resume", str(finished), "--dry-run")
    assert dry.returncode == 2 and "--dry-run cannot be combined with --resume" in dry.stderr

    torch.save(Net().state_dict(), tmp_path / "weights.pt")
    plain = run_cli(tmp_path, "--resume", "weights.pt")
    assert (plain.returncode == 1 and "holds weights only" in plain.stderr
            and "predict.py" in plain.stderr)
    assert "Traceback" not in plain.stderr

    # a checkpoint of the format before v2 (settings under "args", with flags that no longer
    # exist): its weights still serve predict.py; resuming it is refused in one line
    state = checkpoint.load_checkpoint(finished)
    old = {**state, "format": "s5-mnist-checkpoint-v1",
           "args": {**state.pop("settings"), "ema": 0.0, "stroke": 0.0}}
    del old["augment"]
    torch.save(old, tmp_path / "v1.pt")
    assert checkpoint.load_trained_net(tmp_path / "v1.pt") is not None
    refused = run_cli(tmp_path, "--resume", "v1.pt")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "earlier version of train.py" in refused.stderr and "train again" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_flags_given_with_resume_are_named_when_ignored(small: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    monkeypatch.setattr(training, "stop_on_signals", stop_after(2))
    status, cut = cli_run(["--data-dir", str(small), "--no-verify", "--no-progress",
                           "--epochs", "1", "--log-dir", str(tmp_path / "logs"),
                           "--checkpoint-dir", str(tmp_path / "ckpt"),
                           "--device", "cpu"])  # the CPU recipe (lr 0.002)
    assert status == 130
    monkeypatch.undo()
    status, resumed = cli_run(["--no-progress", "--resume", str(cut.checkpoint), "--lr", "0.5"])
    assert status == 0
    warning = "WARNING: --lr 0.5 is ignored on --resume: the run continues with its own lr=0.002"
    assert warning in resumed.log.read_text()


def test_stale_temporary_files_are_removed_and_crashes_are_logged(small: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True)
    stale = ckpt / f".20200101-000000.pt.{int(ended.stdout)}.tmp"  # its process has ended
    fresh = ckpt / f".20261124-000000.pt.{os.getpid()}.tmp"  # its process (this one) writes it
    for tmp in (stale, fresh):
        tmp.write_bytes(b"half")

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash in evaluation")

    monkeypatch.setattr(utils, "test", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli_run(["--data-dir", str(small), "--no-verify", "--no-progress", "--epochs", "1",
                 "--log-dir", str(tmp_path / "logs"), "--checkpoint-dir", str(ckpt)])
    assert not stale.exists() and fresh.exists()  # only the one whose process is gone
    (log,) = (tmp_path / "logs").glob("*.log")
    text = log.read_text()
    assert ("ERROR: training crashed" in text and "Traceback" in text
            and "simulated crash in evaluation" in text)


# --- misuse: one clear line, before any work -----------------------------------------------


@pytest.mark.parametrize(("flags", "message"), [
    (("--epochs", "0"), "argument --epochs: must be > 0, got 0"),
    (("--epochs", "-1"), "argument --epochs: must be > 0"),
    (("--batch-size", "0"), "argument --batch-size: must be >= 1"),
    (("--test-batch-size", "0"), "argument --test-batch-size: must be >= 1"),
    (("--step-size", "0"), "argument --step-size: must be >= 1"),
    (("--lr", "nan"), "argument --lr: a finite number is needed"),
    (("--lr", "-0.1"), "argument --lr: must be > 0"),
    (("--weight-decay", "-1"), "argument --weight-decay: must be >= 0"),
    (("--label-smoothing", "2"), "argument --label-smoothing: must be < 1"),
    (("--crop-p", "5"), "argument --crop-p: must be <= 1"),
    (("--translate", "5"), "argument --translate: must be <= 0.5"),
    (("--scale-min", "0"), "argument --scale-min: must be >= 0.25"),
    (("--scale-min", "1.2", "--scale-max", "1.1"), "--scale-min 1.2 is above --scale-max 1.1"),
    (("--degrees", "nan"), "argument --degrees: a finite number is needed"),
    (("--seed", "12345678901234567890"), "argument --seed: must be <= "),
    (("--name", "a/b"), "argument --name: use 1-64 letters"),
    (("--name", "x" * 300), "argument --name: use 1-64 letters"),
    (("--name", "two\nlines"), "argument --name: use 1-64 letters"),
    (("--val", "-5"), "argument --val: must be >= 0"),
    # would plan a list of 10^9 epochs
    (("--epochs", "1e9"), "argument --epochs: must be <= 1000, got 1e9"),
    (("--epochs", "1e308"), "argument --epochs: must be <= 1000"),
    (("--batch-size", "1000000000"), "argument --batch-size: must be <= 60000"),
    (("--lr", "1e300"), "argument --lr: must be <= 10"),
])
def test_bad_flags_are_one_argparse_line_before_any_work(tmp_path: Path, flags: tuple[str, ...],
                                                         message: str, capsys) -> None:
    # in-process: the subprocess test below proves the real command line's exit
    with pytest.raises(SystemExit) as exit_:
        train_cli.main([*flags, "--log-dir", str(tmp_path / "logs")])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("train.py: error: ") and message in stderr
    assert not (tmp_path / "logs").exists()  # nothing was written


def test_a_bad_flag_on_the_real_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--epochs", "1e9", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert (proc.stderr.strip().splitlines()[-1]
            == "train.py: error: argument --epochs: must be <= 1000, got 1e9")
    assert "Traceback" not in proc.stderr and not (tmp_path / "logs").exists()


def test_data_dependent_and_device_misuse_is_one_line(small: Path, tmp_path: Path) -> None:
    val = run_cli(tmp_path, "--data-dir", str(small), "--no-verify", "--val", "1000")
    assert (val.returncode == 2 and "--val must be in [0, 256)" in val.stderr
            and "Traceback" not in val.stderr)
    if not torch.cuda.is_available():
        cuda = run_cli(tmp_path, "--device", "cuda")
        assert cuda.returncode == 2 and "torch sees no CUDA GPU" in cuda.stderr
    broken = tmp_path / "broken"
    write_mnist(broken, 64, 16)
    (broken / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00")
    bad = run_cli(tmp_path, "--data-dir", str(broken), "--no-verify")
    assert bad.returncode == 1 and "is truncated" in bad.stderr and "Traceback" not in bad.stderr


def test_no_verify_never_claims_verified_files_and_fp16_on_cpu_warns(small: Path,
                                                                     tmp_path: Path) -> None:
    status, files = cli_run(["--data-dir", str(small), "--no-verify", "--no-progress", "--dry-run",
                             "--log-dir", str(tmp_path / "logs"), "--amp", "fp16",
                             "--device", "cpu"])
    text = files.log.read_text()
    assert status == 0 and "verified" not in text and "md5 not checked" in text
    assert "WARNING: --amp fp16 on a CPU" in text


def test_a_256_image_run_with_onecycle_trains(small: Path, tmp_path: Path) -> None:
    status, files = cli_run(["--data-dir", str(small), "--no-verify", "--no-progress",
                             "--epochs", "2", "--log-dir", str(tmp_path / "logs"),
                             "--checkpoint-dir", str(tmp_path / "ckpt")])
    # 4 steps per epoch: OneCycle's edge case
    assert status == 0 and len(utils.load_history(files.csv)) == 2


# --- checkpoints given to predict.py or train.py -------------------------------------------


def test_marker_without_model_and_code_running_pickles_are_one_line(tmp_path: Path) -> None:
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "epoch": 3}, tmp_path / "empty.pt")
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--checkpoint", "empty.pt",
                           "x.png"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (proc.returncode == 1
            and "carries this package's checkpoint marker but no model weights" in proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "model": Evil()}, tmp_path / "evil.pt")
    for cmd in ([sys.executable, str(ROOT / "predict.py"), "--checkpoint", "evil.pt", "x.png"],
                train_cmd("--resume", "evil.pt")):
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "was refused" in proc.stderr, proc.stderr
        assert "weights_only=False" not in proc.stderr and "pwned" not in proc.stdout


def test_a_gpu_run_resumes_on_a_machine_without_one_only_when_told(small: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.setattr(training, "stop_on_signals", stop_after(2))
    status, cut = cli_run(["--data-dir", str(small), "--no-verify", "--no-progress",
                           "--epochs", "1", "--device", "cpu", "--log-dir", str(tmp_path / "logs"),
                           "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert status == 130
    monkeypatch.undo()
    state = checkpoint.load_checkpoint(cut.checkpoint)
    # what --device resolved to, so a resume continues there
    assert state["settings"]["device"] == "cpu"
    # a device this machine lacks
    state["settings"]["device"] = "cuda" if not torch.cuda.is_available() else "mps"
    gpu_run = tmp_path / "gpu-run.pt"
    torch.save(state, gpu_run)
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--no-progress", "--resume",
                           str(gpu_run)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert (f"gpu-run.pt was trained on {state['settings']['device']}, "
            "which this machine does not have") in proc.stderr
    assert "--device cpu" in proc.stderr
    status, resumed = cli_run(["--no-progress", "--resume", str(gpu_run), "--device", "cpu"])
    assert status == 0 and "Device: cpu" in resumed.log.read_text()


def test_a_fractional_epoch_budget_is_honest_in_schedule_csv_and_resume(
        small: Path, tmp_path: Path, monkeypatch) -> None:
    assert utils.epoch_batches(0.5, 938) == [469] and utils.epoch_batches(2.25, 8) == [8, 8, 2]
    # at least one batch
    assert utils.epoch_batches(1, 8) == [8] and utils.epoch_batches(0.01, 8) == [1]
    # 4 batches an epoch: 4 + 2 planned
    args = ["--data-dir", str(small), "--no-verify", "--no-progress", "--device", "cpu",
            "--epochs", "1.5", "--batch-size", "64", "--test-batch-size", "64"]
    status, full = cli_run([*args, "--log-dir", str(tmp_path / "a"),
                            "--checkpoint-dir", str(tmp_path / "a")])
    assert status == 0
    rows = [line.split(",") for line in full.csv.read_text().splitlines()]
    # the second row is half an epoch, and says so
    assert [r[0] for r in rows] == ["epoch", "1", "1.5"]
    assert "Epoch 2 (learning rate" in (log := full.log.read_text()) and "2 of its 4 batches" in log
    assert "after 1.5 epochs" in log
    state = checkpoint.load_checkpoint(full.checkpoint)
    # OneCycle ran out exactly
    assert state["scheduler"]["total_steps"] == 6 and state["scheduler"]["last_epoch"] == 6

    # asked once per step but an epoch's last: the 4th ask follows the half epoch's first batch
    monkeypatch.setattr(training, "stop_on_signals", stop_after(4))
    status, cut = cli_run([*args, "--log-dir", str(tmp_path / "b"),
                           "--checkpoint-dir", str(tmp_path / "b")])
    assert status == 130 and "Interrupted at epoch 2, batch 1/2" in cut.log.read_text()
    monkeypatch.undo()
    status, resumed = cli_run(["--no-progress", "--resume", str(cut.checkpoint)])
    assert status == 0
    # all columns but seconds
    strip = [line.rsplit(",", 1)[0] for line in full.csv.read_text().splitlines()]
    assert [line.rsplit(",", 1)[0] for line in resumed.csv.read_text().splitlines()] == strip
    status, again = cli_run(["--no-progress", "--resume", str(resumed.checkpoint)])
    assert status == 0 and again is None  # "Nothing to train": the 1.5 epochs are done




def zip_bomb_checkpoint(path: Path, unpacked_mb: int = 400) -> Path:
    """A real checkpoint whose first tensor's storage is swapped for ``unpacked_mb`` MB of zeros,
    deflated: a few hundred KB on disk that a plain ``torch.load`` would inflate in memory."""
    real = path.with_name("real.pt")
    checkpoint.save_checkpoint(real, model=Net())
    with (zipfile.ZipFile(real) as source,
          zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bomb):
        members = source.infolist()
        storage = next(m.filename for m in members if "/data/" in m.filename)
        for member in members:
            if member.filename != storage:
                bomb.writestr(member, source.read(member))
        with bomb.open(storage, "w", force_zip64=True) as out:
            for _ in range(unpacked_mb):
                out.write(bytes(2**20))
    return path


def test_a_zip_bomb_checkpoint_is_refused_unread_in_bounded_memory(tmp_path: Path) -> None:
    bomb = zip_bomb_checkpoint(tmp_path / "bomb.pt")
    assert bomb.stat().st_size < 5 * 2**20
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"would unpack to 40\d MB.*refused unread"):
        checkpoint.load_checkpoint(bomb)
    Image.new("L", (40, 40), 255).save(tmp_path / "x.png")
    code = ("import resource, subprocess, sys; "
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
            "print(p.stderr, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, sys.executable, str(ROOT / "predict.py"),
                           "--checkpoint", str(bomb), "x.png"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    status, peak_mb = map(int, proc.stdout.split())
    assert (status == 1 and "refused unread" in proc.stderr
            and len(proc.stderr.strip().splitlines()) == 1)
    assert peak_mb < 1024  # predict.py's own peak resident memory: the 400 MB were never inflated


@pytest.mark.parametrize(("tool", "flags", "message"), [
    ("bench", ("--steps", "0"), "argument --steps: must be >= 1, got 0"),
    ("bench", ("--steps", "-3"), "argument --steps: must be >= 1"),
    ("bench", ("--batch-size", "0"), "argument --batch-size: must be >= 1, got 0"),
    ("export", ("x.pt", "--threads", "-1"), "argument --threads: must be >= 1"),
    ("export", ("x.pt", "--bench-seconds", "nan"),
     "argument --bench-seconds: a finite number is needed"),
    ("app", ("--port", "-5"), "argument --port: must be >= 1"),
])
def test_numeric_flags_of_the_other_tools_are_checked_like_train_py(
        tool: str, flags: tuple[str, ...], message: str, capsys) -> None:
    module = __import__(f"tools.{tool}", fromlist=["main"])
    with pytest.raises(SystemExit) as exit_:
        module.main(list(flags))
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and message in stderr.strip().splitlines()[-1], stderr


def test_sigterm_saves_like_ctrl_c_and_dead_runs_leave_nothing_behind(small: Path,
                                                                      tmp_path: Path) -> None:
    """SIGTERM (what `timeout` and batch systems send) checkpoints and exits 143; the temporary
    file of a save a killed process never finished, and the claim of a run that died, are removed
    by the next run."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has ended: its leftovers are nobody's
    (ckpt / f".old.pt.{dead_pid}.tmp").write_bytes(b"half a checkpoint")
    (ckpt / ".20260101-000000.claim").write_text(str(dead_pid))
    # a live process's: kept
    (ckpt / f".alive.pt.{os.getpid()}.tmp").write_bytes(b"still being written")
    cmd = [*train_cmd("--data-dir", str(small), "--no-verify", "--epochs", "2",
                      "--batch-size", "16", "--log-dir", "logs", "--checkpoint-dir", "ckpt")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        logs = list((tmp_path / "logs").glob("*.log"))
        if logs and "Train: Loss=" in logs[0].read_text():
            break
        time.sleep(0.05)
    proc.terminate()  # SIGTERM
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, output
    assert "Interrupted (SIGTERM)" in output and "Continue with: python train.py --resume" in output
    assert len(list(ckpt.glob("*.pt"))) == 1
    assert (sorted(p.name for p in ckpt.iterdir() if p.name.startswith("."))
            == [f".alive.pt.{os.getpid()}.tmp"])


def test_resume_of_a_checkpoint_with_wrong_fields_is_one_line(small: Path, tmp_path: Path,
                                                              capsys) -> None:
    status, files = cli_run(["--data-dir", str(small), "--no-verify", "--no-progress",
                             "--epochs", "1", "--log-dir", str(tmp_path / "logs"),
                             "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert status == 0
    state = checkpoint.load_checkpoint(files.checkpoint)
    capsys.readouterr()
    for field, value in (("epoch", "one"), ("settings", [1, 2]), ("partial", 3)):
        torch.save({**state, field: value}, tmp_path / "edited.pt")
        assert train_cli.main(["--resume", str(tmp_path / "edited.pt")]) == 1
        err = capsys.readouterr().err
        assert (f"fields of the wrong kind or none ({field}" in err
                and len(err.strip().splitlines()) == 1), err
    # the real command line: a usage error, exit 2
    missing = run_cli(tmp_path, "--resume", "no-such.pt")
    assert (missing.returncode == 2
            and "--resume no-such.pt: no such checkpoint file" in missing.stderr)
