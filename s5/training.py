"""One training run from Python: ``train(settings)`` runs a logged, checkpointed, resumable run of
the Net on MNIST and returns its ``Result``; ``resume(checkpoint)`` continues one. train.py is the
command line over them (s5/train_cli.py); the settings are s5/recipes.py's."""

from __future__ import annotations

import copy
import dataclasses
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import utils
from model import Net
from s5 import runs
from s5.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    remove_stale_temp_files,
    save_checkpoint,
)
from s5.mnist import MNIST_MD5, MnistError, font_digits_dir, load_font_digits, load_mnist
from s5.muon import Muon
from s5.recipes import RECIPES, TRAINING_KEYS, Settings

OnEpoch = Callable[[utils.History], str | None]  # a reason to stop, or None
# A GPU warps this many training images in one batched call (a CPU, batch by batch).
GPU_WARP_IMAGES = 8192


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple's MPS, then the CPU; another name is checked (``ValueError``)."""
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name not in ("cuda", "mps", "cpu"):
        raise ValueError(f"device {name!r}: use auto, cuda, mps or cpu")
    if (name == "cuda" and not torch.cuda.is_available()) or (name == "mps" and not mps):
        kind = "CUDA GPU" if name == "cuda" else "MPS device"
        raise ValueError(f"--device {name}: torch sees no {kind} here; use --device auto or cpu")
    return torch.device(name)


def default_recipe(device: str) -> str:
    """The recipe a run gets when none is named: ``gpu`` where ``device`` picks a CUDA GPU."""
    return "gpu" if device in ("auto", "cuda") and torch.cuda.is_available() else "default"


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` (auto, off, bf16, fp16); ``auto``: bf16 where native (CUDA
    8.0+, CPUs with AVX512-BF16/AMX), fp32 elsewhere (e.g. Colab's T4)."""
    if amp != "auto":
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else None
    try:
        native = device.type == "cpu" and torch.backends.mkldnn.is_available() and \
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (the loaders seed each batch themselves)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, AdamW (fused on a GPU), or Muon (s5/muon.py; AdamW for what it
    skips)."""
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}  # fewer kernel launches
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                               weight_decay=weight_decay, nesterov=momentum > 0, **fused)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, **fused)
    if name == "muon":
        return Muon.for_model(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use sgd, adamw or muon")


def augment_chunk(device: torch.device, batch_size: int) -> int:
    """Batches augmented together by the training loader: GPU_WARP_IMAGES' worth on a GPU, one on a
    CPU."""
    return max(1, GPU_WARP_IMAGES // batch_size) if device.type == "cuda" else 1


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], int]]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM (what `kill`, `timeout` and batch systems send)
    set a flag instead of ending the process; yields a function that returns the signal's number,
    0 before one came. A second signal raises ``KeyboardInterrupt`` as usual."""
    requested = []

    def handler(signum: int, frame: object) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        tqdm.write(f"Interrupted ({signal.Signals(signum).name}): finishing the current step, then "
                   "saving a checkpoint (Ctrl-C again to abort)")

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave the signals alone
        yield lambda: 0
        return
    try:
        yield lambda: requested[0] if requested else 0
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_held: list[int] | None = None  # the signals held_signals holds back, while it does


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run's set-up (``signum``: which): there is no step to finish."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def abort_on_signals() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM raise ``Interrupted``: SIGTERM's default would end the
    process at once, past the ``finally`` that releases the run's claim. ``stop_on_signals``
    replaces this handler while the epochs train."""

    def handler(signum: int, frame: object) -> None:
        if _held is not None:
            _held.append(signum)
            return
        raise Interrupted(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave the signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interruption(exc: BaseException | None) -> Interrupted | None:
    """The ``Interrupted`` that ``exc`` is, or was raised while handling: a library stopped
    mid-way (tqdm creating its lock, say) may end in an error of its own."""
    while exc is not None and not isinstance(exc, Interrupted):
        exc = exc.__context__
    return exc


@contextmanager
def held_signals() -> Iterator[None]:
    """Within ``abort_on_signals``, Ctrl-C and SIGTERM wait until this block ends, then raise.
    (A signal mask would not do: the OS hands the signal to any thread, e.g. one of torch's.)"""
    global _held
    _held = []
    try:
        yield
    finally:
        arrived, _held = _held, None
    if arrived:
        raise Interrupted(arrived[0])


@dataclass(frozen=True)
class Places:
    """Where a run runs and writes; recorded with it, and kept on resume unless given again."""

    device: str = "auto"
    data_dir: str = "data"
    verify: bool = True  # md5-check the MNIST files
    log_dir: str = "logs"
    checkpoint_dir: str = "checkpoints"
    tensorboard: bool = True  # where the tensorboard package is installed
    save_model: bool = True

    def recorded(self) -> dict:
        """As the run file and the checkpoint record them (format v2's keys)."""
        return {"device": self.device, "data_dir": str(self.data_dir), "no_verify": not self.verify,
                "log_dir": str(self.log_dir), "checkpoint_dir": str(self.checkpoint_dir),
                "tensorboard": self.tensorboard, "save_model": self.save_model}


@dataclass
class Result:
    """What ``train`` returns. ``status``: finished, stopped (``on_epoch`` asked), interrupted
    (Ctrl-C or SIGTERM: the checkpoint continues it), diverged (a non-finite loss), or done (a
    resumed run that had nothing left to train)."""

    status: str
    settings: Settings
    history: utils.History
    files: runs.RunFiles | None
    checkpoint: Path | None
    exit_status: int = 0  # what train.py exits with: 0, 1 diverged, 130 or 143 interrupted
    message: str = ""  # why it stopped, in a line

    @property
    def accuracy(self) -> float | None:
        """The last evaluated accuracy (%): on the test set, or under ``val`` the held-out split."""
        return self.history.eval_acc[-1] if self.history.eval_acc else None


@dataclass
class Run:
    """One run in progress: its settings, files, data, Net, optimizer and schedule, and where it
    stands."""

    settings: Settings
    places: Places
    files: runs.RunFiles
    log: runs.RunLog
    board: runs.RunBoard
    device: torch.device
    amp_dtype: torch.dtype | None
    dry_run: bool
    progress: bool
    augment: utils.Augment = None
    train_loader: utils.DeviceLoader = None
    eval_loader: utils.DeviceLoader = None
    model: Net = None
    optimizer: torch.optim.Optimizer = None
    schedule: utils.Schedule = None
    scaler: torch.amp.GradScaler = None
    history: utils.History = None
    start_epoch: int = 1
    partial: utils.EpochTotals | None = None
    plan: list[int] = field(default_factory=list)
    last_eval: utils.EvalResult | None = None
    after_step: Callable[[int], None] | None = None  # given to utils.train: s5/frontier.py's probe

    @property
    def split(self) -> str:
        return "val" if self.settings.val else "test"

    def result(self, status: str, exit_status: int = 0, message: str = "") -> Result:
        saved = self.files.checkpoint if self.files.checkpoint.exists() else None
        return Result(status, self.settings, self.history, self.files, saved, exit_status, message)

    def save(self, epoch: int, partial: utils.EpochTotals | None = None) -> None:
        save_checkpoint(self.files.checkpoint, model=self.model, optimizer=self.optimizer,
                        scheduler=self.schedule.scheduler, scaler=self.scaler, epoch=epoch,
                        history=self.history.to_dict(),
                        settings=recorded(self.settings, self.places), augment=asdict(self.augment),
                        partial=vars(partial) if partial else None, run_id=self.files.run_id)


def recorded(settings: Settings, places: Places, **more: object) -> dict:
    """A run's settings as its run file and checkpoint record them: what it trained with, where."""
    return dict(sorted({**asdict(settings), **places.recorded(), **more}.items()))


def prepare(run: Run) -> None:
    """Data, loaders, Net, optimizer and schedule of a new run, on its device."""
    s, log = run.settings, run.log
    data = load_mnist(run.places.data_dir, run.device, val_size=s.val,
                      md5s=MNIST_MD5 if run.places.verify else None, log=log)
    eval_images, eval_labels = (data.val_images, data.val_labels) if s.val else \
        (data.test_images, data.test_labels)
    train_images, train_labels = data.train_images, data.train_labels
    if run.dry_run:
        n, m = 2 * s.batch_size, s.test_batch_size
        train_images, train_labels = train_images[:n], train_labels[:n]
        eval_images, eval_labels = eval_images[:m], eval_labels[:m]
    split = utils.SPLITS[run.split].lower()
    log(f"Train images: {len(train_images)}, {split} images: {len(eval_images)}")
    font_digits = None
    if s.font_digits:
        font_digits = load_font_digits(run.places.data_dir, run.device)
        log(f"Font digits: {len(font_digits[0])} from {font_digits_dir(run.places.data_dir)}, "
            f"{s.font_digits:.0%} of the training images")
    run.augment = utils.Augment.from_settings(asdict(s))
    run.train_loader = utils.DeviceLoader(train_images, train_labels, s.batch_size, shuffle=True,
                                          augment=run.augment, seed=s.seed,
                                          chunk=augment_chunk(run.device, s.batch_size),
                                          extra=font_digits, extra_share=s.font_digits)
    run.eval_loader = utils.DeviceLoader(eval_images, eval_labels, s.test_batch_size)
    run.model = Net().to(run.device, memory_format=torch.channels_last)
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    log(f"Net: {trainable:,} trainable parameters")
    run.optimizer = make_optimizer(run.model, s.optimizer, lr=s.lr, momentum=s.momentum,
                                   weight_decay=s.weight_decay)
    run.schedule = utils.make_schedule(s.scheduler, run.optimizer, epochs=s.epochs,
                                       steps_per_epoch=len(run.train_loader), step_size=s.step_size,
                                       gamma=s.gamma)
    run.scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp_dtype == torch.float16)
    run.history = utils.History(split=run.split)
    run.plan = utils.epoch_batches(s.epochs, len(run.train_loader))  # a fraction: a short last one


def restore(run: Run, state: dict, path: str | Path) -> None:
    """Put a resumed run back where its checkpoint left it: weights, optimizer, schedule, history,
    position."""
    total = run.schedule.scheduler.total_steps if run.schedule.per_batch else None
    if run.schedule.per_batch and state["scheduler"].get("total_steps") != total:
        raise CheckpointError(f"{path} was trained with {state['scheduler'].get('total_steps')} "
                              f"scheduled steps, these data and flags give {total}: resume with "
                              "the run's own --data-dir (leave it out to use the saved one)")
    load_model_state(run.model, state, path)
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.history = utils.History.from_dict(state["history"])
    run.start_epoch = state["epoch"] + 1
    run.partial = utils.EpochTotals(**state["partial"]) if state["partial"] else None
    batch = run.partial.batches if run.partial else 0
    run.log(f"Resumed from {path} at epoch {run.start_epoch}, batch {batch}")
    utils.write_history_csv(run.files.csv, run.history)


def warm_up(run: Run) -> float:
    """Two training steps and one evaluation batch on a throwaway copy of the Net, with its own
    optimizer: on CUDA, kernels load on first use, and the timed epochs should measure training.
    The run's own model, optimizer and random numbers are untouched. Returns the seconds it took."""
    s, start = run.settings, time.perf_counter()
    scratch = copy.deepcopy(run.model)
    optimizer = make_optimizer(scratch, s.optimizer, lr=s.lr, momentum=s.momentum,
                               weight_decay=s.weight_decay)
    n, m, loader = 2 * s.batch_size, s.test_batch_size, run.train_loader
    probe = utils.DeviceLoader(loader.images[:n], loader.labels[:n], s.batch_size, shuffle=True,
                               augment=loader.augment, chunk=loader.chunk)
    try:
        utils.train(scratch, probe, optimizer, epoch=0, amp_dtype=run.amp_dtype,
                    label_smoothing=s.label_smoothing, progress=False)
    except utils.NonFiniteLossError:  # a diverging learning rate: the run itself will say so
        pass
    evaluation = run.eval_loader
    utils.test(scratch, utils.DeviceLoader(evaluation.images[:m], evaluation.labels[:m], m))
    torch.cuda.synchronize()
    return time.perf_counter() - start


def one_epoch(run: Run, epoch: int, should_stop: Callable[[], int]) -> utils.EpochTotals:
    """Train epoch ``epoch`` (all its planned batches unless a signal stops it first); returns its
    totals and appends the evaluation to the history when it completed."""
    planned, steps = run.plan[epoch - 1], len(run.train_loader)
    part = f", {planned} of its {steps} batches" if planned < steps else ""
    run.log(f"Epoch {epoch} (learning rate {run.optimizer.param_groups[0]['lr']:.4e}{part})")
    before, start = run.partial.seconds if run.partial else 0.0, time.perf_counter()
    totals = utils.train(run.model, run.train_loader, run.optimizer, epoch=epoch,
                         schedule=run.schedule, amp_dtype=run.amp_dtype, scaler=run.scaler,
                         label_smoothing=run.settings.label_smoothing, totals=run.partial,
                         should_stop=should_stop, log=run.log, progress=run.progress,
                         n_batches=planned, after_step=run.after_step)
    # a resumed epoch counts the seconds trained before its interruption too
    seconds = totals.seconds = before + time.perf_counter() - start
    run.partial = None
    if totals.batches == planned:
        result = utils.test(run.model, run.eval_loader, run.log, run.split)
        run.history.append(round(epoch - 1 + planned / steps, 4), totals, result, seconds)
        run.last_eval = result
    return totals


def epochs(run: Run, on_epoch: Callable[[utils.History], str | None] | None) -> Result:
    """The epoch loop, and every way it ends."""
    with stop_on_signals() as should_stop:
        for epoch in range(run.start_epoch, len(run.plan) + 1):
            try:
                totals = one_epoch(run, epoch, should_stop)
            except utils.NonFiniteLossError as exc:
                kept = (f"the last good checkpoint is {run.files.checkpoint}"
                        if run.files.checkpoint.exists() else "no checkpoint of this run was "
                        "saved: it diverged before its first epoch ended")
                run.log(f"ERROR: {exc}")
                run.log(kept[0].upper() + kept[1:])
                return run.result("diverged", 1, f"{exc} ({kept})")
            if totals.batches < run.plan[epoch - 1]:
                run.save(epoch - 1, totals)
                message = (f"Interrupted at epoch {epoch}, batch {totals.batches}/"
                           f"{run.plan[epoch - 1]}. Checkpoint: {run.files.checkpoint}. Continue "
                           f"with: python train.py --resume {run.files.checkpoint}")
                run.log(message)
                sent = signal.SIGTERM if should_stop() == signal.SIGTERM else signal.SIGINT
                return run.result("interrupted", 128 + sent, message)  # 143 or 130
            if run.places.save_model:  # first: a CSV row never claims an epoch that was not saved
                run.save(epoch)
            utils.write_history_csv(run.files.csv, run.history)
            run.board.epoch(run.history, step=sum(run.plan[:epoch]))  # step: batches so far
            if on_epoch is not None and (reason := on_epoch(run.history)):
                message = f"Stopped after epoch {run.history.epoch[-1]:g}: {reason}"
                run.log(message)
                return run.result("stopped", 0, message)
        return finish(run)  # a signal now is too late to stop anything: the run has finished


def finish(run: Run) -> Result:
    """The end of a run that trained all its epochs: TensorBoard's summary and the final lines of
    the log."""
    h = run.history
    run.board.finish(h, run.last_eval, step=sum(run.plan),
                     settings={key: getattr(run.settings, key) for key in TRAINING_KEYS})
    run.log(f"Final {utils.SPLITS[run.split].lower()} accuracy: {h.eval_acc[-1]:.2f}% "
            f"({h.eval_correct[-1]}/{h.eval_total[-1]}) after {h.epoch[-1]:g} epochs, "
            f"{sum(h.seconds):.1f} s of training")
    saved = f"; checkpoint: {run.files.checkpoint}" if run.places.save_model else ""
    run.log(f"Logs: {run.files.log}, {run.files.csv}{saved}")
    return run.result("finished")


def train(settings: Settings | None = None, *, device: str = "auto", data_dir: str | Path = "data",
          verify: bool = True, log_dir: str | Path = "logs",
          checkpoint_dir: str | Path = "checkpoints", save_model: bool = True,
          tensorboard: bool = True, progress: bool = True, name: str | None = None,
          dry_run: bool = False, on_epoch: OnEpoch | None = None, kind: str = "train",
          record: dict | None = None, command: str | None = None,
          warnings: tuple[str, ...] = ()) -> Result:
    """Train the Net with ``settings`` (default: the device's recipe) on MNIST from ``data_dir``;
    every epoch is evaluated, logged to ``log_dir`` and checkpointed to ``checkpoint_dir``.

    ``dry_run``: two batches and one evaluation, no checkpoint. ``on_epoch(history)`` is called
    after each evaluated epoch; a reason it returns stops the run there. ``kind`` and ``record`` go
    into the run file (a tuning trial's study and number), ``command`` into its log. Raises
    ``ValueError`` for settings or data no run can use, ``MnistError``, ``CheckpointError`` and
    ``OSError`` for files; a diverging or interrupted run returns its ``Result``."""
    settings = (settings or RECIPES[default_recipe(device)]).check()
    if dry_run:
        settings, kind = settings.replace(epochs=1), "dry-run"
        save_model = tensorboard = False
    places = Places(device, str(data_dir), verify, str(log_dir), str(checkpoint_dir), tensorboard,
                    save_model)
    return execute(settings, places, kind=kind, record=record, command=command,
                   warnings=list(warnings), progress=progress, name=name, dry_run=dry_run,
                   on_epoch=on_epoch)


def resume(checkpoint: str | Path, *, device: str | None = None,
           data_dir: str | Path | None = None, verify: bool | None = None,
           log_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
           tensorboard: bool | None = None, progress: bool = True, on_epoch: OnEpoch | None = None,
           command: str | None = None, asked: dict | None = None,
           warnings: tuple[str, ...] = ()) -> Result:
    """Continue the run saved in ``checkpoint`` exactly: its settings come from the checkpoint, and
    so do the places not given here. Same seed, same machine: the same numbers as a run that was
    never stopped. ``asked``: settings asked for now (flags); those that differ are ignored."""
    state = load_checkpoint(checkpoint)
    load_model_state(Net(), state, checkpoint)  # another architecture or NaN weights: stop here
    saved = saved_settings(state, checkpoint)
    settings = Settings(**{key: saved[key] for key in TRAINING_KEYS})
    warnings = [*warnings, *(f"--{key.replace('_', '-')} {value} is ignored on --resume: the run "
                             f"continues with its own {key}={saved[key]}"
                             for key, value in (asked or {}).items() if value != saved[key])]
    given = {"device": device, "data_dir": data_dir, "log_dir": log_dir,
             "checkpoint_dir": checkpoint_dir, "tensorboard": tensorboard}
    where = {key: saved.get(key, getattr(Places, key)) if value is None else
             str(value) if isinstance(value, Path) else value for key, value in given.items()}
    verify = (not saved.get("no_verify", False)) if verify is None else verify
    places = Places(where["device"], where["data_dir"], verify, where["log_dir"],
                    where["checkpoint_dir"], where["tensorboard"], saved.get("save_model", True))
    try:
        pick_device(places.device)
    except ValueError:
        raise CheckpointError(f"{checkpoint} was trained on {places.device}, which this machine "
                              "does not have: add --device cpu (or auto) to continue it "
                              "here") from None
    if state["epoch"] >= settings.epochs and not state["partial"]:
        history = utils.History.from_dict(state["history"])
        return Result("done", settings, history, None, Path(checkpoint), 0,
                      f"Nothing to train: {checkpoint} finished all {settings.epochs:g} epochs of "
                      "its run. To train longer, start a new run with --epochs N.")
    return execute(settings, places, state=(state, checkpoint), command=command,
                   warnings=list(warnings), progress=progress, on_epoch=on_epoch)


def saved_settings(state: dict, path: str | Path) -> dict:
    """The settings a checkpoint's run trained with; ``CheckpointError`` if its run cannot be
    resumed."""
    if state.get("kind") == "weights":
        raise CheckpointError(f"{path} holds weights only (e.g. torch.save(net.state_dict())): it "
                              "can be used with predict.py, but a run cannot be resumed from it "
                              "(no optimizer or schedule)")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written by an earlier version of train.py "
                              f"({state['format']}): predict.py, export and the page still use it, "
                              "but its run cannot be resumed; train again")
    kinds = {"epoch": int, "history": dict, "settings": dict, "optimizer": dict, "scheduler": dict}
    wrong = [key for key, kind in kinds.items() if not isinstance(state.get(key), kind)]
    partial = state.get("partial")
    wrong += ["partial"] * (partial is not None and not isinstance(partial, dict))
    saved = state.get("settings") or {}
    wrong += [f"settings.{key}" for key in TRAINING_KEYS if key not in saved][:3]
    if not wrong:
        try:
            Settings(**{key: state["settings"][key] for key in TRAINING_KEYS}).check()
        except (TypeError, ValueError):
            wrong.append("settings")
    if wrong:
        raise CheckpointError(f"{path} holds fields of the wrong kind or none "
                              f"({', '.join(wrong)}): not as train.py writes them, so its run "
                              "cannot be resumed; predict.py may still use its weights")
    return state["settings"]


def claim_files(places: Places, state: tuple[dict, str | Path] | None, name: str | None,
                dry_run: bool) -> tuple[runs.RunFiles, dict]:
    """A new run's files, or a resumed run's own (the same id and files), with what its run file
    says so far."""
    if state is not None and state[0].get("run_id"):
        files = runs.continue_run(state[0]["run_id"], places.log_dir, state[1])
        return files, runs.read_run_info(files.info)
    label = "-".join(filter(None, [name, dry_run and "dry-run"]))
    return runs.new_run(places.log_dir, places.checkpoint_dir, label), {}


@abort_on_signals()  # a signal during set-up (data, warm-up) still reaches the claim's release
def execute(settings: Settings, places: Places, *, state: tuple[dict, str | Path] | None = None,
            kind: str = "train", record: dict | None = None, command: str | None = None,
            warnings: list[str], progress: bool = True, name: str | None = None,
            dry_run: bool = False, on_epoch: OnEpoch | None = None) -> Result:
    """A run from its settings and places: claim its files, log its set-up, then train (``state``:
    continue a checkpoint's run)."""
    if settings.amp == "fp16" and pick_device(places.device).type == "cpu":
        warnings.append("--amp fp16 on a CPU is emulated and far slower than --amp bf16 or off")
    device = pick_device(places.device)
    places = dataclasses.replace(places, device=device.type)  # a resume continues there
    amp_dtype = autocast_dtype(device, settings.amp)
    seed_everything(settings.seed)
    remove_stale_temp_files(places.checkpoint_dir)
    started_by = command or "train() from Python"
    if places.tensorboard and runs.tensorboard_installed():
        runs.check_board_folder(places.log_dir)
    files = None
    try:
        with held_signals():  # no signal between the claim and the try that releases it
            files, info = claim_files(places, state, name, dry_run)
        kind = info.get("kind", kind)
        record = {key: info[key] for key in ("study", "trial") if key in info} or record
        continued = state is not None and bool(state[0].get("run_id"))
        resumed_with = [*info.get("resumed_with", []), started_by] if continued else []
        first = info.get("command", started_by)
        runs.write_run_info(files, kind=kind, command=first,
                            split="val" if settings.val else "test", resumed_with=resumed_with,
                            autocast=str(amp_dtype or "off"), **(record or {}),
                            settings=recorded(settings, places, name=name, dry_run=dry_run))
        board_dir = files.tensorboard if places.tensorboard else None
        with runs.RunLog(files.log) as log, runs.RunBoard(board_dir, log) as board:
            run = Run(settings, places, files, log, board, device, amp_dtype, dry_run, progress)
            try:
                log(f"Run {files.run_id}: {started_by}" if state is None else
                    f"Run {files.run_id} continues: {started_by}")
                for warning in warnings:
                    log(f"WARNING: {warning}")
                shown = recorded(settings, places).items()
                log("Settings: " + ", ".join(f"{k}={v}" for k, v in shown))
                log(f"Device: {device}, autocast: {amp_dtype or 'off'}, torch {torch.__version__}, "
                    f"threads {torch.get_num_threads()}")
                prepare(run)
                if state is not None:
                    restore(run, *state)
                if device.type == "cuda":
                    log(f"CUDA warm-up: {warm_up(run):.1f} s on a copy of the Net (kernels load on "
                        "first use; not counted as training time)")
                return epochs(run, on_epoch)
            except BaseException as exc:
                if (stop := interruption(exc)) is not None:  # before the first step
                    kept = (f"{state[1]} is unchanged" if state is not None else
                            "nothing was trained or saved")
                    message = f"Interrupted ({stop}) during the run's set-up: {kept}"
                    log(message)
                    return run.result("interrupted", 128 + stop.signum, message)
                if isinstance(exc, (ValueError, MnistError, CheckpointError, OSError)):
                    log(f"ERROR: {exc}")
                elif isinstance(exc, Exception):  # not a second Ctrl-C: that one aborts unlogged
                    log("ERROR: training crashed:\n" + traceback.format_exc())
                raise
    finally:
        if files is not None:
            files.release()
