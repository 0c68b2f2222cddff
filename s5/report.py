"""A finished run as the README shows it: its checkpoint re-scored on the whole test set, its
pictures, and the README's model and results blocks, written from a JSON record of their figures.

``python -m tools.report`` (``make report``) and the notebook call these functions.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torchsummary import summary

import utils
from model import Net
from s5 import explain, runs
from s5.checkpoint import NoCheckpointError, load_checkpoint, load_model_state
from s5.cli import UsageError
from s5.files import atomic_write_text, replace_block, write_json
from s5.mnist import MnistData

RUN_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


# The pictures rescore_and_draw saves, as images/<name>.png.
FIGURES = ("samples", "augmentation", "metric_plot", "predictions", "misclassified", "per_class",
           "confusion_matrix", "conv1_filters", "feature_maps", "saliency")


class ReportError(ValueError):
    """A run the README cannot report: evaluated on validation, or a checkpoint not its own."""

    exit_status = 1


def run_completed(info: dict, history: utils.History) -> bool:
    """Whether a run trained every epoch its settings asked for (its CSV reaches them)."""
    epochs = info.get("settings", {}).get("epochs")
    return bool(len(history)) and epochs is not None and history.epoch[-1] >= float(epochs) - 1e-6


def find_run(log_dir: Path, checkpoint_dir: Path, run_id: str | None = None) -> tuple[str, str]:
    """The run to report and why it was picked: the given run id (a name in ``log_dir``, never a
    path), or the newest completed training run on the test split that has a checkpoint, as its
    run file (logs/<run-id>.json) records it: benchmarks, tuning runs, dry runs and runs still
    training or stopped early are not picked."""
    if run_id:
        if run_id.startswith(".") or not set(run_id) <= RUN_ID_CHARACTERS:
            raise UsageError(f"--run takes a run id such as 20261204-220208, got {run_id!r}")
        if not (log_dir / f"{run_id}.csv").is_file():
            raise UsageError(f"no run {run_id} in {log_dir}/ (no {run_id}.csv); "
                             f"`ls {log_dir}` lists the runs")
        return run_id, "given with --run"
    candidates = []
    for info_path in sorted(log_dir.glob("*.json")):
        info = runs.read_run_info(info_path)
        run = info.get("run_id", "")
        csv_path = log_dir / f"{run}.csv"
        if (info.get("kind") == "train" and info.get("split") == "test" and csv_path.exists()
                and (checkpoint_dir / f"{run}.pt").exists()
                and run_completed(info, utils.load_history(csv_path))):
            candidates.append(run)
    if not candidates:
        raise NoCheckpointError(f"no finished training run with a checkpoint in {log_dir}/ and "
                                f"{checkpoint_dir}/: run `make train` first")
    return candidates[-1], "the newest finished training run on the test set with a checkpoint"


def record_path(readme: Path) -> Path:
    """Where the figures of ``readme``'s results block are kept: docs/results.json beside it."""
    return Path(readme).parent / "docs" / "results.json"


def reported_run(readme: Path) -> str | None:
    """The run id the README's results block reports now, from its record; None if it has none."""
    path = record_path(readme)
    return json.loads(path.read_text())["run_id"] if path.is_file() else None


def run_augmentation(state: dict) -> utils.Augment:
    """The augmentation a checkpoint's run trained with (a v1 checkpoint: read from its flags)."""
    if "augment" in state:
        return utils.Augment(**state["augment"])
    return utils.Augment.from_settings(state["args"])


@dataclass
class RunReport:
    """A logged run, its checkpoint re-scored on the whole test set, and the pictures drawn."""

    run_id: str
    command: str
    history: utils.History
    result: utils.EvalResult
    figures: dict[str, Figure]


def rescore_and_draw(run_id: str, data: MnistData, *, log_dir: str | Path = "logs",
                     checkpoint_dir: str | Path = "checkpoints",
                     images: str | Path | None = "images") -> RunReport:
    """Evaluate the run's checkpoint again on all test images, refuse (``ReportError``) unless it
    reproduces the logged final accuracy, then draw every picture (saved as images/*.png unless
    ``images`` is None)."""
    log_dir, checkpoint_dir = Path(log_dir), Path(checkpoint_dir)
    history = utils.load_history(log_dir / f"{run_id}.csv")
    if history.split != "test":
        raise ReportError(f"run {run_id} was evaluated on a validation split; the README reports "
                          "test-set runs only")
    state = load_checkpoint(checkpoint_dir / f"{run_id}.pt")
    # evaluated where the data are, in training's memory layout: the log's numbers on any device
    model = load_model_state(Net(), state, checkpoint_dir / f"{run_id}.pt").to(
        data.test_images.device, memory_format=torch.channels_last).eval()
    result = utils.test(model, utils.DeviceLoader(data.test_images, data.test_labels, 1000))
    if (result.correct, result.total) != (history.eval_correct[-1], history.eval_total[-1]):
        raise ReportError(f"checkpoint gives {result.correct}/{result.total}, the log says "
                          f"{history.eval_correct[-1]}/{history.eval_total[-1]}: not the same run?")

    def save(name: str) -> Path | None:
        return None if images is None else Path(images) / f"{name}.png"

    title = f"What each conv layer sees: test image 0 (label {int(data.test_labels[0])})"
    figures = {
        "samples": utils.plot_samples(data.train_images, data.train_labels, save=save("samples")),
        "augmentation": utils.plot_augmentation(data.train_images, run_augmentation(state),
                                                save=save("augmentation")),
        "metric_plot": utils.plot_metrics(history, save=save("metric_plot")),
        "predictions": utils.plot_predictions(data.test_images, result, save=save("predictions")),
        "misclassified": utils.plot_misclassified(data.test_images, result,
                                                  save=save("misclassified")),
        "per_class": utils.plot_per_class(result, save=save("per_class")),
        "confusion_matrix": utils.plot_confusion(result, save=save("confusion_matrix")),
        "conv1_filters": explain.plot_conv1_filters(model, save=save("conv1_filters")),
        "feature_maps": explain.plot_feature_maps(
            model, data.test_images[0], explain.receptive_field(Net()), save=save("feature_maps"),
            title=title),
        "saliency": explain.plot_saliency(model, data.test_images, data.test_labels, result,
                                          save=save("saliency")),
    }
    command = runs.read_run_info(log_dir / f"{run_id}.json").get("command", "python train.py")
    return RunReport(run_id, command, history, result, figures)


def results_record(report: RunReport) -> dict:
    """The figures of the README's results block: the run's epochs and its re-scored checkpoint."""
    result = report.result
    return {"run_id": report.run_id, "command": report.command, "split": report.history.split,
            "epochs": report.history.rows(),
            "rescored": {"correct": result.correct, "total": result.total,
                         "accuracy": result.accuracy, "loss": result.loss}}


def epoch_table(rows: list[dict]) -> str:
    """One line per epoch of a run's CSV rows."""
    lines = ["| epoch | lr at start | train loss | train acc (%) | test loss | test acc (%) | "
             "correct | train s |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['epoch']:g} | {r['lr']:.4g} | {r['train_loss']:.4f} | "
                     f"{r['train_acc']:.2f} | {r['eval_loss']:.4f} | {r['eval_acc']:.2f} | "
                     f"{r['eval_correct']:,}/{r['eval_total']:,} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def results_section(record: dict) -> str:
    """The README's results block from ``results_record``: epochs, final figures, pictures."""
    run_id, rows, final = record["run_id"], record["epochs"], record["rescored"]
    return "\n".join([
        f"Run `{run_id}` (`{record['command']}`), read from `logs/{run_id}.csv` and re-checked by "
        f"evaluating `checkpoints/{run_id}.pt` on all {final['total']:,} test images.",
        "",
        epoch_table(rows),
        "",
        f"**Final test accuracy: {final['accuracy']:.2f}%** "
        f"({final['correct']:,}/{final['total']:,}, test loss {final['loss']:.4f}) after "
        f"{rows[-1]['epoch']:g} epochs and "
        f"{sum(r['seconds'] for r in rows):.0f} s of training.",
        "",
        "![Training and test loss and accuracy per epoch](images/metric_plot.png)",
        "",
        f"The first 20 test images with their predictions, and the 20 most confident of all "
        f"{final['total'] - final['correct']} mistakes:",
        "",
        "![The first 20 test images with true and predicted labels](images/predictions.png)",
        "![Most confident mistakes on the test set](images/misclassified.png)",
        "",
        "Accuracy of each class over all of its test images, and the confusion matrix:",
        "",
        "![Per-class accuracy](images/per_class.png)",
        "![Confusion matrix](images/confusion_matrix.png)",
        "",
        "Inside the Net: conv1's 32 learned 3×3 filters; the feature maps of one test image at "
        "each conv layer, with that layer's receptive field; and saliency maps, |∂ log p / ∂ "
        "pixel|, of the most confident mistakes.",
        "",
        "![conv1 filters](images/conv1_filters.png)",
        "![Feature maps of one test image](images/feature_maps.png)",
        "![Saliency of the most confident mistakes](images/saliency.png)",
    ])


def targets(readme: Path, images: Path | None) -> list[Path]:
    """Every file a report replaces: the README, its record and (unless None) the pictures."""
    pictures = [Path(images) / f"{name}.png" for name in FIGURES] if images is not None else []
    return [Path(readme), record_path(readme), *pictures]


def check_writable(paths: list[Path]) -> None:
    """``OSError`` in one line unless each of ``paths`` and its folder (or the nearest folder that
    exists) can be written: found before anything is, so that a report writes all or nothing."""
    for path in paths:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "it is a folder")
            if path.exists():
                open(path, "ab").close()  # opened, not changed: a read-only file fails here
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder")
            tempfile.TemporaryFile(dir=folder).close()  # the atomic writer's temporary file
        except OSError as exc:
            raise OSError(f"cannot write {path}: {exc.strerror or exc}; nothing was "
                          "written") from None


@contextmanager
def staged_images(images: Path | None) -> Iterator[Path | None]:
    """A temporary folder beside ``images`` to draw in, removed afterwards: ``publish`` moves the
    pictures into place only once every one of them was drawn."""
    if images is None:
        yield None
        return
    Path(images).parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{Path(images).name}-", dir=Path(images).parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(readme: Path, report: RunReport, images: Path | None, staged: Path | None) -> Path:
    """Move the pictures drawn in ``staged`` into ``images``, then write the record and the README
    (``write_readme``); every target is checked first. Returns the record's path."""
    text, record = readme_update(readme, report)  # a README without its blocks: nothing written
    check_writable(targets(readme, images))
    if images is not None and staged is not None:
        Path(images).mkdir(parents=True, exist_ok=True)
        for name in FIGURES:
            os.replace(staged / f"{name}.png", Path(images) / f"{name}.png")  # one folder's rename
    path = write_json(record_path(readme), record)
    atomic_write_text(readme, text)
    return path


def write_readme(readme: Path, report: RunReport) -> Path:
    """Write the results record (docs/results.json beside ``readme``) and regenerate the README's
    summary, receptive-field and results blocks from it; returns the record's path. A README
    without those blocks raises ``ValueError`` before anything is written."""
    text, record = readme_update(readme, report)
    path = write_json(record_path(readme), record)
    atomic_write_text(readme, text)
    return path


def readme_update(readme: Path, report: RunReport) -> tuple[str, dict]:
    """The README's new text and the record it is drawn from, neither written yet."""
    record = results_record(report)
    table = io.StringIO()
    with redirect_stdout(table):
        summary(Net(), (1, 28, 28), device="cpu")
    text = readme.read_text(encoding="utf-8")
    for name, content in (("summary", f"```text\n{table.getvalue().rstrip()}\n```"),
                          ("rf", explain.receptive_field_table(explain.receptive_field(Net()))),
                          ("results", results_section(record))):
        text = replace_block(text, name, content, str(readme))
    return text, record
