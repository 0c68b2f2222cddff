"""Train the Week 5 Net on MNIST: `python train.py` (or `make train`).

Every knob is a flag over a named recipe (`--recipe seed` restores the original assignment's settings). Each run
writes logs/<run-id>.log, .csv and .json and checkpoints/<run-id>.pt and never touches another run's files.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import re
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

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
    no_checkpoint_file,
    remove_stale_temp_files,
    save_checkpoint,
)
from s5.mnist import MNIST_MD5, MnistError, font_digits_dir, load_font_digits, load_mnist
from s5.muon import Muon

# The recipes: every setting a run trains with, one dict each. Flags override them; the run file and the checkpoint
# record the result. Each was chosen on the validation split (--val 10000), never on the test set; docs/experiments.md
# has what else was tried.
DEFAULT = dict(epochs=5, batch_size=64, lr=0.002, momentum=0.95, weight_decay=1e-4, optimizer="muon",
               scheduler="onecycle", step_size=2, gamma=0.1, label_smoothing=0.1, degrees=15.0, crop_p=0.1,
               translate=0.08, scale_min=0.9, scale_max=1.1, lowres=0.3, font_digits=0.0)
SEED_AUGMENTATION = dict(translate=0.0, scale_min=1.0, scale_max=1.0, lowres=0.0)  # the seed's rotation and crop only
ADAMW = dict(optimizer="adamw", momentum=0.9)  # tuned with AdamW, before the default moved to Muon
RECIPES = {
    # Muon + OneCycle, batch 64, label smoothing, mild shift/zoom, 30% of images seen as a small scan enlarged.
    "default": DEFAULT,
    # Half an epoch: the fastest path to 99%. Chosen by an Optuna study on the validation split (docs/studies/fast.md).
    "fast": {**DEFAULT, "epochs": 0.5, "lr": 0.006, "momentum": 0.9, "label_smoothing": 0.09, "degrees": 7.5,
             **SEED_AUGMENTATION},
    # The original assignment: batch 1024, SGD 0.01 momentum 0.9, StepLR(step_size=2, gamma=0.1).
    "seed": {**DEFAULT, "batch_size": 1024, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "optimizer": "sgd",
             "scheduler": "step", "label_smoothing": 0.0, **SEED_AUGMENTATION},
    # For your own handwriting: a quarter of the images swapped for digits of handwriting fonts (`make font-digits`).
    "handwriting": {**DEFAULT, **ADAMW, "font_digits": 0.25},
    # Picked on a CUDA GPU when --recipe is not given: there a step costs kernel launches, so larger batches.
    "gpu": {**DEFAULT, **ADAMW, "batch_size": 512, "lr": 0.008, "lowres": 0.0},
    "gpu-fast": {**DEFAULT, **ADAMW, "epochs": 1, "batch_size": 256, "lr": 0.012, **SEED_AUGMENTATION},
}
# A GPU warps this many training images in one batched call (a CPU warps batch by batch): fewer launches per step.
GPU_WARP_IMAGES = 8192
# On --resume these come from the checkpoint, so the run continues exactly as it started.
TRAINING_KEYS = (*DEFAULT, "recipe", "seed", "amp", "val", "test_batch_size")
# On --resume these come from the checkpoint too, unless given again: the device, the data, where the files go.
PLACE_KEYS = ("device", "data_dir", "no_verify", "log_dir", "checkpoint_dir", "tensorboard")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; another name is checked (``ValueError`` if absent)."""
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if (name == "cuda" and not torch.cuda.is_available()) or (name == "mps" and not mps):
        raise ValueError(f"--device {name}: torch sees no {'CUDA GPU' if name == 'cuda' else 'MPS device'} here; "
                         "use --device auto or cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` (auto, off, bf16, fp16); ``auto``: bf16 where native (CUDA 8.0+, CPUs with
    AVX512-BF16/AMX), fp32 elsewhere (e.g. Colab's T4)."""
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
    """Seed Python's, NumPy's and torch's generators (the loaders keep their own per-batch seeds)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, AdamW (fused on a GPU), or Muon (s5/muon.py; AdamW for what it skips)."""
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}  # ~15 kernel launches fewer per step
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=momentum > 0, **fused)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, **fused)
    if name == "muon":
        return Muon.for_model(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use sgd, adamw or muon")


def bounded(cast: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: ``cast`` the text, then require a finite value in [low, high] (open where asked)."""

    def shown(limit: float) -> str:
        return str(cast(limit)) if cast is int else f"{limit:g}"  # "> 0", not "> 0.0"

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{'an integer' if cast is int else 'a number'} is needed, "
                                             f"got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"a finite number is needed, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {shown(low)}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {shown(high)}, got {text}")
        return value

    return parse


def run_name(text: str) -> str:
    """``--name``: a short label that is safe in a file name."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"use 1-64 letters, digits, '.', '_' or '-' (not first '.'), got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    positive, count = bounded(int, 1, 60_000), bounded(int, 0, 60_000)  # no batch or split is larger than MNIST
    fraction = bounded(float, 0, 1, high_open=True)
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a named set of defaults for the flags below; explicit flags still win "
                        "(default: gpu on a CUDA GPU, default elsewhere)")
    p.add_argument("--epochs", type=bounded(float, 0, 1000, low_open=True),
                   help="epochs to train; a fraction trains part of the last one (0.5: half of the training set)")
    p.add_argument("--batch-size", type=positive, help="training batch size")
    p.add_argument("--test-batch-size", type=positive, default=1000, help="evaluation batch size")
    p.add_argument("--lr", type=bounded(float, 0, 10, low_open=True), help="learning rate (the peak of OneCycle)")
    p.add_argument("--momentum", type=fraction, help="SGD and Muon momentum")
    p.add_argument("--weight-decay", type=bounded(float, 0, 1), help="L2 weight decay")
    p.add_argument("--optimizer", choices=("sgd", "adamw", "muon"), help="muon: see s5/muon.py")
    p.add_argument("--scheduler", choices=("step", "onecycle"), help="StepLR per epoch or OneCycleLR per batch")
    p.add_argument("--step-size", type=bounded(int, 1, 1000), help="StepLR: epochs between decays")
    p.add_argument("--gamma", type=bounded(float, 0, 1, low_open=True), help="StepLR: decay factor")
    p.add_argument("--label-smoothing", type=fraction, help="label smoothing of the NLL loss")
    p.add_argument("--degrees", type=bounded(float, 0, 180), help="augmentation: random rotation range ±degrees")
    p.add_argument("--crop-p", type=bounded(float, 0, 1), help="augmentation: probability of CenterCrop(22) + resize")
    p.add_argument("--translate", type=bounded(float, 0, 0.5), help="augmentation: random shift, fraction of the image")
    p.add_argument("--scale-min", type=bounded(float, 0.25, 4), help="augmentation: random zoom lower bound")
    p.add_argument("--scale-max", type=bounded(float, 0.25, 4), help="augmentation: random zoom upper bound")
    p.add_argument("--font-digits", type=fraction,
                   help="fraction of training images swapped for digits of handwriting fonts, which MNIST's writers "
                        "lack (built by `make font-digits` into <data-dir>/font-digits)")
    p.add_argument("--lowres", type=fraction,
                   help="augmentation: fraction of images seen at 10-20 px and enlarged again, as small scans are")
    p.add_argument("--seed", type=bounded(int, 0, 2**63 - 1), default=1,
                   help="random seed (same seed, same CPU: same numbers)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                   help="mixed precision for training; auto = bf16 where the hardware has it")
    p.add_argument("--val", type=count, default=0, metavar="N",
                   help="hold out the last N training images and evaluate on them instead of the test set")
    p.add_argument("--data-dir", default="data", help="MNIST lives in <data-dir>/MNIST/raw (torchvision layout)")
    p.add_argument("--no-verify", action="store_true",
                   help="use the files in --data-dir as they are, without the standard md5 check")
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True,
                   help="save checkpoints/<run-id>.pt after every epoch")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="also write TensorBoard events to <log-dir>/tensorboard/<run-id>/ (needs the tensorboard "
                        "package; without it, none)")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="one epoch of two batches, no checkpoint: checks the whole pipeline")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the tqdm bars")
    p.add_argument("--name", type=run_name, help="a label added to the run id")
    return p


def explicit_flags(argv: list[str] | None) -> set[str]:
    """The destinations of the flags actually written on the command line (not defaults)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_known_args(argv)[0]))


def default_recipe(device: str) -> str:
    """The recipe a run gets when --recipe is not given: ``gpu`` where --device picks a CUDA GPU."""
    return "gpu" if device in ("auto", "cuda") and torch.cuda.is_available() else "default"


def augment_chunk(device: torch.device, batch_size: int) -> int:
    """Batches augmented together by the training loader: GPU_WARP_IMAGES' worth on a GPU, one on a CPU."""
    return max(1, GPU_WARP_IMAGES // batch_size) if device.type == "cuda" else 1


def warm_up(args: argparse.Namespace, model: Net, train_loader: utils.DeviceLoader, eval_loader: utils.DeviceLoader,
            amp_dtype: torch.dtype | None) -> float:
    """Two training steps and one evaluation batch on a throwaway copy of ``model``, with its own optimizer: on
    CUDA, kernels load and cuDNN sets up on first use (about a second), and the timed epochs should measure
    training. The run's own model, optimizer and random numbers are untouched. Returns the seconds it took."""
    start = time.perf_counter()
    scratch = copy.deepcopy(model)
    optimizer = make_optimizer(scratch, args.optimizer, lr=args.lr, momentum=args.momentum,
                                     weight_decay=args.weight_decay)
    n, m = 2 * args.batch_size, args.test_batch_size
    probe = utils.DeviceLoader(train_loader.images[:n], train_loader.labels[:n], args.batch_size, shuffle=True,
                               augment=train_loader.augment, chunk=train_loader.chunk)
    try:
        utils.train(scratch, probe, optimizer, epoch=0, amp_dtype=amp_dtype, label_smoothing=args.label_smoothing,
                    progress=False)
    except utils.NonFiniteLossError:  # a diverging learning rate: the run itself will say so
        pass
    utils.test(scratch, utils.DeviceLoader(eval_loader.images[:m], eval_loader.labels[:m], m))
    torch.cuda.synchronize()
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every flag; a bad one ends the program with one argparse-style line (exit 2)."""
    parser = build_parser()
    known = parser.parse_known_args(argv)[0]
    recipe = known.recipe or default_recipe(known.device)
    parser.set_defaults(recipe=recipe, **RECIPES[recipe])
    args = parser.parse_args(argv)
    if args.scale_min > args.scale_max:
        parser.error(f"--scale-min {args.scale_min:g} is above --scale-max {args.scale_max:g}")
    if args.resume and (problem := no_checkpoint_file(args.resume)):
        parser.error(f"--resume {problem}")
    if args.resume and args.dry_run:
        parser.error("--dry-run cannot be combined with --resume: a dry run trains two batches of a fresh Net")
    try:
        pick_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    return args


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], int]]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM (what `kill`, `timeout` and batch systems send) set a flag
    instead of ending the process; yields a function that returns the signal's number, 0 before one came.

    A second signal raises ``KeyboardInterrupt`` as usual.
    """
    requested = []

    def handler(signum: int, frame: object) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        tqdm.write(f"Interrupted ({signal.Signals(signum).name}): finishing the current step, then saving a "
                   "checkpoint (Ctrl-C again to abort)")

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


def resume_settings(args: argparse.Namespace, state: dict, explicit: set[str], path: str) -> list[str]:
    """Take the run's settings from its checkpoint: the training ones always, the folders unless given
    again. Returns a warning for each flag given now that the resumed run cannot honour."""
    if state.get("kind") == "weights":
        raise CheckpointError(f"{path} holds weights only (e.g. torch.save(net.state_dict())): it can be used "
                              "with predict.py, but a run cannot be resumed from it (no optimizer or schedule)")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written by an earlier version of train.py ({state['format']}): predict.py, "
                              "export and the page still use it, but its run cannot be resumed; train again")
    kinds = {"epoch": int, "history": dict, "settings": dict, "optimizer": dict, "scheduler": dict}
    wrong = [key for key, kind in kinds.items() if not isinstance(state.get(key), kind)]
    wrong += ["partial"] * (state.get("partial") is not None and not isinstance(state["partial"], dict))
    wrong += [f"settings.{key}" for key in TRAINING_KEYS if key not in (state.get("settings") or {})][:3]
    if wrong:
        raise CheckpointError(f"{path} holds fields of the wrong kind or none ({', '.join(wrong)}): not as train.py "
                              "writes them, so its run cannot be resumed; predict.py may still use its weights")
    saved = state["settings"]
    warnings = [f"--{key.replace('_', '-')} {getattr(args, key)} is ignored on --resume: the run continues "
                f"with its own {key}={saved[key]}"
                for key in TRAINING_KEYS if key in explicit and getattr(args, key) != saved[key]]
    vars(args).update({k: v for k, v in saved.items() if k in TRAINING_KEYS
                       or (k in PLACE_KEYS and k not in explicit)})
    try:
        pick_device(args.device)
    except ValueError:
        raise CheckpointError(f"{path} was trained on {args.device}, which this machine does not have: add "
                              "--device cpu (or auto) to continue it here") from None
    return warnings


def main(argv: list[str] | None = None) -> int:
    """The command line: returns the exit status (0 done, 1 failed or diverged, 2 usage, 130 after Ctrl-C, 143 after
    SIGTERM: both save a checkpoint first)."""
    try:
        return run(argv)[0]
    except ValueError as exc:  # a setting that only the data can check, e.g. --val larger than the training set
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except (MnistError, CheckpointError, OSError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", 1)


def run(argv: list[str] | None = None, kind: str = "train", *, record: dict | None = None,
        on_epoch: Callable[[utils.History], str | None] | None = None) -> tuple[int, runs.RunFiles | None]:
    """Train as the command line would; returns (exit status, the run's files). The notebook calls this.

    ``kind`` is recorded in the run's JSON (train, bench, tuning; a --dry-run is always "dry-run"), with ``record``
    (e.g. a tuning trial's study and number). ``on_epoch(history)`` is called after each evaluated epoch: a reason
    returned stops the run there (a tuner pruning a trial)."""
    args = parse_args(argv)
    command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
    warnings, explicit = [], explicit_flags(argv)
    resume_state = load_checkpoint(args.resume) if args.resume else None
    if resume_state is not None:
        load_model_state(Net(), resume_state, args.resume)  # another architecture or NaN weights: stop here
        warnings = resume_settings(args, resume_state, explicit, args.resume)
        if resume_state["epoch"] >= args.epochs and not resume_state["partial"]:
            print(f"Nothing to train: {args.resume} finished all {args.epochs:g} epochs of its run. To train "
                  "longer, start a new run with --epochs N.")
            return 0, None
    if args.amp == "fp16" and pick_device(args.device).type == "cpu":
        warnings.append("--amp fp16 on a CPU is emulated and about 40x slower than --amp bf16 or off")
    if args.dry_run:
        kind, args.save_model, args.epochs, args.tensorboard = "dry-run", False, 1, False
    if "tensorboard" in explicit and args.tensorboard and not runs.tensorboard_installed():
        warnings.append("--tensorboard: the tensorboard package is not installed here, so this run writes no "
                        "TensorBoard events (pip install -r requirements-tensorboard.txt)")
    device = pick_device(args.device)
    args.device = device.type  # recorded as what it resolved to, so that --resume continues on the same device
    amp_dtype = autocast_dtype(device, args.amp)
    seed_everything(args.seed)
    remove_stale_temp_files(args.checkpoint_dir)
    split = "val" if args.val else "test"
    label = "-".join(filter(None, [args.name, args.dry_run and "dry-run"]))
    if resume_state is not None and resume_state.get("run_id"):  # the same run goes on: one id, one set of files
        files = runs.continue_run(resume_state["run_id"], args.log_dir, args.resume)
        started = runs.read_run_info(files.info)
        kind, resumed_with = started.get("kind", kind), [*started.get("resumed_with", []), command]
        first_command = started.get("command", command)
    else:
        files, resumed_with, first_command = runs.new_run(args.log_dir, args.checkpoint_dir, label), [], command
    try:
        runs.write_run_info(files, kind=kind, command=first_command, split=split, resumed_with=resumed_with,
                            **(record or {}), settings={k: v for k, v in sorted(vars(args).items())})
        with runs.RunLog(files.log) as log, runs.RunBoard(files.tensorboard if args.tensorboard else None) as board:
            try:
                return train_run(args, files=files, log=log, device=device, amp_dtype=amp_dtype, split=split,
                                 resume_state=resume_state, command=command, warnings=warnings, board=board,
                                 on_epoch=on_epoch), files
            except (ValueError, MnistError, CheckpointError, OSError) as exc:
                log(f"ERROR: {exc}")
                raise
            except Exception:
                log("ERROR: training crashed:\n" + traceback.format_exc())
                raise
    finally:
        files.release()


def train_run(args: argparse.Namespace, *, files: runs.RunFiles, log: runs.RunLog, device: torch.device,
              amp_dtype: torch.dtype | None, split: str, resume_state: dict | None, command: str,
              warnings: list[str], board: runs.RunBoard,
              on_epoch: Callable[[utils.History], str | None] | None = None) -> int:
    """The run itself, once its files exist: data, model, optimizer, then the epoch loop."""
    log(f"Run {files.run_id}: {command}" if resume_state is None else f"Run {files.run_id} continues: {command}")
    for warning in warnings:
        log(f"WARNING: {warning}")
    log("Settings: " + ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    log(f"Device: {device}, autocast: {amp_dtype or 'off'}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}")
    data = load_mnist(args.data_dir, device, val_size=args.val, md5s=None if args.no_verify else MNIST_MD5, log=log)
    eval_images, eval_labels = (data.val_images, data.val_labels) if args.val else (data.test_images, data.test_labels)
    train_images, train_labels = data.train_images, data.train_labels
    if args.dry_run:
        train_images, train_labels = train_images[: 2 * args.batch_size], train_labels[: 2 * args.batch_size]
        eval_images, eval_labels = eval_images[: args.test_batch_size], eval_labels[: args.test_batch_size]
    split_name = utils.SPLITS[split]
    log(f"Train images: {len(train_images)}, {split_name.lower()} images: {len(eval_images)}")

    font_digits = None
    if args.font_digits:
        font_digits = load_font_digits(args.data_dir, device)
        log(f"Font digits: {len(font_digits[0])} from {font_digits_dir(args.data_dir)}, "
            f"{args.font_digits:.0%} of the training images")
    augment = utils.Augment.from_settings(vars(args))
    train_loader = utils.DeviceLoader(train_images, train_labels, args.batch_size, shuffle=True, augment=augment,
                                      seed=args.seed, chunk=augment_chunk(device, args.batch_size),
                                      extra=font_digits, extra_share=args.font_digits)
    eval_loader = utils.DeviceLoader(eval_images, eval_labels, args.test_batch_size)
    model = Net().to(device, memory_format=torch.channels_last)
    log(f"Net: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters")
    optimizer = make_optimizer(model, args.optimizer, lr=args.lr, momentum=args.momentum,
                                     weight_decay=args.weight_decay)
    schedule = utils.make_schedule(args.scheduler, optimizer, epochs=args.epochs, steps_per_epoch=len(train_loader),
                                   step_size=args.step_size, gamma=args.gamma)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # one per run, saved with it
    history, start_epoch, partial = utils.History(split=split), 1, None
    if resume_state is not None:
        if schedule.per_batch and resume_state["scheduler"].get("total_steps") != schedule.scheduler.total_steps:
            raise CheckpointError(f"{args.resume} was trained with {resume_state['scheduler'].get('total_steps')} "
                                  f"scheduled steps, these data and flags give {schedule.scheduler.total_steps}: "
                                  "resume with the run's own --data-dir (leave it out to use the saved one)")
        load_model_state(model, resume_state, args.resume)
        optimizer.load_state_dict(resume_state["optimizer"])
        schedule.scheduler.load_state_dict(resume_state["scheduler"])
        if resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        history = utils.History.from_dict(resume_state["history"])
        start_epoch = resume_state["epoch"] + 1
        partial = utils.EpochTotals(**resume_state["partial"]) if resume_state["partial"] else None
        log(f"Resumed from {args.resume} at epoch {start_epoch}, batch {partial.batches if partial else 0}")
        utils.write_history_csv(files.csv, history)

    def checkpoint(epoch: int, partial_totals: utils.EpochTotals | None = None) -> None:
        save_checkpoint(files.checkpoint, model=model, optimizer=optimizer, scheduler=schedule.scheduler,
                        scaler=scaler, epoch=epoch, history=history.to_dict(), settings=vars(args),
                        augment=asdict(augment), partial=vars(partial_totals) if partial_totals else None,
                        run_id=files.run_id)

    if device.type == "cuda":
        log(f"CUDA warm-up: {warm_up(args, model, train_loader, eval_loader, amp_dtype):.1f} s on a copy of the Net "
            "(kernels load on first use; not counted as training time)")
    plan = utils.epoch_batches(args.epochs, len(train_loader))  # batches per epoch; a fractional last one is short
    with stop_on_signals() as should_stop:
        for epoch in range(start_epoch, len(plan) + 1):
            planned = plan[epoch - 1]
            part = f", {planned} of its {len(train_loader)} batches" if planned < len(train_loader) else ""
            log(f"Epoch {epoch} (learning rate {optimizer.param_groups[0]['lr']:.4e}{part})")
            start = time.perf_counter()
            try:
                totals = utils.train(model, train_loader, optimizer, epoch=epoch,
                                     schedule=schedule, amp_dtype=amp_dtype, scaler=scaler,
                                     label_smoothing=args.label_smoothing, totals=partial, should_stop=should_stop,
                                     log=log, progress=args.progress, n_batches=planned)
            except utils.NonFiniteLossError as exc:
                kept = (f"the last good checkpoint is {files.checkpoint}" if files.checkpoint.exists() else
                        "no checkpoint of this run was saved: it diverged before its first epoch ended")
                log(f"ERROR: {exc}")
                log(kept[0].upper() + kept[1:])
                print(f"train.py: error: {exc} ({kept})", file=sys.stderr)
                return 1
            seconds = time.perf_counter() - start
            partial = None
            if totals.batches < planned:
                checkpoint(epoch - 1, totals)
                resume = shlex.join(["python", "train.py", "--resume", str(files.checkpoint)])
                log(f"Interrupted at epoch {epoch}, batch {totals.batches}/{planned}. "
                    f"Checkpoint: {files.checkpoint}. Continue with: {resume}")
                return 128 + (signal.SIGTERM if should_stop() == signal.SIGTERM else signal.SIGINT)  # 143 or 130
            result = utils.test(model, eval_loader, log, split)
            history.append(round(epoch - 1 + planned / len(train_loader), 4), totals, result, seconds)
            if args.save_model:  # the checkpoint first: a CSV row never claims an epoch that was not saved
                checkpoint(epoch)
            utils.write_history_csv(files.csv, history)
            board.epoch(history, step=sum(plan[:epoch]))  # TensorBoard's step axis: training batches so far
            if on_epoch is not None and (reason := on_epoch(history)):
                log(f"Stopped after epoch {history.epoch[-1]:g}: {reason}")
                return 0
    board.finish(history, result, step=sum(plan), settings={key: getattr(args, key) for key in TRAINING_KEYS})
    log(f"Final {split_name.lower()} accuracy: {history.eval_acc[-1]:.2f}% "
        f"({history.eval_correct[-1]}/{history.eval_total[-1]}) after {history.epoch[-1]:g} epochs, "
        f"{sum(history.seconds):.1f} s of training")
    log(f"Logs: {files.log}, {files.csv}" + (f"; checkpoint: {files.checkpoint}" if args.save_model else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
