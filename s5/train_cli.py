"""train.py's command line: flags become a ``Settings`` value and keyword arguments of
``training.train`` (or ``training.resume``), and the run's outcome an exit status."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass

from s5 import runs, training
from s5.checkpoint import CheckpointError, no_checkpoint_file
from s5.cli import bounded, fail, program, run_name
from s5.mnist import MnistError
from s5.recipes import DEFAULT, RECIPES, TRAINING_KEYS, Settings

PROG = program("train.py")
DESCRIPTION = """Train the Week 5 Net on MNIST. Every setting is a flag over a named recipe
(--recipe seed: the original assignment's). A run writes logs/<run-id>.log, .csv and .json and
checkpoints/<run-id>.pt."""
# The flags that say where a run runs and writes (training.train's keyword arguments).
PLACE_FLAGS = ("device", "data_dir", "verify", "log_dir", "checkpoint_dir", "tensorboard",
               "save_model")


def recipe_default(key: str) -> str:
    return f" [default recipe: {getattr(DEFAULT, key)}]"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    positive, count = bounded(int, 1, 60_000), bounded(int, 0, 60_000)  # MNIST's size at most
    fraction = bounded(float, 0, 1, high_open=True)
    recipe_flags = [
        ("--epochs", bounded(float, 0, 1000, low_open=True), "epochs to train; a fraction trains "
         "part of the last one (0.5: half of the training set)"),
        ("--batch-size", positive, "training batch size"),
        ("--lr", bounded(float, 0, 10, low_open=True), "learning rate (the peak of OneCycle)"),
        ("--momentum", fraction, "SGD and Muon momentum"),
        ("--weight-decay", bounded(float, 0, 1), "L2 weight decay"),
        ("--optimizer", ("sgd", "adamw", "muon"), "muon: see s5/muon.py"),
        ("--scheduler", ("step", "onecycle"), "StepLR per epoch or OneCycleLR per batch"),
        ("--step-size", bounded(int, 1, 1000), "StepLR: epochs between decays"),
        ("--gamma", bounded(float, 0, 1, low_open=True), "StepLR: decay factor"),
        ("--label-smoothing", fraction, "label smoothing of the NLL loss"),
        ("--degrees", bounded(float, 0, 180), "augmentation: random rotation range ±degrees"),
        ("--crop-p", bounded(float, 0, 1), "augmentation: probability of CenterCrop(22) + resize"),
        ("--translate", bounded(float, 0, 0.5), "augmentation: random shift, fraction of a side"),
        ("--scale-min", bounded(float, 0.25, 4), "augmentation: random zoom lower bound"),
        ("--scale-max", bounded(float, 0.25, 4), "augmentation: random zoom upper bound"),
        ("--lowres", fraction, "augmentation: fraction of images seen at 10-20 px, enlarged again"),
        ("--font-digits", fraction, "fraction of training images swapped for digits of handwriting "
         "fonts (built by `make font-digits` into <data-dir>/font-digits)"),
        ("--seed", bounded(int, 0, 2**63 - 1), "random seed (same seed and machine, same numbers)"),
        ("--amp", ("auto", "bf16", "fp16", "off"), "mixed precision; auto = bf16 where native"),
        ("--val", count, "hold out the last N training images and evaluate on them, not the test "
         "set"),
        ("--test-batch-size", positive, "evaluation batch size"),
    ]
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a named set of settings for the flags below; flags given still win "
                        "[default: gpu on a CUDA GPU, default elsewhere]")
    for flag, kind, text in recipe_flags:
        key = flag[2:].replace("-", "_")
        typed = {"choices": kind} if isinstance(kind, tuple) else {"type": kind}
        p.add_argument(flag, **typed, help=text + recipe_default(key),
                       metavar="N" if key == "val" else None)
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), help="[default: auto]")
    p.add_argument("--data-dir",
                   help="MNIST lives in <data-dir>/MNIST/raw (torchvision layout) [default: data]")
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                   help="use the files in --data-dir as they are, without the standard md5 check")
    p.add_argument("--log-dir", help="[default: logs]")
    p.add_argument("--checkpoint-dir", help="[default: checkpoints]")
    p.add_argument("--save-model", action=argparse.BooleanOptionalAction,
                   help="save checkpoints/<run-id>.pt after every epoch [default: yes]")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction,
                   help="also write TensorBoard events to <log-dir>/tensorboard/<run-id>/ where "
                        "the tensorboard package is installed [default: yes]")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="one epoch of two batches, no checkpoint: checks the whole pipeline")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the tqdm bars")
    p.add_argument("--name", type=run_name, help="a label added to the run id")
    return p


@dataclass(frozen=True)
class Command:
    """What the flags ask for: the settings to train with, those given explicitly, and where the run
    goes."""

    settings: Settings
    asked: dict  # the training settings given as flags
    places: dict  # training.train's place keywords given as flags
    resume: str | None
    dry_run: bool
    progress: bool
    name: str | None


def parse(argv: list[str] | None = None) -> Command:
    """Parse and check every flag; a bad one ends the program with one argparse line (exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    asked = {key: getattr(args, key) for key in TRAINING_KEYS if getattr(args, key) is not None}
    places = {key: getattr(args, key) for key in PLACE_FLAGS if getattr(args, key) is not None}
    recipe = args.recipe or training.default_recipe(args.device or "auto")
    settings = RECIPES[recipe].replace(**{k: v for k, v in asked.items() if k != "recipe"})
    if settings.scale_min > settings.scale_max:
        parser.error(f"--scale-min {settings.scale_min:g} is above --scale-max "
                     f"{settings.scale_max:g}")
    if args.resume and (problem := no_checkpoint_file(args.resume)):
        parser.error(f"--resume {problem}")
    if args.resume and args.dry_run:
        parser.error("--dry-run cannot be combined with --resume: a dry run trains two batches "
                     "of a fresh Net")
    try:
        training.pick_device(args.device or "auto")
    except ValueError as exc:
        parser.error(str(exc))
    return Command(settings, asked, places, args.resume, args.dry_run, args.progress, args.name)


def run(argv: list[str] | None = None) -> training.Result:
    """Train as the command line asks; returns the run's result."""
    command = parse(argv)
    line = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
    warnings = []
    if command.places.get("tensorboard") and not runs.tensorboard_installed():
        warnings.append("--tensorboard: the tensorboard package is not installed here, so this run "
                        "writes no TensorBoard events (pip install -r "
                        "requirements-tensorboard.txt)")
    if command.resume:
        places = {k: v for k, v in command.places.items() if k != "save_model"}
        return training.resume(command.resume, **places, progress=command.progress,
                               asked=command.asked, command=line, warnings=tuple(warnings))
    return training.train(command.settings, **command.places, progress=command.progress,
                          name=command.name, dry_run=command.dry_run, command=line,
                          warnings=tuple(warnings))


def outcome(result: training.Result) -> int:
    """Say how a run ended, where the user should read it, and return train.py's exit status."""
    if result.status == "diverged":
        return fail(PROG, result.message, result.exit_status)
    if result.status == "done":
        print(result.message)
    return result.exit_status


def main(argv: list[str] | None = None) -> int:
    """The command line: returns the exit status (0 done, 1 failed or diverged, 2 usage, 130 after
    Ctrl-C, 143 after SIGTERM: both save a checkpoint first)."""
    try:
        with training.abort_on_signals():  # SIGTERM while parsing: one line, not a silent 143
            return outcome(run(argv))
    except training.Interrupted as exc:  # before the run's log was open to say it
        return fail(PROG, f"interrupted ({exc}) before training started: nothing was trained or "
                          "saved", 128 + exc.signum)
    except KeyboardInterrupt:  # a second Ctrl-C during training: the claim is released already
        return fail(PROG, "aborted by a second Ctrl-C: the run keeps its last checkpoint", 130)
    except ValueError as exc:  # what only the data can check, e.g. --val above the training set
        return fail(PROG, exc, 2)
    except (MnistError, CheckpointError, OSError) as exc:
        return fail(PROG, exc, getattr(exc, "exit_status", 1))
