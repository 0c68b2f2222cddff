"""Benchmark: speed side by side on one device, then the default, fast and seed recipes over 3 seeds on the full MNIST.

    python -m tools.bench                # full: throughput + 3 seeds of each recipe; writes logs/bench-<date>[-cuda].md
    python -m tools.bench --device cuda  # on a GPU: the GPU recipes too, and a torch.compile row
    python -m tools.bench --quick        # seconds: proves the whole benchmark runs (used by the tests)
    python -m tools.bench --page         # the draw-a-digit page alone, end to end in Chromium: logs/bench-<date>-page.md

Throughput, same batch size (the device's recipe's), same device, same run:
  (a) the seed-style pipeline: torchvision PIL transforms in a DataLoader with 2 workers (as in Colab), fp32
  (b) a bare training step on ready tensors (forward, backward, optimizer step), our precision and layout
  (c) our training step: utils.train over the device loader with batched augmentation
  (d) on CUDA: (c) with torch.compile(model), its compile time reported apart (the package does not compile)
Every accuracy figure comes from a logged train.py run (logs/<run-id>.csv) on the full 10k test set.
Then inference on the CPU, as a user of the trained Net meets it (each part needs its optional extras and is skipped,
with the reason, without them): onnxruntime vs PyTorch images/s (export.py), the draw-a-digit page's
stroke-to-prediction time in headless Chromium (app.py; mouse-up to the new prediction in the page, the load average
beside it) and predict.py's folder images/s for small images and 500 px photos.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib.ticker
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

import utils
from model import Net
from s5 import checkpoint, digits, training
from s5.cli import bounded
from s5.constants import MNIST_MEAN, MNIST_STD
from s5.files import update_block
from s5.image import read_images, usable_cores
from s5.mnist import MNIST_MD5, MnistData, load_mnist
from utils import normalize


def seed_style_loader(data_dir: str, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """The seed's data pipeline: torchvision's MNIST dataset, PIL transforms, a DataLoader with workers."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomApply([transforms.CenterCrop(22)], p=0.1),
        transforms.Resize((28, 28)),
        transforms.RandomRotation((-15.0, 15.0), fill=0),
        transforms.ToTensor(),
        transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
    ])
    dataset = datasets.MNIST(data_dir, train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(step, batches, batch_size: int, device: torch.device, warmup: int) -> float:
    """Run ``step(batch)`` over ``batches`` (an iterator); time all but the first ``warmup`` steps."""
    count, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        step(batch)
        count += i >= warmup
    sync(device)
    return count * batch_size / (time.perf_counter() - start)


def measure_throughput(data: MnistData, args: argparse.Namespace, device: torch.device,
                       amp_dtype: torch.dtype | None) -> tuple[dict[str, float], float | None]:
    """img/s of (a) the seed-style pipeline, (b) a bare step on ready tensors, (c) our training step and, on
    CUDA, (d) ours with torch.compile plus its compile seconds."""
    bs, n, warmup = args.batch_size, args.steps, args.warmup
    results, compile_s = {}, None

    # (a) seed-style: PIL transforms in 2 DataLoader workers, NCHW fp32 (as the seed trained)
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def seed_step(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        optimizer.zero_grad()
        F.nll_loss(model(x), y).backward()
        optimizer.step()

    loader = seed_style_loader(args.data_dir, bs, workers=2)
    batches = (b for _, b in zip(range(n + warmup), loader, strict=False))
    results["seed-style pipeline"] = images_per_second(seed_step, batches, bs, device, warmup)
    del loader

    # (b) bare step on ready tensors: the same batch, over and over; the device's recipe's optimizer, our
    # precision and memory layout
    recipe = training.RECIPES[args.throughput_recipe]

    def recipe_model_and_optimizer() -> tuple[Net, torch.optim.Optimizer]:
        model = Net().to(device, memory_format=torch.channels_last)
        return model, training.make_optimizer(model, recipe["optimizer"], lr=recipe["lr"], momentum=recipe["momentum"],
                                           weight_decay=recipe["weight_decay"])

    model, optimizer = recipe_model_and_optimizer()
    x = normalize(data.train_images[:bs]).contiguous(memory_format=torch.channels_last)
    y = data.train_labels[:bs]

    def bare_step(_: object) -> None:
        with utils.autocast(device, amp_dtype):
            loss = F.nll_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    results["bare fwd+bwd step"] = images_per_second(bare_step, range(n + warmup), bs, device, warmup)

    # (c) ours: utils.train over the device loader with the recipe (indexing, augmentation, normalization,
    # label smoothing, OneCycle); (d) the same with torch.compile on CUDA
    augment, chunk = utils.Augment.from_settings(recipe), training.augment_chunk(device, bs)
    images, labels = data.train_images[: (n + warmup) * bs], data.train_labels[: (n + warmup) * bs]
    for name, compiled in [("our training step", False)] + [("ours + torch.compile", True)] * (device.type == "cuda"):
        model, optimizer = recipe_model_and_optimizer()
        run_model = torch.compile(model) if compiled else model
        warmup_loader = utils.DeviceLoader(images[: warmup * bs], labels[: warmup * bs], bs, augment=augment,
                                           chunk=chunk)
        start = time.perf_counter()
        utils.train(run_model, warmup_loader, optimizer, epoch=1, amp_dtype=amp_dtype,
                    label_smoothing=recipe["label_smoothing"], progress=False)
        utils.test(run_model, utils.DeviceLoader(data.test_images[:bs], data.test_labels[:bs], bs))
        if compiled:
            compile_s = time.perf_counter() - start
        timed = utils.DeviceLoader(images[warmup * bs :], labels[warmup * bs :], bs, shuffle=True, augment=augment,
                                   chunk=chunk)
        schedule = utils.make_schedule("onecycle", optimizer, epochs=1, steps_per_epoch=len(timed))
        sync(device)
        start = time.perf_counter()
        totals = utils.train(run_model, timed, optimizer, epoch=1, schedule=schedule, amp_dtype=amp_dtype,
                             label_smoothing=recipe["label_smoothing"], progress=False)
        sync(device)
        results[name] = totals.seen / (time.perf_counter() - start)
    return results, compile_s


def time_to(history: utils.History, target: float) -> float | None:
    """Training seconds until the test accuracy first reached ``target`` percent (None if never)."""
    total = 0.0
    for acc, seconds in zip(history.eval_acc, history.seconds, strict=True):
        total += seconds
        if acc >= target:
            return total
    return None


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_recipe(args: argparse.Namespace, recipe: str, seed: int, extra: list[str]) -> tuple[str, utils.History, float]:
    """One logged train.py run; returns its run id, its History (read back from its CSV) and peak memory (MB)."""
    argv = ["--recipe", recipe, "--seed", str(seed), "--data-dir", args.data_dir, "--log-dir", args.log_dir,
            "--device", args.device, "--no-save-model", "--no-progress", "--name", f"bench-{recipe}-seed{seed}", *extra]
    device = training.pick_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    status, files = training.run(argv, kind="bench")
    if status != 0:
        raise SystemExit(f"train.py {' '.join(argv)} failed with status {status}; see {files.log}")
    return files.run_id, utils.load_history(files.csv), peak_memory_mb(device)


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass(frozen=True)
class RecipeSummary:
    """Medians over a recipe's seeds."""

    final: float  # last epoch's test accuracy (%)
    t99: float  # training seconds to 99.0% test accuracy (inf: not reached)
    epochs: float  # epochs trained (0.5: half an epoch)
    epoch_s: float  # training seconds per (whole) epoch
    train_s: float  # training seconds of the whole run


def summarize(recipe_runs: list[tuple[str, utils.History, float]]) -> RecipeSummary:
    histories = [h for _, h, _ in recipe_runs]
    return RecipeSummary(
        final=median([h.eval_acc[-1] for h in histories]),
        t99=median([t if (t := time_to(h, 99.0)) is not None else math.inf for h in histories]),
        epochs=max(h.epoch[-1] for h in histories), epoch_s=median([sum(h.seconds) / h.epoch[-1] for h in histories]),
        train_s=median([sum(h.seconds) for h in histories]))


def plot_accuracy_vs_seconds(runs: dict[str, list[tuple[str, utils.History, float]]], seed_epoch_s: float,
                             title: str, save: Path | None) -> Figure:
    """Test accuracy after each epoch against training seconds so far, one line per logged run, a colour per
    recipe; a dashed line marks how long one epoch of the seed-style pipeline takes on the same machine. The y axis
    is spaced by the test error on a log scale, so 96% and 99.7% both read well, and labelled in accuracy."""
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for colour, (recipe, recipe_runs) in zip(("C0", "C1", "C2", "C3", "C4", "C5"), runs.items(), strict=False):
        for k, (_, h, _) in enumerate(recipe_runs):
            seconds = [sum(h.seconds[: i + 1]) for i in range(len(h))]
            ax.plot(seconds, [100 - a for a in h.eval_acc], marker="o", color=colour, alpha=0.8,
                    label=recipe if k == 0 else None)
    ax.axvline(seed_epoch_s, color="grey", linestyle="--",
               label=f"one epoch of the seed-style pipeline ({seed_epoch_s:.0f} s)")
    for goal in (99.0, 99.5):
        ax.axhline(100 - goal, color="grey", linewidth=0.6)
    errors = [100 - a for recipe_runs in runs.values() for _, h, _ in recipe_runs for a in h.eval_acc]
    ticks = [t for t in (80, 50, 20, 10, 5, 2, 1, 0.5, 0.3, 0.2, 0.1) if min(errors) / 1.6 <= t <= max(errors) * 1.6]
    ax.set(xscale="log", yscale="log", xlabel="training seconds (log scale)", title=title,
           ylabel="test accuracy (%), spaced by the error (log scale)")
    ax.set_yticks(ticks, [f"{100 - t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.invert_yaxis()  # better is higher
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return utils.save_figure(fig, save)


# --------------------------------------------------------------------------------------------------
# Inference on the CPU: what a user of the trained Net waits for
# --------------------------------------------------------------------------------------------------


def folder_images_per_second(net: Net | digits.OnnxNet, images: torch.Tensor, *, sizes: tuple[int, int], count: int,
                             suffix: str) -> float:
    """predict.py's folder path (read and preprocess on every core, then one pass through the Net, PyTorch's or
    its onnxruntime export) over ``count`` files made from MNIST test digits as a user would have them: dark ink on
    white paper, ``sizes`` px, PNG or JPEG. Timed after start-up: workers warmed on the first 64 files, the Net on a
    batch of 256."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(count):
            side = sizes[0] + k % (sizes[1] - sizes[0] + 1)
            picture = Image.fromarray(255 - images[k % len(images)].cpu().numpy())
            paths.append(Path(tmp) / f"{k:05d}.{suffix}")
            picture.resize((side, side), Image.Resampling.BILINEAR).save(paths[-1])
        read_images(paths[:64])
        digits.predict(net, torch.zeros(256, 28, 28, dtype=torch.uint8))  # the Net's first run sets up its kernels
        start = time.perf_counter()
        digits.predict(net, np.stack(read_images(paths)))
        return count / (time.perf_counter() - start)


PAGE_MS = "page: stroke-to-prediction in Chromium, ms (median)"


def measure_page(net: Net, strokes: int) -> dict[str, float | str]:
    """The draw-a-digit page with ``net`` on the CPU: the server's share of a stroke, then, where gradio, Playwright and
    Chromium are installed (none: the reason), stroke-to-prediction end to end (``browser.page_latency``: mouse-up to
    the new prediction in the page's DOM, over ``strokes`` strokes; 0: not measured), with the load average around it:
    other work on the machine lengthens it."""
    from tools import browser  # gradio is imported only to serve the page

    figures: dict[str, float | str] = {"page: the server's share of a stroke, ms (median)": browser.latency(
        net, calls=50 if strokes else 3)["median_ms"]}
    if not strokes:
        return figures | {PAGE_MS: "not measured in --quick: python -m tools.bench --page"}
    try:
        import gradio  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        return figures | {PAGE_MS: f"skipped: {exc} (pip install -r requirements-app.txt)"}
    if not Path(browser.CHROMIUM).exists():
        return figures | {PAGE_MS: f"skipped: no Chromium at {browser.CHROMIUM} (apt-get install chromium)"}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        t = browser.page_latency(checkpoint.save_checkpoint(Path(tmp) / "net.pt", model=net), strokes=strokes)
    return figures | {PAGE_MS: t["median_ms"], "page: the same, ms (90th percentile)": t["p90_ms"],
                      "page: strokes timed": t["strokes"],
                      "page: load average (1 min) before / after": f"{load:.2f} / {os.getloadavg()[0]:.2f}"}


def measure_inference(data: MnistData, quick: bool) -> dict[str, float | str]:
    """Inference figures with a freshly seeded Net on the CPU (speed does not depend on the weights); a part whose
    optional extras are missing gives the reason instead of a number."""
    torch.manual_seed(0)
    net = Net().eval()
    images = data.test_images.cpu()
    figures: dict[str, float | str] = {}
    runners: list[tuple[str, Net | digits.OnnxNet]] = [("", net)]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from s5 import export  # onnx, onnxscript, onnxruntime: requirements-extras.txt
            for row in export.inference_speed(net, images[:2000] if quick else images,
                                              min_seconds=0.05 if quick else 2.0):
                figures[f"{row.runtime} img/s, batch {row.batch_size}"] = row.images_per_second
            # predict.py runs a checkpoint's export (python -m tools.export CHECKPOINT) when onnxruntime is installed
            runners.append((", onnxruntime", digits.OnnxNet(export.export_onnx(net, Path(tmp) / "net.onnx"))))
        except ImportError as exc:
            figures["onnxruntime vs PyTorch"] = f"skipped: {exc} (pip install -r requirements-extras.txt)"
        figures |= measure_page(net, strokes=0 if quick else 20)
        for runtime, runner in runners:
            for name, sizes, count, suffix in (("small images (28-64 px PNG)", (28, 64), 2000, "png"),
                                               ("500 px photos (JPEG)", (500, 500), 200, "jpg")):
                figures[f"predict.py folder img/s, {name}{runtime}"] = folder_images_per_second(
                    runner, images, sizes=sizes, count=96 if quick else count, suffix=suffix)
    return figures


def format_inference(figures: dict[str, float | str]) -> list[str]:
    return ["Inference on the CPU (a freshly seeded Net: speed does not depend on the weights), "
            f"{torch.get_num_threads()} thread(s), {usable_cores()} core(s) for reading files:", "",
            "| measurement | value |", "|---|---:|",
            *(f"| {name} | {v if isinstance(v, str) else f'{v:,.1f}' if 'ms' in name else f'{v:,.0f}'} |"
              for name, v in figures.items()), ""]


def format_targets(summary: dict[str, RecipeSummary], speed: dict[str, float], inference: dict[str, float | str],
                   gpu: bool, device_recipe: str) -> list[str]:
    """The goals table: the H100 goals on a GPU (issue 13), the 2-core CPU goals elsewhere (issues 10-12)."""
    def seconds(value: float) -> str:
        return f"{value:.2f} s" if value < math.inf else "not reached"

    five = {r: v for r, v in summary.items() if v.epochs == 5}
    budget = 5.0 if gpu else math.inf  # on a GPU the goal is accuracy within 5 training seconds
    best5 = max(five, key=lambda r: (five[r].train_s <= budget, five[r].final)) if five else None
    fastest = min(summary, key=lambda r: summary[r].t99)
    bare, ours, seed = speed["bare fwd+bwd step"], speed["our training step"], speed["seed-style pipeline"]
    lines = [
        "| target | goal | measured |",
        "|---|---|---:|",
        f"| 5-epoch recipe: test accuracy (median) in training seconds | ≥ {'99.6% in ≤ 5 s' if gpu else '99.70%'} | "
        + (f"{five[best5].final:.2f}% in {five[best5].train_s:.2f} s (`{best5}`) |" if best5 else "not run |"),
        f"| training seconds to 99.0% test accuracy (median, best recipe) | ≤ {'1.0' if gpu else '30'} s | "
        f"{seconds(summary[fastest].t99)} (`{fastest}`) |",
        *([f"| one epoch of training (median, the GPU recipe) | ≤ 0.5 s | {summary[device_recipe].epoch_s:.2f} s "
           f"(`{device_recipe}`) |"] if gpu and device_recipe in summary else []),
        f"| ours ÷ bare step img/s | {'—' if gpu else '≥ 0.95'} | {ours / bare:.2f} |",
        f"| ours ÷ seed-style pipeline img/s | {'≥ 3' if gpu else '— (at the kernel ceiling)'} | {ours / seed:.2f} |",
    ]
    goals = {PAGE_MS: ("stroke-to-prediction in headless Chromium, app.py (median)", "≤ 150 ms", " ms"),
             "predict.py folder img/s, small images (28-64 px PNG)": ("predict.py on a folder of small images",
                                                                       "≥ 1,000 img/s", " img/s"),
             "predict.py folder img/s, small images (28-64 px PNG), onnxruntime": (
                 "the same, with the checkpoint's ONNX export (requirements-extras.txt)", "≥ 1,000 img/s", " img/s")}
    for key, (name, goal, unit) in goals.items():
        if isinstance(value := inference.get(key), float):
            lines.append(f"| {name} | {goal} | {value:,.{1 if unit == ' ms' else 0}f}{unit} |")
    return [*lines, ""]


def format_report(args, device, amp_dtype, speed, compile_s, runs, started: datetime,
                  inference: dict[str, float | str]) -> str:
    """The markdown report: throughput, one table per recipe (one row per logged run), and the targets."""
    bare, ours, seed = speed["bare fwd+bwd step"], speed["our training step"], speed["seed-style pipeline"]
    memory = "GPU memory allocated" if device.type == "cuda" else "process peak RSS"
    lines = [
        f"### Benchmark {started:%Y-%m-%d %H:%M} ({'quick' if args.quick else 'full'})",
        "",
        f"- Machine: **{machine_name(device)}** ({device.type}); torch {torch.__version__}; "
        f"training precision: {str(amp_dtype).replace('torch.', '') if amp_dtype else 'fp32'}, channels_last; "
        f"batch size {args.batch_size} (recipe `{args.throughput_recipe}`)",
        f"- Command: `{' '.join(['python -m tools.bench', *sys.argv[1:]])}`",
        "",
        "| pipeline (same run, same device, same batch size) | img/s |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in speed.items()),
        f"| ours ÷ bare step | {ours / bare:.2f} |",
        f"| ours ÷ seed-style | {ours / seed:.2f} |",
        "",
        *([f"torch.compile's one-time compilation: {compile_s:.1f} s (not in any figure above).", ""]
          if compile_s is not None else []),
    ]
    summary = {}
    for recipe, recipe_runs in runs.items():
        longest = max((h for _, h, _ in recipe_runs), key=len)
        epochs = len(longest)
        lines += [
            f"Recipe `{recipe}` (`python train.py --recipe {recipe} --seed N`), test accuracy (%) after each epoch:",
            "",
            "| run (logs/<run-id>.csv) | " + " | ".join(f"ep {e:g}" for e in longest.epoch)
            + f" | final | s to 99.0% | s to 99.5% | train s | {memory} MB |",
            "|---|" + "---:|" * (epochs + 5),
        ]
        for run_id, h, peak in recipe_runs:
            reached = " | ".join(f"{t:.2f}" if (t := time_to(h, goal)) else "—" for goal in (99.0, 99.5))
            lines.append(f"| `{run_id}` | " + " | ".join(f"{a:.2f}" for a in h.eval_acc)
                         + f" | {h.eval_acc[-1]:.2f} | {reached} | {sum(h.seconds):.2f} | {peak:,.0f} |")
        finals = [h.eval_acc[-1] for _, h, _ in recipe_runs]
        summary[recipe] = s = summarize(recipe_runs)
        seeds = f"{len(recipe_runs)} seed{'s' if len(recipe_runs) > 1 else ''}"
        lines += ["", f"Median over {seeds}: final **{s.final:.2f}%** (min {min(finals):.2f}, "
                      f"max {max(finals):.2f}); time to 99.0%: "
                      + (f"**{s.t99:.2f} s**" if s.t99 < math.inf else "not reached")
                      + f"; {s.epoch_s:.2f} s per epoch.", ""]
    if inference:
        lines += format_inference(inference)
    if runs and not args.quick:
        lines += format_targets(summary, speed, inference, gpu=device.type == "cuda",
                                device_recipe=args.throughput_recipe)
    return "\n".join(lines) + "\n"


def page_sentence(figures: dict, report: Path) -> str:
    """The README's line on the page's stroke-to-prediction time, from one ``--page`` measurement."""
    return (f"median {figures[PAGE_MS]:.0f} ms, p90 {figures['page: the same, ms (90th percentile)']:.0f} ms over "
            f"{figures['page: strokes timed']} strokes ([{report.as_posix()}]({report.as_posix()})).")


def recipes_table(log_dir: Path) -> str:
    """The README's results table, one row per recipe and device: the medians of the newest full benchmark of that
    recipe on the CPU and on CUDA, read back from the runs' own CSVs (found anywhere under ``log_dir``) that its
    report names; each row names its report, machine and precision."""
    rows = []
    for device in ("cpu", "cuda"):
        reports = sorted(r for r in log_dir.glob("bench-*.md") if r.stem.endswith("-cuda") == (device == "cuda")
                         and "(full)" in r.read_text().split("\n", 1)[0] and "-bench-" in r.read_text())
        done: set[str] = set()
        for report in reversed(reports):  # newest first: a recipe's row comes from its newest benchmark
            text = report.read_text()
            machine = re.search(r"- Machine: \*\*(.+?)\*\*.*training precision: ([a-z0-9]+)", text)
            found: dict[str, list[utils.History]] = {}
            for run_id in re.findall(r"^\| `([^`]+-bench-[^`]+)` \|", text, re.M):
                csv_path = next(log_dir.rglob(f"{run_id}.csv"), None)
                recipe = run_id.split("-bench-")[1].rsplit("-seed", 1)[0]
                if csv_path is not None and recipe not in done:
                    found.setdefault(recipe, []).append(utils.load_history(csv_path))
            for recipe, histories in found.items():
                s = summarize([("", h, 0.0) for h in histories])
                t99 = f"{s.t99:.2f} s" if s.t99 < math.inf else "not reached"
                seconds = f"{s.train_s:.2f}" if s.train_s < 10 else f"{s.train_s:,.0f}"
                rows.append((list(training.RECIPES).index(recipe) if recipe in training.RECIPES else 99, device,
                             f"| `{recipe}` | {machine[1]}, {machine[2]} | {s.final:.2f}% | {seconds} s "
                             f"({s.epochs:g} epoch{'s' if s.epochs > 1 else ''}) | {t99} | "
                             f"[{report.name}](logs/{report.name}) |"))
            done |= set(found)
    rows.sort(key=lambda row: (row[1], row[0]))  # CPU rows, then CUDA's; each in the recipes' order
    return "\n".join(["| recipe | machine, precision | test accuracy | training time | time to 99.0% | benchmark |",
                      "|---|---|---:|---:|---:|---|", *(row[2] for row in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few steps and one tiny run: proves it works")
    p.add_argument("--seeds", type=bounded(int, 0, 2**63 - 1), nargs="*", default=[1, 2, 3],
                   help="none: throughput only")
    p.add_argument("--recipes", nargs="+", choices=sorted(training.RECIPES),
                   help="default: every recipe on a CUDA GPU, default, fast and seed elsewhere")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--batch-size", type=bounded(int, 1, 60_000), help="throughput batch size (default: the device's "
                   "recipe's)")
    p.add_argument("--steps", type=bounded(int, 1, 10_000), default=100, help="timed steps per throughput measurement")
    p.add_argument("--warmup", type=bounded(int, 0, 1000), default=5)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check (for tiny test data)")
    p.add_argument("--no-inference", action="store_true", help="skip the CPU inference figures (export, app, folder)")
    p.add_argument("--readme", default="README.md", help="update this README's benchmark section (full runs only)")
    p.add_argument("--page", action="store_true", help="only the draw-a-digit page (a freshly seeded Net): the "
                   "server's share of a stroke, and stroke-to-prediction in headless Chromium over 20 strokes")
    p.add_argument("--table-only", action="store_true",
                   help="only rewrite the README's results table from the newest full benchmarks in --log-dir")
    p.add_argument("train_args", nargs="*", help="extra train.py flags after --, e.g. -- --epochs 1")
    args = p.parse_args(argv)
    if args.table_only:
        update_block(args.readme, "recipes", recipes_table(Path(args.log_dir)))
        print(f"{args.readme}: results table regenerated from {args.log_dir}/bench-*.md")
        return 0
    started = datetime.now()
    if args.page:
        torch.manual_seed(0)
        figures = measure_page(Net().eval(), strokes=20)
        report = "\n".join([f"### Page benchmark {started:%Y-%m-%d %H:%M}", "",
                            f"- Machine: **{machine_name(torch.device('cpu'))}**; torch {torch.__version__}",
                            f"- Command: `{' '.join(['python -m tools.bench', *sys.argv[1:]])}`", "",
                            *format_inference(figures)])
        out = Path(args.log_dir) / f"bench-{started:%Y%m%d-%H%M%S}-page.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        print(f"{report}\nReport: {out}")
        if isinstance(figures[PAGE_MS], float) and Path(args.readme).is_file():  # measured: the README states it
            update_block(args.readme, "page", page_sentence(figures, out))
        return 0
    device = training.pick_device(args.device)
    gpu = device.type == "cuda"
    args.throughput_recipe = training.default_recipe(device.type)
    args.batch_size = args.batch_size or training.RECIPES[args.throughput_recipe]["batch_size"]
    # handwriting is left out: it is the default recipe plus font digits, which need apt packages to build
    args.recipes = args.recipes or ["gpu", "gpu-fast", "default", "fast", "seed"][0 if gpu else 2:]
    if args.quick:
        args.seeds, args.steps, args.warmup = args.seeds[:1], min(args.steps, 3), 1
    amp_dtype = training.autocast_dtype(device, args.amp)
    data = load_mnist(args.data_dir, device, md5s=None if args.no_verify else MNIST_MD5)
    print(f"Throughput on {machine_name(device)} ({device}), batch {args.batch_size} ...", flush=True)
    speed, compile_s = measure_throughput(data, args, device, amp_dtype)
    for name, value in speed.items():
        print(f"  {name}: {value:,.0f} img/s", flush=True)
    extra = ["--amp", args.amp, *(["--no-verify"] if args.no_verify else []), *args.train_args]
    if args.quick:
        args.recipes, extra = args.recipes[:1], [*extra, "--dry-run"]
    runs = {recipe: [run_recipe(args, recipe, seed, extra) for seed in args.seeds] for recipe in args.recipes}
    runs = {recipe: recipe_runs for recipe, recipe_runs in runs.items() if recipe_runs}
    suffix = ("-quick" if args.quick else "") + ("-cuda" if gpu else "")
    out = Path(args.log_dir) / f"bench-{started:%Y%m%d-%H%M%S}{suffix}.md"
    picture = None
    if runs and not args.quick:  # from the logged runs just made, beside the report: no report loses its picture
        picture = out.with_suffix(".png")
        plot_accuracy_vs_seconds(runs, len(data.train_images) / speed["seed-style pipeline"], save=picture,
                                 title=f"{machine_name(device)}: test accuracy against training seconds")
    inference = {} if args.no_inference else measure_inference(data, args.quick)
    report = format_report(args, device, amp_dtype, speed, compile_s, runs, started, inference)
    if picture is not None:
        report += f"\n![test accuracy against training seconds]({picture.name})\n"
    out.write_text(report)
    print(report)
    print(f"Report: {out}")
    # a full run with recipes (not --seeds alone: speed only) regenerates the README's results table
    if not args.quick and runs and Path(args.readme).is_file():
        update_block(args.readme, "recipes", recipes_table(Path(args.log_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
