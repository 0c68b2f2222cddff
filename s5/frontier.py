"""Time to accuracy: how many training seconds a recipe, or a published peer on the same Net, needs
to reach a test accuracy. A run trains through ``training.one_epoch`` (the very loop ``train``
runs) and is evaluated on the test set at a fixed schedule of training-image counts; the seconds
spent evaluating are kept apart. ``python -m tools.frontier`` writes the record
(logs/frontier-<date>.json) and renders its report and picture from it."""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

import torch
from torch import nn

import utils
from model import Net
from s5 import training
from s5.mnist import MnistData
from s5.recipes import Settings

TARGETS = (99.0, 99.5, 99.7)  # test accuracy, %
FINE_STEP = Fraction(1, 20)  # evaluate every 0.05 epoch in the first epoch,
STEP = Fraction(1, 4)  # then every 0.25 epoch
# Student's t, two-sided 95% (the 0.975 quantile), for 1..30 degrees of freedom; beyond, the normal
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
         2.056, 2.052, 2.048, 2.045, 2.042)


def schedule(train_images: int, epochs: float) -> list[int]:
    """The training-image counts to evaluate at, up to ``epochs`` epochs: every 0.05 epoch in the
    first epoch, then every 0.25 epoch."""
    fractions = [FINE_STEP * k for k in range(1, round(1 / FINE_STEP) + 1)]
    fractions += [1 + STEP * k for k in range(1, math.ceil((epochs - 1) / STEP) + 1)]
    return [round(f * train_images) for f in fractions if f <= epochs]


def sync(device: torch.device) -> None:
    """Wait for the device: a clock read on CUDA must not run ahead of the queued kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Probe:
    """``utils.train``'s ``after_step``: at the first step that reaches each scheduled image count,
    and at each epoch's end, it stops the training clock, notes the count and evaluates. Training
    seconds accrue only between evaluations."""

    run: training.Run
    points: list[int]  # scheduled image counts not reached yet, ascending
    epoch: int = 1
    trained: float = 0.0  # training seconds so far
    since: float = 0.0  # when the clock last started
    images: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    def start(self, epoch: int) -> None:
        """Start the clock as epoch ``epoch`` begins."""
        self.epoch = epoch
        self.resume()

    def resume(self) -> None:
        sync(self.run.device)
        self.since = time.perf_counter()

    def __call__(self, batches: int) -> None:
        loader, run = self.run.train_loader, self.run
        n = len(loader.images)
        seen = (self.epoch - 1) * n + min(batches * loader.batch_size, n)
        epoch_end = batches == run.plan[self.epoch - 1]
        if not epoch_end and (not self.points or seen < self.points[0]):
            return
        sync(run.device)
        self.trained += time.perf_counter() - self.since
        self.points = [p for p in self.points if p > seen]
        self.images.append(seen)
        self.seconds.append(self.trained)
        if epoch_end:  # one_epoch evaluates it; the clock restarts with the next epoch
            return
        self.accuracy.append(utils.test(run.model, run.eval_loader).accuracy)
        run.model.train()
        self.resume()


def warm_up(run: training.Run) -> None:
    """Two training steps and one evaluation batch on throwaway copies of the Net and optimizer:
    kernels are set up on first use (oneDNN's too), and the first run measured must not pay for
    the others. The run's own Net, optimizer and random numbers are untouched."""
    model, optimizer = copy.deepcopy((run.model, run.optimizer))  # together: the same parameters
    loader, n, m = run.train_loader, 2 * run.train_loader.batch_size, run.eval_loader.batch_size
    probe = utils.DeviceLoader(loader.images[:n], loader.labels[:n], loader.batch_size,
                               shuffle=loader.shuffle, augment=loader.augment, chunk=loader.chunk)
    utils.train(model, probe, optimizer, epoch=0, amp_dtype=run.amp_dtype,
                label_smoothing=run.settings.label_smoothing, progress=False)
    evaluation = run.eval_loader
    utils.test(model, utils.DeviceLoader(evaluation.images[:m], evaluation.labels[:m], m))
    sync(run.device)


def measure(run: training.Run) -> dict:
    """Warm up, then train ``run``'s planned epochs with a ``Probe``; a record of its evaluations:
    images seen, epochs, training seconds so far and test accuracy (%) at each, and the seconds
    spent beside training (evaluation, bookkeeping)."""
    warm_up(run)
    n = len(run.train_loader.images)
    probe = Probe(run, schedule(n, sum(run.plan) / len(run.train_loader)))
    run.after_step = probe
    start = time.perf_counter()
    for epoch in range(1, len(run.plan) + 1):
        probe.start(epoch)
        training.one_epoch(run, epoch, should_stop=lambda: False)
        probe.accuracy.append(run.history.eval_acc[-1])
    wall = time.perf_counter() - start
    return {"seed": run.settings.seed, "images": probe.images,
            "epoch": [round(i / n, 4) for i in probe.images], "seconds": probe.seconds,
            "accuracy": probe.accuracy, "eval_seconds": wall - probe.trained}


def quiet(message: str) -> None:
    """A run log that keeps nothing: the benchmark's table is its output."""


def recipe_run(settings: Settings, *, device: str = "auto", data_dir: str = "data",
               verify: bool = True, max_epochs: float | None = None) -> training.Run:
    """A run of ``settings`` set up as ``training.train`` sets it up (seed, data, loaders, Net,
    optimizer, schedule), without its files; ``max_epochs`` stops it early, its schedule kept."""
    settings = settings.check()
    where = training.pick_device(device)
    places = training.Places(where.type, str(data_dir), verify, tensorboard=False,
                             save_model=False)
    run = training.Run(settings, places, files=None, log=quiet, board=None, device=where,
                       amp_dtype=training.autocast_dtype(where, settings.amp), dry_run=False,
                       progress=False)
    training.seed_everything(settings.seed)
    training.prepare(run)
    if max_epochs is not None:
        run.plan = utils.epoch_batches(min(settings.epochs, max_epochs), len(run.train_loader))
    return run


# Peers: published recipes, on the seed Net, written from their descriptions

Parts = Callable[[nn.Module, int], tuple[torch.optim.Optimizer, utils.Schedule]]


@dataclass(frozen=True)
class Peer:
    """A published recipe: its batches and the optimizer and schedule ``parts(model, total
    steps)`` builds; no augmentation, NLL loss, MNIST's Normalize (the loader's)."""

    name: str
    source: str
    description: str
    epochs: float
    batch_size: int
    shuffle: bool
    parts: Parts


def examples_parts(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, utils.Schedule]:
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    return optimizer, utils.Schedule(step, per_batch=False)


def onesecond_parts(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, utils.Schedule]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.7, 0.9))
    cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps,
                                                cycle_momentum=False)
    return optimizer, utils.Schedule(cycle, per_batch=True)


PEERS = {
    "examples": Peer("examples", "github.com/pytorch/examples, mnist/main.py",
                     "Adadelta lr 1.0, StepLR(step_size=1, gamma=0.7) per epoch, batch 64, "
                     "shuffled, no augmentation, NLL loss, 14 epochs", 14, 64, True,
                     examples_parts),
    "onesecond": Peer("onesecond", "github.com/tuomaso/train_mnist_fast, 8_Final_00s76.ipynb",
                      "one epoch in file order, batch 256, Adam lr 1e-2 betas (0.7, 0.9), "
                      "OneCycleLR over the epoch (cycle_momentum=False), no augmentation, NLL loss",
                      1, 256, False, onesecond_parts),
}


def peer_run(peer: Peer, data: MnistData, *, seed: int, device: torch.device,
             amp_dtype: torch.dtype | None, max_epochs: float | None = None) -> training.Run:
    """A run of ``peer`` on the seed Net over ``data`` (on ``device``), seeded as a recipe's run;
    ``max_epochs`` stops it early, its schedule kept."""
    # one_epoch reads the label smoothing (none: NLL) and the split of these; the peer's parts
    # are its own
    settings = Settings(recipe=peer.name, epochs=peer.epochs, batch_size=peer.batch_size,
                        label_smoothing=0.0, seed=seed)
    places = training.Places(device.type, tensorboard=False, save_model=False)
    run = training.Run(settings, places, files=None, log=quiet, board=None, device=device,
                       amp_dtype=amp_dtype, dry_run=False, progress=False)
    training.seed_everything(seed)
    run.train_loader = utils.DeviceLoader(data.train_images, data.train_labels, peer.batch_size,
                                          shuffle=peer.shuffle, seed=seed)
    run.eval_loader = utils.DeviceLoader(data.test_images, data.test_labels,
                                         settings.test_batch_size)
    run.model = Net().to(device, memory_format=torch.channels_last)
    steps = len(run.train_loader)
    run.optimizer, run.schedule = peer.parts(run.model, sum(utils.epoch_batches(peer.epochs,
                                                                                steps)))
    run.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    run.history = utils.History()
    epochs = peer.epochs if max_epochs is None else min(peer.epochs, max_epochs)
    run.plan = utils.epoch_batches(epochs, steps)
    return run


# Statistics over seeds


def seconds_to(run: dict, target: float) -> float | None:
    """Training seconds at the first evaluation that reached ``target`` % (None: none did)."""
    return next((s for s, a in zip(run["seconds"], run["accuracy"], strict=True) if a >= target),
                None)


def t_quantile(df: int) -> float:
    """Student's t 0.975 quantile for ``df`` degrees of freedom (the normal's beyond 30)."""
    return T_975[df - 1] if df <= len(T_975) else 1.960


def summarize(runs: list[dict], targets: tuple[float, ...] = TARGETS) -> dict:
    """Over a recipe's seeds: per target, the mean and standard deviation of the training seconds
    to reach it (over the seeds that did; None where fewer than one or two did) and the fraction
    that did; the mean final accuracy with its 95% confidence half-width (Student's t; None for a
    single seed); mean training and evaluation seconds."""
    n, finals = len(runs), [r["accuracy"][-1] for r in runs]
    goals = []
    for target in targets:
        times = [t for r in runs if (t := seconds_to(r, target)) is not None]
        goals.append({"target": target, "reached": len(times) / n,
                      "mean_s": statistics.fmean(times) if times else None,
                      "std_s": statistics.stdev(times) if len(times) > 1 else None})
    half = t_quantile(n - 1) * statistics.stdev(finals) / math.sqrt(n) if n > 1 else None
    return {"seeds": n, "targets": goals, "final": statistics.fmean(finals), "final_ci95": half,
            "epochs": max(r["epoch"][-1] for r in runs),
            "train_s": statistics.fmean(r["seconds"][-1] for r in runs),
            "eval_s": statistics.fmean(r["eval_seconds"] for r in runs)}


def mean_curve(runs: list[dict]) -> tuple[list[float], list[float]]:
    """Mean training seconds and mean accuracy at each evaluation the seeds share (the same
    schedule: the same points)."""
    length = min(len(r["seconds"]) for r in runs)
    return ([statistics.fmean(r["seconds"][i] for r in runs) for i in range(length)],
            [statistics.fmean(r["accuracy"][i] for r in runs) for i in range(length)])


# The report, from the record alone


def format_goal(goal: dict, seeds: int) -> str:
    """A table cell: mean ± std seconds to a target, and how many seeds reached it."""
    count = f"{round(goal['reached'] * seeds)}/{seeds}"
    if goal["mean_s"] is None:
        return f"— ({count})"
    spread = f" ± {goal['std_s']:.2f}" if goal["std_s"] is not None else ""
    return f"{goal['mean_s']:.2f}{spread} s ({count})"


def summary_table(record: dict) -> list[str]:
    """The table of every recipe and peer of a record: a row each."""
    targets = record["targets"]
    lines = ["| recipe or peer | seeds | epochs | final test accuracy (95% CI) | "
             + " | ".join(f"s to {t:.1f}% (reached)" for t in targets) + " | train s | eval s |",
             "|---|---:|---:|---:|" + "---:|" * (len(targets) + 2)]
    for name, entry in record["entries"].items():
        s = entry["summary"]
        ci = f" ± {s['final_ci95']:.2f}" if s["final_ci95"] is not None else ""
        goals = " | ".join(format_goal(g, s["seeds"]) for g in s["targets"])
        lines.append(f"| {entry['kind']} `{name}` | {s['seeds']} | {s['epochs']:g} | "
                     f"{s['final']:.2f}%{ci} | {goals} | {s['train_s']:.2f} | {s['eval_s']:.2f} |")
    return lines


def format_report(record: dict) -> str:
    """The markdown report of a time-to-accuracy record."""
    started = datetime.fromisoformat(record["started"])
    cap = (f"; every run stopped after at most {record['max_epochs']:g} epochs (its schedule "
           "kept)" if record["max_epochs"] is not None else "")
    lines = [f"### Time to accuracy {started:%Y-%m-%d %H:%M}", "",
             f"- Machine: **{record['machine']}** ({record['device']}); torch {record['torch']}; "
             f"autocast: {record['precision']} (recipes and peers alike); load average (1 min) "
             f"before / after: {record['load'][0]:.2f} / {record['load'][1]:.2f}",
             f"- Command: `{record['command']}`",
             f"- Test set ({record['test_images']:,} images) evaluated every "
             f"{record['fine_step']:g} epoch in the first epoch, then every {record['step']:g} "
             "epoch, and at each epoch's end; training seconds leave the evaluations out (their "
             f"seconds: eval s){cap}. Seconds to a target: mean ± standard deviation over the "
             "seeds that reached it.", "", *summary_table(record), ""]
    for name, entry in record["entries"].items():
        lines.append(f"- {entry['kind']} `{name}`: {entry['description']}")
    text = "\n".join(lines) + "\n"
    if record["picture"]:
        text += f"\n![test accuracy against training seconds]({record['picture']})\n"
    return text
