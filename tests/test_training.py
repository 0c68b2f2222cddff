"""Train/test loops, History and its CSV, run files, checkpoints."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES, stop_after, synthetic_digits

import utils
from model import Net
from s5 import checkpoint, recipes, runs, train_cli, training


def tiny_loader(n: int = 64, batch_size: int = 16, device: str = "cpu",
                **kwargs) -> utils.DeviceLoader:
    images, labels = synthetic_digits(n, seed=9)
    return utils.DeviceLoader(torch.from_numpy(images).to(device),
                              torch.from_numpy(labels).long().to(device), batch_size, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_test_loss_is_the_mean_per_sample_nll(device) -> None:
    torch.manual_seed(0)
    model, loader = Net().to(device), tiny_loader(50, batch_size=16, device=device)
    result = utils.test(model, loader)
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])
    with torch.no_grad():
        expected = F.nll_loss(model(x), y).item()  # mean over all 50 samples
    # CUDA: other batch shapes, other kernels
    assert result.loss == pytest.approx(expected, rel=1e-5 if device == "cpu" else 1e-3)
    assert result.total == 50 and 0 <= result.correct <= 50
    assert result.log_probs.shape == (50, 10)


@pytest.mark.parametrize("device", DEVICES)
def test_train_learns_and_reports_like_the_seed(device) -> None:
    torch.manual_seed(0)
    model, loader = Net().to(device), tiny_loader(256, batch_size=32, device=device, shuffle=True,
                                                  augment=utils.Augment())
    optimizer = training.make_optimizer(model, "sgd", lr=0.05)
    lines: list[str] = []
    first = utils.train(model, loader, optimizer, epoch=1, log=lines.append, progress=False)
    for epoch in range(2, 5):
        last = utils.train(model, loader, optimizer, epoch=epoch, progress=False)
    assert first.batches == 8 and first.seen == 256
    assert last.loss < first.loss
    assert lines and all(line.startswith("Train: Loss=") and "Batch_id=" in line
                         and "Accuracy=" in line for line in lines)
    assert "Batch_id=7 " in lines[-1]


@pytest.mark.parametrize("device", DEVICES)
def test_train_stops_after_the_current_step_when_asked(device) -> None:
    model, loader = Net().to(device), tiny_loader(64, batch_size=16, device=device, shuffle=True)
    optimizer = training.make_optimizer(model, "sgd", lr=0.01)
    calls = []
    totals = utils.train(model, loader, optimizer, epoch=1,
                         should_stop=lambda: calls.append(1) or len(calls) >= 2, progress=False)
    assert totals.batches == 2 and totals.seen == 32
    rest = utils.train(model, loader, optimizer, epoch=1, totals=totals, progress=False)
    assert rest.batches == 4 and rest.seen == 64


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_loss_names_epoch_and_batch(device) -> None:
    model, loader = Net().to(device), tiny_loader(64, batch_size=16, device=device)
    optimizer = training.make_optimizer(model, "sgd", lr=1e30)  # diverges at once
    with pytest.raises(utils.NonFiniteLossError, match=r"epoch 3, batch \d") as info:
        utils.train(model, loader, optimizer, epoch=3, progress=False)
    assert info.value.epoch == 3


def test_schedulers() -> None:
    model = Net()
    optimizer = training.make_optimizer(model, "sgd", lr=0.01)
    step = utils.make_schedule("step", optimizer, epochs=5, steps_per_epoch=10, step_size=2,
                               gamma=0.1)
    assert not step.per_batch
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step.after_batch()  # StepLR ignores batches ...
        step.after_epoch()  # ... and steps once per epoch
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])  # the seed's log
    optimizer = training.make_optimizer(model, "sgd", lr=0.1)
    onecycle = utils.make_schedule("onecycle", optimizer, epochs=2, steps_per_epoch=10)
    assert onecycle.per_batch
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        onecycle.after_batch()
        onecycle.after_epoch()  # no-op for a per-batch schedule
    assert max(seen) == pytest.approx(0.1) and seen[0] < 0.01 and seen[-1] < 0.001
    with pytest.raises(ValueError, match="unknown scheduler"):
        utils.make_schedule("cosine", optimizer, epochs=1, steps_per_epoch=1)


def test_pct_start_sets_where_the_one_cycle_peaks() -> None:
    """``pct_start``: the fraction of the OneCycle steps spent rising to the peak learning rate."""

    def peak_step(warmup: float) -> int:
        optimizer = training.make_optimizer(Net(), "adamw", lr=0.01)
        schedule = utils.make_schedule("onecycle", optimizer, epochs=1, steps_per_epoch=40,
                                       pct_start=warmup)
        lrs = []
        for _ in range(40):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_batch()
        return max(range(40), key=lrs.__getitem__)

    assert peak_step(0.1) < peak_step(0.25) < peak_step(0.5)
    assert abs(peak_step(0.5) - 20) <= 1


def test_each_recipe_trains_with_the_optimizer_it_was_tuned_with() -> None:
    """Each recipe keeps the optimizer it was tuned with, whatever the default optimizer is."""

    def optimizer(*argv: str) -> tuple[str, float]:
        settings = train_cli.parse(["--device", "cpu", *argv]).settings
        return settings.optimizer, settings.momentum

    assert optimizer("--recipe", "default") == ("muon", 0.95)
    assert optimizer("--recipe", "fast") == ("muon", 0.9)  # its study: docs/studies/fast.md
    for recipe in ("handwriting", "gpu", "gpu-fast"):
        assert optimizer("--recipe", recipe) == ("adamw", 0.9), recipe
    assert optimizer("--recipe", "seed") == ("sgd", 0.9)  # the seed's momentum, not Muon's
    assert optimizer("--recipe", "default", "--optimizer", "adamw",
                     "--momentum", "0.9") == ("adamw", 0.9)


def make_history() -> utils.History:
    history = utils.History()
    for epoch in (1, 2):
        train = utils.EpochTotals(batches=4, seen=100, loss_sum=12.5 / epoch, correct=90 + epoch,
                                  lr=0.01 / epoch)
        test = utils.EvalResult(0.1 / epoch, 95 + epoch, 100, torch.zeros(0, 10), torch.zeros(0))
        history.append(epoch, train, test, 1.5 * epoch)
    return history


def test_history_csv_round_trip(tmp_path: Path) -> None:
    history = make_history()
    utils.write_history_csv(tmp_path / "run.csv", history)
    lines = (tmp_path / "run.csv").read_text().splitlines()
    assert lines[0] == ("epoch,lr,train_loss,train_acc,test_loss,test_acc,test_correct,test_total,"
                        "seconds")
    assert len(lines) == 3
    loaded = utils.load_history(tmp_path / "run.csv")
    assert loaded.epoch == [1, 2] and loaded.eval_correct == [96, 97]
    assert (loaded.eval_acc == pytest.approx(history.eval_acc)
            and loaded.train_loss == pytest.approx(history.train_loss))
    assert utils.History.from_dict(history.to_dict()) == history


def test_load_history_rejects_other_csv(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a training log CSV"):
        utils.load_history(tmp_path / "other.csv")


def test_new_run_never_reuses_files(tmp_path: Path) -> None:
    made = [runs.new_run(tmp_path / "logs", tmp_path / "ckpt", name="x") for _ in range(3)]
    assert len({r.run_id for r in made}) == 3
    assert all(r.log.exists() for r in made)
    with runs.RunLog(made[0].log, echo=False) as log:
        log("Test set: Average loss: 0.0300, Accuracy: 9900/10000 (99.00%)")
    assert "INFO:utils:Test set: Average loss: 0.0300" in made[0].log.read_text()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    optimizer = training.make_optimizer(model, "sgd", lr=0.1)
    schedule = utils.make_schedule("onecycle", optimizer, epochs=2, steps_per_epoch=10)
    path = checkpoint.save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer,
                                      scheduler=schedule.scheduler, epoch=2,
                                      history=make_history().to_dict(),
                                      settings={"lr": 0.1, "data_dir": tmp_path},
                                      augment=asdict(utils.Augment()),
                                      partial=vars(utils.EpochTotals(1, 2, 3.0, 4, 0.5)),
                                      run_id="r")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    state = checkpoint.load_checkpoint(path)
    assert (state["epoch"] == 2 and state["run_id"] == "r"
            and state["settings"]["data_dir"] == str(tmp_path))
    assert utils.EpochTotals(**state["partial"]) == utils.EpochTotals(1, 2, 3.0, 4, 0.5)
    assert utils.Augment(**state["augment"]) == utils.Augment()  # the run's augmentation, as is
    net = checkpoint.load_trained_net(path)
    for a, b in zip(net.state_dict().values(), model.state_dict().values(), strict=False):
        assert torch.equal(a, b)
    # a bare state_dict saved by a user's own script loads too
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    checkpoint.load_trained_net(tmp_path / "bare.pt")


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    other = torch.nn.Sequential(torch.nn.Linear(784, 10))
    checkpoint.save_checkpoint(tmp_path / "other.pt", model=other)
    with pytest.raises(checkpoint.CheckpointError, match="different architecture than Net"):
        checkpoint.load_trained_net(tmp_path / "other.pt")


def test_truncated_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    good = checkpoint.save_checkpoint(tmp_path / "good.pt", model=Net())
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(checkpoint.CheckpointError, match=r"cut\.pt is not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"notes\.txt is not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "notes.txt")
    torch.save({"some": [1, 2]}, tmp_path / "dict.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint of this package"):
        checkpoint.load_checkpoint(tmp_path / "dict.pt")
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "missing.pt")


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    payload = RunsCode()
    payload.marker = str(marker)
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "model": payload}, tmp_path / "evil.pt")
    before = (tmp_path / "evil.pt").read_bytes()
    with pytest.raises(checkpoint.CheckpointError, match="was refused"):
        checkpoint.load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    assert (tmp_path / "evil.pt").read_bytes() == before
    with pytest.raises(pickle.UnpicklingError):  # the guard is torch's own weights_only loader
        torch.load(tmp_path / "evil.pt", weights_only=True)


def test_a_crash_while_saving_never_leaves_a_half_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = checkpoint.save_checkpoint(tmp_path / "run.pt", model=Net(), epoch=1)
    before = path.read_bytes()

    real_open = open

    def half_then_disk_full(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode and str(file).endswith(".tmp"):
            f.write(b"half a checkpoint")
            f.close()
            raise OSError(28, "No space left on device")
        return f

    monkeypatch.setattr("builtins.open", half_then_disk_full)
    with pytest.raises(OSError, match=r"could not write .*run\.pt: No space left on device"):
        checkpoint.save_checkpoint(path, model=Net(), epoch=2)
    assert path.read_bytes() == before  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # and no temporary file is left


def test_concurrent_runs_get_distinct_files(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: runs.new_run(tmp_path / "logs", tmp_path / "ckpt"),
                             range(16)))
    assert (len({r.run_id for r in made}) == 16
            and len(list((tmp_path / "logs").glob("*.log"))) == 16)


def test_an_image_given_as_checkpoint_is_not_called_dangerous(tmp_path: Path) -> None:
    (tmp_path / "digit.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"digit\.png is not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "digit.png")


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_training_uses_a_gradient_scaler_and_stays_finite(device) -> None:
    torch.manual_seed(0)
    model, loader = Net().to(device), tiny_loader(64, batch_size=32, device=device, shuffle=True)
    optimizer = training.make_optimizer(model, "sgd", lr=0.01)
    totals = utils.train(model, loader, optimizer, epoch=1, amp_dtype=torch.float16,
                         progress=False)
    assert totals.batches == 2 and torch.isfinite(torch.tensor(totals.loss))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_auto_precision() -> None:
    assert training.autocast_dtype(torch.device("cpu"), "off") is None
    assert training.autocast_dtype(torch.device("cpu"), "fp16") is torch.float16
    assert training.autocast_dtype(torch.device("cpu"), "auto") in (torch.bfloat16, None)


# --- train() and resume(): training from Python with values, no flags


def small_settings(**changes: object) -> recipes.Settings:
    """The fast recipe on 512 tiny images: 8 steps of 64 an epoch, evaluated on 128."""
    return recipes.RECIPES["fast"].replace(epochs=2, test_batch_size=128, **changes)


def test_train_takes_settings_and_returns_the_runs_result(tiny_mnist, tmp_path: Path) -> None:
    data_dir, _ = tiny_mnist
    places = dict(data_dir=data_dir, verify=False, log_dir=tmp_path / "logs",
                  checkpoint_dir=tmp_path / "ckpt", device="cpu", progress=False)
    result = training.train(small_settings(lr=3e-3), **places)
    assert (result.status == "finished" and result.exit_status == 0
            and result.history.epoch == [1, 2])
    assert (result.accuracy == result.history.eval_acc[-1]
            == utils.load_history(result.files.csv).eval_acc[-1])
    state = checkpoint.load_checkpoint(result.checkpoint)
    assert ({k: state["settings"][k] for k in recipes.TRAINING_KEYS}
            == asdict(small_settings(lr=3e-3)))
    info = runs.read_run_info(result.files.info)
    assert (info["kind"] == "train" and info["settings"]["lr"] == 3e-3
            and info["settings"]["recipe"] == "fast")

    stopped = training.train(small_settings(), **places, on_epoch=lambda history: "enough")
    assert (stopped.status == "stopped" and stopped.history.epoch == [1]
            and "enough" in stopped.message)


def test_resume_continues_a_run_exactly_and_ignores_asked_changes(tiny_mnist, tmp_path: Path,
                                                                  monkeypatch) -> None:
    data_dir, _ = tiny_mnist
    settings = small_settings(seed=5)
    places = dict(data_dir=data_dir, verify=False, device="cpu", progress=False)
    full = training.train(settings, **places, log_dir=tmp_path / "a", checkpoint_dir=tmp_path / "a")
    # in epoch 2, after 3 of its 8 steps
    monkeypatch.setattr(training, "stop_on_signals", stop_after(11))
    cut = training.train(settings, **places, log_dir=tmp_path / "b",
                         checkpoint_dir=tmp_path / "b")
    assert cut.status == "interrupted" and cut.exit_status == 130 and cut.checkpoint is not None
    monkeypatch.undo()
    resumed = training.resume(cut.checkpoint, progress=False, asked={"lr": 0.5})
    assert resumed.status == "finished" and resumed.files.run_id == cut.files.run_id
    assert resumed.settings == settings
    drop_seconds = [{k: v for k, v in row.items() if k != "seconds"}
                    for row in full.history.rows()]
    assert [{k: v for k, v in row.items() if k != "seconds"}
            for row in resumed.history.rows()] == drop_seconds
    assert "--lr 0.5 is ignored on --resume" in resumed.files.log.read_text()
    again = training.resume(resumed.checkpoint)
    assert again.status == "done" and again.files is None and "Nothing to train" in again.message


def test_settings_are_checked_values() -> None:
    with pytest.raises(TypeError):
        recipes.RECIPES["fast"].replace(learning_rate=0.1)  # not a setting
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipes.RECIPES["fast"].lr = 0.1  # a recipe is never changed in place
    for bad in (dict(optimizer="adam"), dict(lr=0), dict(scale_min=2.0, scale_max=1.0),
                dict(amp="fp8")):
        with pytest.raises(ValueError):
            training.train(recipes.DEFAULT.replace(**bad), log_dir="/nonexistent/never-written")
