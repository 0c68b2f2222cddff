"""Benchmark records: what ``python -m tools.bench`` measured, as the JSON it writes
(logs/bench-<date>[-quick][-cuda|-page].json), and what is rendered from records alone: a
benchmark's markdown report and the README's results table and page line."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from datetime import datetime
from pathlib import Path

from s5.files import atomic_write_text, write_json
from s5.recipes import RECIPES

PAGE_MS = "page: stroke-to-prediction in Chromium, ms (median)"


def time_to(run: dict, target: float) -> float | None:
    """Training seconds until a run's test accuracy first reached ``target`` percent (None if
    never)."""
    total = 0.0
    for acc, seconds in zip(run["accuracy"], run["seconds"], strict=True):
        total += seconds
        if acc >= target:
            return total
    return None


def summarize(runs: list[dict]) -> dict:
    """Medians over a recipe's seeds: final test accuracy (%, with min and max), training seconds
    to 99.0% (None: not reached by the median run), epochs trained, seconds per whole epoch and of
    the whole run."""
    finals = [r["accuracy"][-1] for r in runs]
    t99 = statistics.median([t if (t := time_to(r, 99.0)) is not None else math.inf for r in runs])
    return {"final": statistics.median(finals), "min": min(finals), "max": max(finals),
            "t99": t99 if t99 < math.inf else None, "epochs": max(r["epoch"][-1] for r in runs),
            "epoch_s": statistics.median([sum(r["seconds"]) / r["epoch"][-1] for r in runs]),
            "train_s": statistics.median([sum(r["seconds"]) for r in runs])}


def write_record(record: dict, path: Path, render) -> Path:
    """The record as ``path`` (.json), then ``render(record)`` beside it as .md; returns the .md."""
    write_json(path, record)
    return atomic_write_text(path.with_suffix(".md"), render(record))


def format_inference(record: dict) -> list[str]:
    """The inference table: ms to one decimal, img/s whole, a skipped part's reason as it is."""
    def shown(name: str, value: float | str) -> str:
        if isinstance(value, str):
            return value
        return f"{value:,.1f}" if "ms" in name else f"{value:,.0f}"

    return ["Inference on the CPU (a freshly seeded Net: speed does not depend on the weights), "
            f"{record['threads']} thread(s), {record['cores']} core(s) for reading files:", "",
            "| measurement | value |", "|---|---:|",
            *(f"| {name} | {shown(name, v)} |" for name, v in record["inference"].items()), ""]


def format_targets(record: dict) -> list[str]:
    """The goals table: the GPU goals on CUDA, the 2-core CPU goals elsewhere."""
    def seconds(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "not reached"

    gpu, inference = record["device"] == "cuda", record["inference"]
    summary = {recipe: r["summary"] for recipe, r in record["recipes"].items()}
    five = {r: s for r, s in summary.items() if s["epochs"] == 5}
    budget = 5.0 if gpu else math.inf  # on a GPU the goal is accuracy within 5 training seconds
    best5 = max(five, key=lambda r: (five[r]["train_s"] <= budget, five[r]["final"]), default=None)
    fastest = min(summary, key=lambda r: math.inf if summary[r]["t99"] is None else
                  summary[r]["t99"])
    ratios, device_recipe = record["ratios"], record["throughput_recipe"]
    lines = [
        "| target | goal | measured |",
        "|---|---|---:|",
        "| 5-epoch recipe: test accuracy (median) in training seconds | "
        f"≥ {'99.6% in ≤ 5 s' if gpu else '99.70%'} | "
        + (f"{five[best5]['final']:.2f}% in {five[best5]['train_s']:.2f} s (`{best5}`) |"
           if best5 else "not run |"),
        "| training seconds to 99.0% test accuracy (median, best recipe) | "
        f"≤ {'1.0' if gpu else '30'} s | {seconds(summary[fastest]['t99'])} (`{fastest}`) |",
        *([f"| one epoch of training (median, the GPU recipe) | ≤ 0.5 s | "
           f"{summary[device_recipe]['epoch_s']:.2f} s (`{device_recipe}`) |"]
          if gpu and device_recipe in summary else []),
        f"| ours ÷ bare step img/s | {'—' if gpu else '≥ 0.95'} | "
        f"{ratios['ours ÷ bare step']:.2f} |",
        "| ours ÷ seed-style pipeline img/s | "
        f"{'≥ 3' if gpu else '— (at the kernel ceiling)'} | {ratios['ours ÷ seed-style']:.2f} |",
    ]
    goals = {PAGE_MS: ("stroke-to-prediction in headless Chromium, app.py (median)", "≤ 150 ms",
                       " ms"),
             "predict.py folder img/s, small images (28-64 px PNG)": (
                 "predict.py on a folder of small images", "≥ 1,000 img/s", " img/s"),
             "predict.py folder img/s, small images (28-64 px PNG), onnxruntime": (
                 "the same, with the checkpoint's ONNX export (requirements-extras.txt)",
                 "≥ 1,000 img/s", " img/s")}
    for key, (name, goal, unit) in goals.items():
        if isinstance(value := inference.get(key), float):
            lines.append(f"| {name} | {goal} | {value:,.{1 if unit == ' ms' else 0}f}{unit} |")
    return [*lines, ""]


def format_report(record: dict) -> str:
    """A training benchmark's report: throughput, a table per recipe (a row per run), targets."""
    memory = "GPU memory allocated" if record["device"] == "cuda" else "process peak RSS"
    started = datetime.fromisoformat(record["started"])
    lines = [
        f"### Benchmark {started:%Y-%m-%d %H:%M} ({record['benchmark']})",
        "",
        f"- Machine: **{record['machine']}** ({record['device']}); torch {record['torch']}; "
        f"training precision: {record['precision']}, channels_last; batch size "
        f"{record['batch_size']} (recipe `{record['throughput_recipe']}`)",
        f"- Command: `{record['command']}`",
        "",
        "| pipeline (same run, same device, same batch size) | img/s |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in record["throughput"].items()),
        *(f"| {name} | {value:.2f} |" for name, value in record["ratios"].items()),
        "",
        *([f"torch.compile's one-time compilation: {record['compile_s']:.1f} s (not in any figure "
           "above).", ""] if record["compile_s"] is not None else []),
    ]
    for recipe, entry in record["recipes"].items():
        runs, s = entry["runs"], entry["summary"]
        longest = max(runs, key=lambda r: len(r["epoch"]))
        lines += [
            f"Recipe `{recipe}` (`python train.py --recipe {recipe} --seed N`), test accuracy (%) "
            "after each epoch:",
            "",
            "| run (logs/<run-id>.csv) | " + " | ".join(f"ep {e:g}" for e in longest["epoch"])
            + f" | final | s to 99.0% | s to 99.5% | train s | {memory} MB |",
            "|---|" + "---:|" * (len(longest["epoch"]) + 5),
        ]
        for run in runs:
            reached = " | ".join(f"{t:.2f}" if (t := time_to(run, goal)) else "—"
                                 for goal in (99.0, 99.5))
            lines.append(f"| `{run['run_id']}` | " + " | ".join(f"{a:.2f}" for a in run["accuracy"])
                         + f" | {run['accuracy'][-1]:.2f} | {reached} | "
                         f"{sum(run['seconds']):.2f} | {run['peak_mb']:,.0f} |")
        seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
        lines += ["", f"Median over {seeds}: final **{s['final']:.2f}%** (min {s['min']:.2f}, "
                      f"max {s['max']:.2f}); time to 99.0%: "
                      + (f"**{s['t99']:.2f} s**" if s["t99"] is not None else "not reached")
                      + f"; {s['epoch_s']:.2f} s per epoch.", ""]
    if record["inference"]:
        lines += format_inference(record)
    if record["recipes"] and record["benchmark"] == "full":
        lines += format_targets(record)
    text = "\n".join(lines) + "\n"
    if record["picture"]:
        text += f"\n![test accuracy against training seconds]({record['picture']})\n"
    return text


def format_page(record: dict) -> str:
    """A page benchmark's report."""
    started = datetime.fromisoformat(record["started"])
    return "\n".join([f"### Page benchmark {started:%Y-%m-%d %H:%M}", "",
                      f"- Machine: **{record['machine']}**; torch {record['torch']}",
                      f"- Command: `{record['command']}`", "", *format_inference(record)])


def page_sentence(figures: dict, report: Path) -> str:
    """The README's line on the page's stroke-to-prediction time, from one ``--page`` record."""
    link = report.as_posix()
    return (f"median {figures[PAGE_MS]:.0f} ms, p90 "
            f"{figures['page: the same, ms (90th percentile)']:.0f} ms over "
            f"{figures['page: strokes timed']} strokes ([{link}]({link})).")


def benchmarked_as_now(entry: dict, recipe: str) -> bool:
    """Whether a record's runs of ``recipe`` trained it as it stands now: every setting the record
    kept of it (none kept: unknown, so no) equals the recipe's current one."""
    now = dataclasses.asdict(RECIPES[recipe]) if recipe in RECIPES else {}
    kept = entry["settings"]
    return bool(now and kept) and all(now.get(key) == value for key, value in kept.items())


def recipes_table(log_dir: Path) -> str:
    """The README's results table: a row per recipe and device (the CPU's, then CUDA's), the
    medians of the newest full benchmark record (logs/bench-*.json) that ran that recipe there as it
    stands now; each row names its report, machine and precision."""
    records = [(p, json.loads(p.read_text())) for p in sorted(log_dir.glob("bench-*.json"))]
    rows = []
    for device in ("cpu", "cuda"):
        done: set[str] = set()
        for path, record in reversed(records):  # newest first: a recipe's row from its newest
            on_cuda = record.get("device") == "cuda"
            if record.get("benchmark") != "full" or on_cuda != (device == "cuda"):
                continue
            for recipe, entry in record["recipes"].items():
                if recipe in done or not benchmarked_as_now(entry, recipe):
                    continue
                done.add(recipe)
                s, report = entry["summary"], path.with_suffix(".md").name
                t99 = f"{s['t99']:.2f} s" if s["t99"] is not None else "not reached"
                seconds = f"{s['train_s']:.2f}" if s["train_s"] < 10 else f"{s['train_s']:,.0f}"
                rows.append((device, list(RECIPES).index(recipe),
                             f"| `{recipe}` | {record['machine']}, {record['precision']} | "
                             f"{s['final']:.2f}% | {seconds} s ({s['epochs']:g} "
                             f"epoch{'s' if s['epochs'] > 1 else ''}) | {t99} | "
                             f"[{report}](logs/{report}) |"))
    rows.sort(key=lambda row: row[:2])  # CPU rows, then CUDA's; each in the recipes' order
    return "\n".join(["| recipe | machine, precision | test accuracy | training time | "
                      "time to 99.0% | benchmark |", "|---|---|---:|---:|---:|---|",
                      *(row[2] for row in rows)])
