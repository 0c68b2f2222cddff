"""Time to accuracy on one device: the training seconds each recipe, and each published peer on the
same Net, needs to reach 99.0%, 99.5% and 99.7% test accuracy, over seeds. The record is
logs/frontier-<date>.json; its markdown report and picture are rendered from it.

    python -m tools.frontier                                  # fast and default, both peers
    python -m tools.frontier --recipes fast --peers onesecond --seeds 2 --max-epochs 0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path

import matplotlib.ticker
import torch
from matplotlib.figure import Figure

import utils
from s5 import frontier, training
from s5.benchmarks import write_record
from s5.cli import UsageError, add_data_arguments, bounded, fail, program
from s5.mnist import MNIST_MD5, MnistError, load_mnist
from s5.recipes import RECIPES
from s5.report import check_writable
from tools.bench import machine_name

PROG = program("tools.frontier")
QUICK_RUN_S = 60.0  # a recipe whose first seed trained in less gets 10 seeds by default, else 5


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="*", choices=sorted(RECIPES),
                   help="default: fast and default (gpu-fast and gpu on a CUDA GPU); none: peers "
                        "only")
    p.add_argument("--peers", nargs="*", choices=sorted(frontier.PEERS),
                   default=list(frontier.PEERS), help="default: all; none: recipes only")
    p.add_argument("--seeds", type=bounded(int, 1, 1000),
                   help=f"seeds 1..N of each (default: 10 where the first trained in under "
                        f"{QUICK_RUN_S:g} s, else 5)")
    p.add_argument("--max-epochs", type=bounded(float, 0, low_open=True),
                   help="stop every run after this many epochs (its schedule kept)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                   help="autocast of recipes and peers alike [default: auto, the recipes' own]")
    p.add_argument("--log-dir", default="logs")
    add_data_arguments(p)
    return p


def row(name: str, run: dict) -> str:
    """One seed's line of the running table."""
    times = " ".join(f"{t:>7.2f}" if (t := frontier.seconds_to(run, goal)) is not None
                     else f"{'—':>7}" for goal in frontier.TARGETS)
    return (f"{name:<20} {run['seed']:>4} {run['epoch'][-1]:>6g} {run['accuracy'][-1]:>7.2f} "
            f"{times} {run['seconds'][-1]:>8.2f} {run['eval_seconds']:>7.2f}")


def header() -> str:
    goals = " ".join(f"{f'to {t:.1f}':>7}" for t in frontier.TARGETS)
    return f"{'recipe or peer':<20} {'seed':>4} {'epochs':>6} {'final%':>7} {goals} " \
           f"{'train s':>8} {'eval s':>7}"


def over_seeds(name: str, measure_seed, seeds: int | None) -> list[dict]:
    """``measure_seed(seed)`` for seeds 1..``seeds`` (None: 10 or 5, by the first seed's
    training seconds), each printed as it ends."""
    runs = [measure_seed(1)]
    print(row(name, runs[0]), flush=True)
    count = seeds or (10 if runs[0]["seconds"][-1] < QUICK_RUN_S else 5)
    for seed in range(2, count + 1):
        runs.append(measure_seed(seed))
        print(row(name, runs[-1]), flush=True)
    return runs


def plot(record: dict, save: Path | None) -> Figure:
    """Test accuracy against training seconds: every seed's curve faint, the mean bold, a colour
    per recipe or peer, the targets as lines."""
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    for k, (name, entry) in enumerate(record["entries"].items()):
        colour = f"C{k % 10}"
        for run in entry["runs"]:
            ax.plot(run["seconds"], run["accuracy"], color=colour, alpha=0.2, linewidth=0.8)
        seconds, accuracy = frontier.mean_curve(entry["runs"])
        ax.plot(seconds, accuracy, color=colour, linewidth=2.2,
                label=f"{entry['kind']} {name} (mean of {len(entry['runs'])})")
    for target in record["targets"]:
        ax.axhline(target, color="grey", linewidth=0.7, linestyle="--")
        ax.text(1.005, target, f"{target:.1f}%", transform=ax.get_yaxis_transform(), va="center",
                fontsize=8, color="grey")
    ax.set(xscale="log", ylim=(97.0, 100.0), xlabel="training seconds (log scale)",
           ylabel="test accuracy (%)",
           title=f"{record['machine']}: test accuracy against training seconds")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return utils.save_figure(fig, save)


def describe(recipe: str) -> str:
    s = RECIPES[recipe]
    return (f"`python train.py --recipe {recipe} --seed N`: {s.epochs:g} epochs, batch "
            f"{s.batch_size}, {s.optimizer} lr {s.lr:g}, {s.scheduler}, label smoothing "
            f"{s.label_smoothing:g}, rotation ±{s.degrees:g}°")


def run_benchmark(args: argparse.Namespace, command: str) -> int:
    started = datetime.now()
    try:
        device = training.pick_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    recipes = args.recipes if args.recipes is not None else \
        (["gpu-fast", "gpu"] if device.type == "cuda" else ["fast", "default"])
    if not recipes and not args.peers:
        raise UsageError("nothing to measure: name a recipe or a peer")
    path = Path(args.log_dir) / f"frontier-{started:%Y%m%d-%H%M%S}.json"
    check_writable([path, path.with_suffix(".md"), path.with_suffix(".png")])
    md5s = None if args.no_verify else MNIST_MD5
    data = load_mnist(args.data_dir, device, md5s=md5s, log=lambda message: None)
    amp_dtype = training.autocast_dtype(device, args.amp)
    precision = str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32"
    load = os.getloadavg()[0]  # other work on the machine slows every run measured
    print(f"Time to accuracy on {machine_name(device)} ({device}), autocast {precision}\n"
          f"{header()}", flush=True)
    entries = {}
    for recipe in recipes:
        def measure_recipe(seed: int, recipe: str = recipe) -> dict:
            settings = RECIPES[recipe].replace(seed=seed, amp=args.amp)
            return frontier.measure(frontier.recipe_run(
                settings, device=args.device, data_dir=args.data_dir,
                verify=not args.no_verify, max_epochs=args.max_epochs))

        entries[recipe] = {"kind": "recipe", "description": describe(recipe),
                           "settings": dataclasses.asdict(RECIPES[recipe]),
                           "runs": over_seeds(recipe, measure_recipe, args.seeds)}
    for name in args.peers:
        peer = frontier.PEERS[name]

        def measure_peer(seed: int, peer: frontier.Peer = peer) -> dict:
            return frontier.measure(frontier.peer_run(peer, data, seed=seed, device=device,
                                                      amp_dtype=amp_dtype,
                                                      max_epochs=args.max_epochs))

        entries[name] = {"kind": "peer", "description": f"{peer.description} ({peer.source})",
                         "runs": over_seeds(name, measure_peer, args.seeds)}
    for entry in entries.values():
        entry["summary"] = frontier.summarize(entry["runs"])
    record = {"benchmark": "frontier", "started": started.isoformat(sep=" ", timespec="seconds"),
              "command": command, "machine": machine_name(device), "device": device.type,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "precision": precision,
              "targets": list(frontier.TARGETS), "fine_step": float(frontier.FINE_STEP),
              "step": float(frontier.STEP), "train_images": len(data.train_images),
              "test_images": len(data.test_images), "max_epochs": args.max_epochs,
              "load": [load, os.getloadavg()[0]], "entries": entries,
              "picture": path.with_suffix(".png").name}
    plot(record, path.with_suffix(".png"))
    report = write_record(record, path, frontier.format_report)
    print("\n" + "\n".join(frontier.summary_table(record)))
    print(f"\nReport: {report} (figures: {path}, picture: {path.with_suffix('.png')})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_benchmark(args, command)
    except (MnistError, OSError, ValueError, utils.NonFiniteLossError) as exc:
        return fail(PROG, exc, getattr(exc, "exit_status", 1))


if __name__ == "__main__":
    sys.exit(main())
