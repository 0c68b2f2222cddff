"""Benchmark the recipes on one device: training throughput, each recipe's accuracy over seeds
(logged runs) and inference on the CPU. Each benchmark is a JSON record of its figures,
logs/bench-<date>[-quick][-cuda|-page].json; its markdown report and the README's results table are
rendered from records alone.

    python -m tools.bench                # throughput, then 3 seeds of each recipe
    python -m tools.bench --device cuda  # on a GPU: the GPU recipes too, and a torch.compile row
    python -m tools.bench --quick        # seconds: proves the whole benchmark runs
    python -m tools.bench --page         # the draw-a-digit page alone, end to end in Chromium
    python -m tools.bench --table-only   # the README's results table from logs/bench-*.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import tempfile
import time
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
from s5.benchmarks import (
    PAGE_MS,
    format_page,
    format_report,
    page_sentence,
    recipes_table,
    summarize,
    write_record,
)
from s5.cli import UsageError, add_data_arguments, bounded, fail, program
from s5.constants import MNIST_MEAN, MNIST_STD
from s5.files import update_block
from s5.image import read_images, usable_cores
from s5.mnist import MNIST_MD5, MnistData, MnistError, load_mnist
from s5.recipes import RECIPES
from utils import normalize

PROG = program("tools.bench")


class BenchError(RuntimeError):
    """A benchmark run that did not finish: exit 1."""

    exit_status = 1


def seed_style_loader(data_dir: str, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """The seed's data pipeline: torchvision's MNIST, PIL transforms, a DataLoader with workers."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomApply([transforms.CenterCrop(22)], p=0.1), transforms.Resize((28, 28)),
        transforms.RandomRotation((-15.0, 15.0), fill=0), transforms.ToTensor(),
        transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    dataset = datasets.MNIST(data_dir, train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       num_workers=workers, pin_memory=torch.cuda.is_available(),
                                       persistent_workers=workers > 0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(step, batches, batch_size: int, device: torch.device, warmup: int) -> float:
    """Run ``step(batch)`` over ``batches``; time all but the first ``warmup`` steps."""
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
    """img/s of (a) the seed-style pipeline, (b) a bare step on ready tensors, (c) our training step
    and, on CUDA, (d) ours with torch.compile plus its compile seconds."""
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

    # (b) bare step on ready tensors: the same batch, over and over; the device's recipe's
    # optimizer, our precision and memory layout
    recipe = RECIPES[args.throughput_recipe]

    def recipe_model_and_optimizer() -> tuple[Net, torch.optim.Optimizer]:
        model = Net().to(device, memory_format=torch.channels_last)
        return model, training.make_optimizer(model, recipe.optimizer, lr=recipe.lr,
                                              momentum=recipe.momentum,
                                              weight_decay=recipe.weight_decay)

    model, optimizer = recipe_model_and_optimizer()
    x = normalize(data.train_images[:bs]).contiguous(memory_format=torch.channels_last)
    y = data.train_labels[:bs]

    def bare_step(_: object) -> None:
        with utils.autocast(device, amp_dtype):
            loss = F.nll_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    results["bare fwd+bwd step"] = images_per_second(bare_step, range(n + warmup), bs, device,
                                                     warmup)

    # (c) ours: utils.train over the device loader with the recipe (indexing, augmentation,
    # normalization, label smoothing, OneCycle); (d) the same with torch.compile on CUDA
    augment = utils.Augment.from_settings(dataclasses.asdict(recipe))
    chunk = training.augment_chunk(device, bs)
    images, labels = data.train_images[: (n + warmup) * bs], data.train_labels[: (n + warmup) * bs]
    gpu = device.type == "cuda"
    for name, compiled in [("our training step", False)] + [("ours + torch.compile", True)] * gpu:
        model, optimizer = recipe_model_and_optimizer()
        run_model = torch.compile(model) if compiled else model
        warmup_loader = utils.DeviceLoader(images[: warmup * bs], labels[: warmup * bs], bs,
                                           augment=augment, chunk=chunk)
        start = time.perf_counter()
        utils.train(run_model, warmup_loader, optimizer, epoch=1, amp_dtype=amp_dtype,
                    label_smoothing=recipe.label_smoothing, progress=False)
        utils.test(run_model, utils.DeviceLoader(data.test_images[:bs], data.test_labels[:bs], bs))
        if compiled:
            compile_s = time.perf_counter() - start
        timed = utils.DeviceLoader(images[warmup * bs :], labels[warmup * bs :], bs, shuffle=True,
                                   augment=augment, chunk=chunk)
        schedule = utils.make_schedule("onecycle", optimizer, epochs=1, steps_per_epoch=len(timed))
        sync(device)
        start = time.perf_counter()
        totals = utils.train(run_model, timed, optimizer, epoch=1, schedule=schedule,
                             amp_dtype=amp_dtype, label_smoothing=recipe.label_smoothing,
                             progress=False)
        sync(device)
        results[name] = totals.seen / (time.perf_counter() - start)
    return results, compile_s


# The recipes' runs: each a logged training run, kept in the record as its CSV's figures


def run_record(run_id: str, history: utils.History, peak_mb: float) -> dict:
    """A run's figures in a benchmark record: test accuracy and training seconds per epoch."""
    return {"run_id": run_id, "epoch": history.epoch, "accuracy": history.eval_acc,
            "seconds": history.seconds, "peak_mb": peak_mb}


def run_recipe(args: argparse.Namespace, recipe: str, seed: int,
               epochs: float | None = None) -> dict:
    """One logged training run of ``recipe`` with ``seed`` (``epochs``: instead of the recipe's);
    its figures as read back from its CSV, with the peak memory (MB)."""
    device = training.pick_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    settings = RECIPES[recipe].replace(seed=seed, amp=args.amp)
    if epochs is not None:
        settings = settings.replace(epochs=epochs)
    result = training.train(settings, device=args.device, data_dir=args.data_dir,
                            verify=not args.no_verify, log_dir=args.log_dir,
                            checkpoint_dir=args.checkpoint_dir, save_model=False, progress=False,
                            tensorboard=False, name=f"bench-{recipe}-seed{seed}", kind="bench")
    if result.status != "finished":
        raise BenchError(f"the {recipe} run with seed {seed} {result.status} (exit status "
                         f"{result.exit_status}); its log: {result.files.log}")
    return run_record(result.files.run_id, utils.load_history(result.files.csv),
                      peak_memory_mb(device))


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


def plot_accuracy_vs_seconds(recipes: dict[str, list[dict]], seed_epoch_s: float, title: str,
                             save: Path | None) -> Figure:
    """Test accuracy after each epoch against training seconds so far, one line per run, a colour
    per recipe; a dashed line marks one epoch of the seed-style pipeline on the same machine. The
    y axis is spaced by the test error on a log scale, so 96% and 99.7% both read well."""
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    colours = ("C0", "C1", "C2", "C3", "C4", "C5")
    for colour, (recipe, runs) in zip(colours, recipes.items(), strict=False):
        for k, run in enumerate(runs):
            seconds = [sum(run["seconds"][: i + 1]) for i in range(len(run["seconds"]))]
            ax.plot(seconds, [100 - a for a in run["accuracy"]], marker="o", color=colour,
                    alpha=0.8, label=recipe if k == 0 else None)
    ax.axvline(seed_epoch_s, color="grey", linestyle="--",
               label=f"one epoch of the seed-style pipeline ({seed_epoch_s:.0f} s)")
    for goal in (99.0, 99.5):
        ax.axhline(100 - goal, color="grey", linewidth=0.6)
    errors = [100 - a for runs in recipes.values() for run in runs for a in run["accuracy"]]
    ticks = [t for t in (80, 50, 20, 10, 5, 2, 1, 0.5, 0.3, 0.2, 0.1)
             if min(errors) / 1.6 <= t <= max(errors) * 1.6]
    ax.set(xscale="log", yscale="log", xlabel="training seconds (log scale)", title=title,
           ylabel="test accuracy (%), spaced by the error (log scale)")
    ax.set_yticks(ticks, [f"{100 - t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.invert_yaxis()  # better is higher
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return utils.save_figure(fig, save)


# Inference on the CPU: what a user of the trained Net waits for


def folder_images_per_second(net: Net | digits.OnnxNet, images: torch.Tensor, *,
                             sizes: tuple[int, int], count: int, suffix: str) -> float:
    """predict.py's folder path (read and preprocess on every core, then one pass through the Net,
    PyTorch's or its onnxruntime export) over ``count`` files made from MNIST test digits as a user
    would have them: dark ink on white paper, ``sizes`` px, PNG or JPEG. Timed after start-up:
    workers warmed on the first 64 files, the Net on a batch of 256."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(count):
            side = sizes[0] + k % (sizes[1] - sizes[0] + 1)
            picture = Image.fromarray(255 - images[k % len(images)].cpu().numpy())
            paths.append(Path(tmp) / f"{k:05d}.{suffix}")
            picture.resize((side, side), Image.Resampling.BILINEAR).save(paths[-1])
        read_images(paths[:64])
        # the Net's first run sets up its kernels
        digits.predict(net, torch.zeros(256, 28, 28, dtype=torch.uint8))
        start = time.perf_counter()
        digits.predict(net, np.stack(read_images(paths)))
        return count / (time.perf_counter() - start)


def measure_page(net: Net, strokes: int) -> dict[str, float | str]:
    """The draw-a-digit page with ``net`` on the CPU: the server's share of a stroke, then, where
    gradio, Playwright and Chromium are installed (else the reason), stroke-to-prediction end to end
    (``browser.page_latency``: mouse-up to the new prediction in the page's DOM, over ``strokes``
    strokes; 0: not measured), with the load average around it."""
    from tools import browser  # gradio is imported only to serve the page

    server = browser.latency(net, calls=50 if strokes else 3)["median_ms"]
    figures: dict[str, float | str] = {"page: the server's share of a stroke, ms (median)": server}
    if not strokes:
        return figures | {PAGE_MS: "not measured in --quick: python -m tools.bench --page"}
    try:
        import gradio  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        return figures | {PAGE_MS: f"skipped: {exc} (pip install -r requirements-app.txt)"}
    if not Path(browser.CHROMIUM).exists():
        return figures | {PAGE_MS: f"skipped: no Chromium at {browser.CHROMIUM} "
                                   "(apt-get install chromium)"}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        saved = checkpoint.save_checkpoint(Path(tmp) / "net.pt", model=net)
        t = browser.page_latency(saved, strokes=strokes)
    return figures | {PAGE_MS: t["median_ms"], "page: the same, ms (90th percentile)": t["p90_ms"],
                      "page: strokes timed": t["strokes"],
                      "page: load average (1 min) before / after":
                          f"{load:.2f} / {os.getloadavg()[0]:.2f}"}


def measure_inference(data: MnistData, quick: bool) -> dict[str, float | str]:
    """Inference figures with a freshly seeded Net on the CPU (speed does not depend on the
    weights); a part whose optional extras are missing gives the reason instead of a number."""
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
            # predict.py runs a checkpoint's ONNX export when onnxruntime is installed
            onnx = export.export_onnx(net, Path(tmp) / "net.onnx")
            runners.append((", onnxruntime", digits.OnnxNet(onnx)))
        except ImportError as exc:
            figures["onnxruntime vs PyTorch"] = (f"skipped: {exc} (pip install -r "
                                                 "requirements-extras.txt)")
        figures |= measure_page(net, strokes=0 if quick else 20)
        for runtime, runner in runners:
            for name, sizes, count, suffix in (
                    ("small images (28-64 px PNG)", (28, 64), 2000, "png"),
                    ("500 px photos (JPEG)", (500, 500), 200, "jpg")):
                figures[f"predict.py folder img/s, {name}{runtime}"] = folder_images_per_second(
                    runner, images, sizes=sizes, count=96 if quick else count, suffix=suffix)
    return figures


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a few steps and one tiny run: proves it works")
    p.add_argument("--seeds", type=bounded(int, 0, 2**63 - 1), nargs="*", default=[1, 2, 3],
                   help="none: throughput only")
    p.add_argument("--recipes", nargs="+", choices=sorted(RECIPES),
                   help="default: every recipe on a CUDA GPU, default, fast and seed elsewhere")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--batch-size", type=bounded(int, 1, 60_000),
                   help="throughput batch size (default: the device's recipe's)")
    p.add_argument("--steps", type=bounded(int, 1, 10_000), default=100,
                   help="timed steps per throughput measurement")
    p.add_argument("--warmup", type=bounded(int, 0, 1000), default=5)
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--checkpoint-dir", default="checkpoints",
                   help="where the runs claim their (unsaved) checkpoints' names")
    add_data_arguments(p)
    p.add_argument("--no-inference", action="store_true",
                   help="skip the CPU inference figures (export, app, folder)")
    p.add_argument("--readme", default="README.md",
                   help="update this README's results table (full runs only)")
    p.add_argument("--page", action="store_true",
                   help="only the draw-a-digit page (a freshly seeded Net): the server's share of "
                        "a stroke, and stroke-to-prediction in headless Chromium over 20 strokes")
    p.add_argument("--table-only", action="store_true",
                   help="only rewrite the README's results table from the newest full benchmark "
                        "records in --log-dir")
    return p


def page_benchmark(args: argparse.Namespace, started: datetime, command: str) -> int:
    """``--page``: the page alone; the README's page line when it was measured."""
    torch.manual_seed(0)
    figures = measure_page(Net().eval(), strokes=20)
    record = {"benchmark": "page", "started": started.isoformat(sep=" ", timespec="seconds"),
              "command": command, "machine": machine_name(torch.device("cpu")),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cores": usable_cores(), "inference": figures}
    path = Path(args.log_dir) / f"bench-{started:%Y%m%d-%H%M%S}-page.json"
    report = write_record(record, path, format_page)
    print(f"{report.read_text()}\nReport: {report} (figures: {path})")
    if isinstance(figures[PAGE_MS], float) and Path(args.readme).is_file():
        update_block(args.readme, "page", page_sentence(figures, report))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.table_only:
            update_block(args.readme, "recipes", recipes_table(Path(args.log_dir)))
            print(f"{args.readme}: results table regenerated from {args.log_dir}/bench-*.json")
            return 0
        if args.page:
            return page_benchmark(args, datetime.now(), command)
        return benchmark(args, command)
    except BenchError as exc:
        return fail(PROG, exc, exc.exit_status)
    except (MnistError, OSError, ValueError) as exc:  # no data, a README without its block, ...
        return fail(PROG, exc, getattr(exc, "exit_status", 1))


def benchmark(args: argparse.Namespace, command: str) -> int:
    """Throughput, the recipes' runs and inference: the record, its report and picture, and the
    README's results table after a full run."""
    started = datetime.now()
    try:
        device = training.pick_device(args.device)
    except ValueError as exc:  # --device cuda without a GPU: a usage error
        raise UsageError(str(exc)) from None
    data = load_mnist(args.data_dir, device, md5s=None if args.no_verify else MNIST_MD5)
    gpu = device.type == "cuda"
    args.throughput_recipe = training.default_recipe(device.type)
    args.batch_size = args.batch_size or RECIPES[args.throughput_recipe].batch_size
    # handwriting is left out: it is the default recipe plus font digits, which need apt packages
    recipes = args.recipes or ["gpu", "gpu-fast", "default", "fast", "seed"][0 if gpu else 2:]
    if args.quick:
        args.seeds, args.steps, args.warmup = args.seeds[:1], min(args.steps, 3), 1
        recipes = recipes[:1]
    amp_dtype = training.autocast_dtype(device, args.amp)
    print(f"Throughput on {machine_name(device)} ({device}), batch {args.batch_size} ...",
          flush=True)
    speed, compile_s = measure_throughput(data, args, device, amp_dtype)
    for name, value in speed.items():
        print(f"  {name}: {value:,.0f} img/s", flush=True)

    def epochs(recipe: str) -> float | None:  # --quick: two batches, as a dry run
        quick = 2 * RECIPES[recipe].batch_size / len(data.train_images)
        return quick if args.quick else None

    runs = {recipe: [run_recipe(args, recipe, seed, epochs(recipe)) for seed in args.seeds]
            for recipe in recipes if args.seeds}
    suffix = ("-quick" if args.quick else "") + ("-cuda" if gpu else "")
    path = Path(args.log_dir) / f"bench-{started:%Y%m%d-%H%M%S}{suffix}.json"
    picture = None
    if runs and not args.quick:  # beside the report: no report loses its picture
        picture = path.with_suffix(".png")
        plot_accuracy_vs_seconds(runs, len(data.train_images) / speed["seed-style pipeline"],
                                 save=picture, title=f"{machine_name(device)}: test accuracy "
                                 "against training seconds")
    record = {
        "benchmark": "quick" if args.quick else "full",
        "started": started.isoformat(sep=" ", timespec="seconds"), "command": command,
        "machine": machine_name(device), "device": device.type, "torch": torch.__version__,
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "batch_size": args.batch_size, "throughput_recipe": args.throughput_recipe,
        "throughput": speed, "compile_s": compile_s,
        "ratios": {"ours ÷ bare step": speed["our training step"] / speed["bare fwd+bwd step"],
                   "ours ÷ seed-style": speed["our training step"] / speed["seed-style pipeline"]},
        "recipes": {recipe: {"settings": dataclasses.asdict(RECIPES[recipe]), "runs": r,
                             "summary": summarize(r)} for recipe, r in runs.items()},
        "threads": torch.get_num_threads(), "cores": usable_cores(),
        "inference": {} if args.no_inference else measure_inference(data, args.quick),
        "picture": picture.name if picture else None}
    report = write_record(record, path, format_report)
    print(report.read_text())
    print(f"Report: {report} (figures: {path})")
    if not args.quick and runs and Path(args.readme).is_file():  # a full run with recipes
        update_block(args.readme, "recipes", recipes_table(Path(args.log_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
