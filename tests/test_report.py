"""Receptive fields, per-class numbers, plots (written as PNG), re-plotting from a run's CSV; the
README's blocks and the reports drawn from JSON records of their figures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, synthetic_digits
from PIL import Image, ImageDraw
from torch import nn

import utils
from model import Net
from s5 import benchmarks, explain, realworld, report, training
from s5.checkpoint import CHECKPOINT_FORMAT
from s5.files import replace_block
from tools import realworld as realworld_tool

# The seed README's hand-made table, row for row (layer, RF in, n in, j in, stride, padding, kernel,
# RF out, n out, j out).
SEED_RF = [
    ("conv1", 1, 28, 1, 1, 0, 3, 3, 26, 1),
    ("conv2", 3, 26, 1, 1, 0, 3, 5, 24, 1),
    ("maxpool", 5, 24, 1, 2, 0, 2, 6, 12, 2),
    ("conv3", 6, 12, 2, 1, 0, 3, 10, 10, 2),
    ("conv4", 10, 10, 2, 1, 0, 3, 14, 8, 2),
    ("maxpool", 14, 8, 2, 2, 0, 2, 16, 4, 4),
]


def test_receptive_field_of_net_equals_the_seed_table() -> None:
    rows = explain.receptive_field(Net())
    assert [tuple(vars(r).values()) for r in rows] == SEED_RF
    table = explain.receptive_field_table(rows)
    assert table.splitlines()[2] == "conv1 | 1 | 28 | 1 | 1 | 0 | 3 | 3 | 26 | 1"
    assert table.splitlines()[-1] == "maxpool | 14 | 8 | 2 | 2 | 0 | 2 | 16 | 4 | 4"


class Other(nn.Module):
    """Strided, padded, dilated convolutions and both pool kinds, as modules and as functions."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 5, stride=2, padding=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.dilated = nn.Conv2d(8, 8, 3, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(self.dilated(self.pool(self.stem(x))), 2)


def test_receptive_field_of_a_different_net() -> None:
    rows = [tuple(vars(r).values()) for r in explain.receptive_field(Other())]
    # worked by hand with n_out = (n + 2p - k_eff) // s + 1, rf += (k_eff - 1) * j, j *= s
    assert rows == [
        ("stem", 1, 28, 1, 2, 2, 5, 5, 14, 2),
        ("maxpool", 5, 14, 2, 2, 1, 3, 9, 7, 4),
        ("dilated", 9, 7, 4, 1, 0, 3, 25, 3, 4),
        ("avgpool", 25, 3, 4, 2, 0, 2, 29, 1, 8),
    ]


def fake_result(n: int = 200, wrong: int = 7) -> utils.EvalResult:
    """A result whose first ``wrong`` predictions are wrong, with rising confidence."""
    targets = torch.arange(n) % 10
    logits = torch.full((n, 10), -4.0)
    logits[torch.arange(n), targets] = 4.0
    for i in range(wrong):
        logits[i, (targets[i] + 1) % 10] = 5.0 + i  # later mistakes are more confident
    log_probs = torch.log_softmax(logits, dim=1)
    correct = int((log_probs.argmax(1) == targets).sum())
    return utils.EvalResult(0.1, correct, n, log_probs, targets)


def test_per_class_report_counts_the_whole_set() -> None:
    result = fake_result()
    report = utils.per_class_report(result).splitlines()
    assert len(report) == 10
    assert report[0] == "Accuracy of 0 - zero : 95.00 % (19/20)"
    assert report[3] == "Accuracy of 3 - three : 95.00 % (19/20)"
    assert report[9] == "Accuracy of 9 - nine : 100.00 % (20/20)"
    cm = utils.confusion_matrix(result)
    assert int(cm.sum()) == 200 and int(cm.trace()) == result.correct and int(cm[0, 1]) == 1


def test_misclassified_are_ordered_most_confident_first() -> None:
    assert utils.misclassified(fake_result()).tolist() == [6, 5, 4, 3, 2, 1, 0]


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    images, labels = synthetic_digits(200, seed=1)
    images = torch.from_numpy(images)
    result = fake_result()
    history = utils.History()
    for epoch in (1, 2, 3):
        history.append(epoch, utils.EpochTotals(10, 100, 50.0 / epoch, 90 + epoch, 0.01),
                       utils.EvalResult(0.1 / epoch, 95 + epoch, 100, torch.zeros(0, 10),
                                        torch.zeros(0)), 1.0)
    utils.write_history_csv(tmp_path / "run.csv", history)
    figures = {
        # re-plotted from the CSV
        "metrics": utils.plot_metrics(tmp_path / "run.csv", save=tmp_path / "metrics.png"),
        "samples": utils.plot_samples(images, torch.from_numpy(labels),
                                      save=tmp_path / "samples.png"),
        "predictions": utils.plot_predictions(images, result, save=tmp_path / "predictions.png"),
        "misclassified": utils.plot_misclassified(images, result,
                                                  save=tmp_path / "misclassified.png"),
        "per_class": utils.plot_per_class(result, save=tmp_path / "per_class.png"),
        "confusion": utils.plot_confusion(result, save=tmp_path / "confusion.png"),
        "augmentation": utils.plot_augmentation(images, utils.Augment(),
                                                save=tmp_path / "augmentation.png"),
    }
    for name, fig in figures.items():
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
        assert fig._suptitle is not None or fig.axes[0].get_title(), f"{name} has no title"
    assert "7 of 200 wrong" in figures["misclassified"]._suptitle.get_text()


def test_metrics_plot_rejects_a_csv_that_is_not_a_training_log(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(ValueError, match="not a training log CSV"):
        utils.plot_metrics(tmp_path / "x.csv")


# --- Reports are data first: each block and report is drawn from a JSON record of its figures


def fake_run_report(run_id: str = "20260101-000000") -> report.RunReport:
    history = utils.History()
    for epoch in (1, 2):
        history.append(epoch, utils.EpochTotals(10, 100, 50.0 / epoch, 90 + epoch, 0.001),
                       utils.EvalResult(0.1 / epoch, 95 + epoch, 100, torch.zeros(0, 10),
                                        torch.zeros(0)), 30.0)
    result = utils.EvalResult(0.05, 97, 100, torch.zeros(0, 10), torch.zeros(0))
    return report.RunReport(run_id, "python train.py --epochs 2", history, result, {})


def test_the_results_block_is_drawn_from_its_record(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    blocks = "".join(f"<!-- {b}:start -->\nold\n<!-- {b}:end -->\n"
                     for b in ("summary", "rf", "results"))
    readme.write_text(blocks)
    path = report.write_readme(readme, fake_run_report())
    assert path == tmp_path / "docs" / "results.json"
    assert report.reported_run(readme) == "20260101-000000"
    record = json.loads(path.read_text())
    assert record["rescored"] == {"correct": 97, "total": 100, "accuracy": 97.0, "loss": 0.05}
    assert [row["eval_acc"] for row in record["epochs"]] == [96.0, 97.0]
    text = readme.read_text()
    assert replace_block(text, "results", report.results_section(record)) == text
    assert "**Final test accuracy: 97.00%** (97/100, test loss 0.0500) after 2 epochs and 60 s" \
        in text
    bare = tmp_path / "bare" / "README.md"  # no blocks: nothing is written, not even the record
    bare.parent.mkdir()
    bare.write_text("# no blocks\n")
    with pytest.raises(ValueError, match="no <!-- summary:start -->"):
        report.write_readme(bare, fake_run_report())
    assert not (bare.parent / "docs").exists() and report.reported_run(bare) is None


def test_a_real_world_evaluation_writes_its_record_and_draws_from_it(tmp_path: Path) -> None:
    out = tmp_path / "rw"
    out.mkdir()
    rows = [("a.png", 7, "fonts", "clean"), ("b.png", 1, "fonts", "shadow"),
            ("c.png", 3, "sklearn_digits", "scan")]
    for name, *_ in rows:
        image = Image.new("L", (60, 60), 255)
        ImageDraw.Draw(image).line((30, 8, 30, 52), fill=0, width=6)
        image.save(out / name)
    (out / "d.png").write_bytes(b"not an image")
    (out / "manifest.csv").write_text("file,label,source,category,style,width,height\n" + "".join(
        f"{n},{label},{source},{category},x,60,60\n" for n, label, source, category in
        [*rows, ("d.png", 4, "fonts", "clean")]))
    checkpoint = tmp_path / "net.pt"
    torch.manual_seed(0)
    torch.save({"format": CHECKPOINT_FORMAT, "model": Net().state_dict()}, checkpoint)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- realworld:start -->\nold\n<!-- realworld:end -->\n")
    assert realworld_tool.main(["eval", "--out", str(out), "--checkpoint", str(checkpoint),
                                "--log-dir", str(tmp_path / "logs"), "--readme", str(readme)]) == 0
    (path,) = (tmp_path / "logs").glob("realworld-*.json")
    record = json.loads(path.read_text())
    assert (record["images"], record["unreadable"]) == (4, 1)
    assert record["checkpoint"] == checkpoint.as_posix()
    groups = {g["group"]: g for g in record["groups"]}
    assert list(groups) == ["all", "source: fonts", "source: sklearn_digits", "category: clean",
                            "category: shadow", "category: scan"]
    right = sum(f["read"] == f["label"] for f in record["failures"])  # failures are the wrong ones
    assert right == 0
    assert groups["all"]["accuracy"] == pytest.approx(100 * (4 - len(record["failures"])) / 4)
    assert {"file": "d.png", "label": 4, "read": "error"} in record["failures"]
    assert path.with_suffix(".md").read_text() == realworld.markdown(record)
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert readme.read_text() == replace_block(readme.read_text(), "realworld",
                                               realworld.readme_block(record, path))
    assert "`python -m tools.realworld eval`" in readme.read_text()


def test_a_group_without_unflagged_images_shows_a_dash() -> None:
    record = {"date": "2026-01-01 00:00:00", "checkpoint": "c.pt", "folder": "rw", "images": 1,
              "unreadable": 0, "uncertain_below": 0.7, "failures": [],
              "groups": [{"group": "all", "images": 1, "accuracy": 100.0, "top3": 100.0,
                          "flagged": 100.0, "accuracy_when_not_flagged": None}], "sweep": []}
    assert "| all | 1 | 100.00% | 100.00% | 100.0% | — |" in realworld.markdown(record)


def bench_record(machine: str, recipe: str, final: float, seconds: float, benchmark: str = "full",
                 device: str = "cpu") -> dict:
    runs = [{"run_id": f"r-{recipe}-seed{seed}", "epoch": [1.0, 2.0],
             "accuracy": [98.9, final + seed / 100], "seconds": [seconds / 2, seconds / 2],
             "peak_mb": 1000.0} for seed in (1, 2, 3)]
    return {"benchmark": benchmark, "started": "2026-01-01 00:00:00",
            "command": "python -m tools.bench", "machine": machine, "device": device, "torch": "2",
            "precision": "fp32", "batch_size": 64,
            "throughput_recipe": "default", "throughput": {"seed-style pipeline": 400.0,
                                                           "bare fwd+bwd step": 500.0,
                                                           "our training step": 480.0},
            "ratios": {"ours ÷ bare step": 0.96, "ours ÷ seed-style": 1.2}, "compile_s": None,
            "recipes": {recipe: {"settings": dataclasses.asdict(training.RECIPES[recipe]),
                                 "runs": runs, "summary": benchmarks.summarize(runs)}},
            "threads": 2, "cores": 2, "inference": {}, "picture": None}


def test_the_results_table_is_drawn_from_the_newest_full_records(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    records = {"bench-20260101-000000.json": bench_record("old CPU", "default", 99.0, 100.0),
               "bench-20260102-000000.json": bench_record("new CPU", "default", 99.5, 50.0),
               "bench-20260103-000000-quick.json": bench_record("quick", "default", 10.0, 1.0,
                                                                "quick"),
               "bench-20260104-000000-cuda.json": bench_record("GPU", "gpu", 99.6, 2.0,
                                                               device="cuda")}
    stale = bench_record("stale CPU", "fast", 99.9, 9.0)
    stale["recipes"]["fast"]["settings"]["lr"] = 1.0  # the fast recipe as it no longer stands
    records["bench-20260105-000000.json"] = stale
    for name, record in records.items():
        benchmarks.write_record(record, logs / name, benchmarks.format_report)
    # a report without its record is not read
    (logs / "bench-20260106-000000.md").write_text("| `r-seed-seed1` | 99.99 |\n")
    for name, record in records.items():
        assert (logs / name).with_suffix(".md").read_text() == benchmarks.format_report(record)
    lines = benchmarks.recipes_table(logs).splitlines()
    assert lines[2:] == [
        "| `default` | new CPU, fp32 | 99.52% | 50 s (2 epochs) | 50.00 s | "
        "[bench-20260102-000000.md](logs/bench-20260102-000000.md) |",
        "| `gpu` | GPU, fp32 | 99.62% | 2.00 s (2 epochs) | 2.00 s | "
        "[bench-20260104-000000-cuda.md](logs/bench-20260104-000000-cuda.md) |"]
    report_text = (logs / "bench-20260102-000000.md").read_text()
    assert ("Median over 3 seeds: final **99.52%** (min 99.51, max 99.53); time to 99.0%: "
            "**50.00 s**") in report_text
    assert "| `r-default-seed1` | 98.90 | 99.51 | 99.51 | 50.00 | 50.00 | 50.00 | 1,000 |" \
        in report_text


def test_the_committed_readme_blocks_are_drawn_from_committed_records() -> None:
    text = (ROOT / "README.md").read_text()
    results = json.loads((ROOT / "docs" / "results.json").read_text())
    assert replace_block(text, "results", report.results_section(results)) == text
    assert replace_block(text, "recipes", benchmarks.recipes_table(ROOT / "logs")) == text, (
        "README.md's results table is stale: python -m tools.bench --table-only")
    drawn = [replace_block(text, "realworld", realworld.readme_block(json.loads(p.read_text()),
                                                                     p.relative_to(ROOT)))
             for p in sorted((ROOT / "logs").glob("realworld-*.json"))]
    assert text in drawn, "README.md's realworld block: python -m tools.realworld readme <record>"


def test_a_page_benchmark_writes_its_record_and_the_readme_line(tmp_path: Path,
                                                                monkeypatch) -> None:
    from tools import bench

    figures = {"page: the server's share of a stroke, ms (median)": 7.04,
               benchmarks.PAGE_MS: 50.6, "page: the same, ms (90th percentile)": 67.2,
               "page: strokes timed": 20,
               "page: load average (1 min) before / after": "1.58 / 1.40"}
    monkeypatch.setattr(bench, "measure_page", lambda net, strokes: dict(figures))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- page:start -->\nold\n<!-- page:end -->\n")
    assert bench.main(["--page", "--log-dir", str(tmp_path / "logs"), "--readme", str(readme)]) == 0
    (path,) = (tmp_path / "logs").glob("bench-*-page.json")
    record = json.loads(path.read_text())
    assert record["benchmark"] == "page" and record["inference"] == figures
    assert path.with_suffix(".md").read_text() == benchmarks.format_page(record)
    assert "| page: stroke-to-prediction in Chromium, ms (median) | 50.6 |" in \
        path.with_suffix(".md").read_text()
    line = benchmarks.page_sentence(record["inference"], path.with_suffix(".md"))
    assert readme.read_text() == f"<!-- page:start -->\n{line}\n<!-- page:end -->\n"
    assert line.startswith("median 51 ms, p90 67 ms over 20 strokes ([")
