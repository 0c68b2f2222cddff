"""Regenerate README.md's model and results sections and images/*.png from one logged run (`make report`).

    python -m tools.report                   # the newest finished run in logs/ that has a checkpoint
    python -m tools.report --replace         # ... even when the README shows another run's results
    python -m tools.report --run 20261124-101500
    python -m tools.report --notebook S5.ipynb   # first run the notebook (it trains), then report on its run

Nothing is typed by hand: the tables come from torchsummary, the receptive-field walk, the run's CSV, and the
run's checkpoint evaluated again on the full 10k test set (which must reproduce the logged accuracy).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torchsummary import summary

import utils
from model import Net
from s5 import explain, runs
from s5.checkpoint import CheckpointError, NoCheckpointError, load_checkpoint, load_model_state
from s5.files import update_block
from s5.mnist import MNIST_MD5, MnistData, MnistError, load_mnist


class UsageError(ValueError):
    """A --run that names no run: exit 2, as every usage error of the package's command lines."""


def is_finished(info: dict, history: utils.History) -> bool:
    """Whether a run trained every epoch it was asked for (its CSV reaches the epochs of its settings)."""
    epochs = info.get("settings", {}).get("epochs")
    return bool(len(history)) and epochs is not None and history.epoch[-1] >= float(epochs) - 1e-6


def find_run(log_dir: Path, checkpoint_dir: Path, run_id: str | None = None) -> tuple[str, str]:
    """The run to report and why it was picked: the given run id (a name in ``log_dir``, never a path), or the
    newest finished training run on the test split that has a checkpoint, as its run file (logs/<run-id>.json)
    records it: benchmarks, tuning runs, dry runs and runs still training or stopped early are not picked."""
    if run_id:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", run_id):
            raise UsageError(f"--run takes a run id such as 20261204-220208, got {run_id!r}")
        if not (log_dir / f"{run_id}.csv").is_file():
            raise UsageError(f"no run {run_id} in {log_dir}/ (no {run_id}.csv); `ls {log_dir}` lists the runs")
        return run_id, "given with --run"
    candidates = []
    for info_path in sorted(log_dir.glob("*.json")):
        info = runs.read_run_info(info_path)
        run = info.get("run_id", "")
        csv_path = log_dir / f"{run}.csv"
        if (info.get("kind") == "train" and info.get("split") == "test" and csv_path.exists()
                and (checkpoint_dir / f"{run}.pt").exists() and is_finished(info, utils.load_history(csv_path))):
            candidates.append(run)
    if not candidates:
        raise NoCheckpointError(f"no finished training run with a checkpoint in {log_dir}/ and {checkpoint_dir}/: "
                                "run `make train` first")
    return candidates[-1], "the newest finished training run on the test set with a checkpoint"


def reported_run(readme: Path) -> str | None:
    """The run id the README's results block reports now, if any."""
    found = re.search(r"<!-- results:start -->\nRun `([^`]+)`", readme.read_text()) if readme.is_file() else None
    return found[1] if found else None


def run_augmentation(state: dict) -> utils.Augment:
    """The augmentation a checkpoint's run trained with (a v1 checkpoint: read from its flags)."""
    return utils.Augment(**state["augment"]) if "augment" in state else utils.Augment.from_settings(state["args"])


@dataclass
class RunReport:
    """A logged run, its checkpoint re-scored on the whole test set, and the pictures drawn from them."""

    run_id: str
    command: str
    history: utils.History
    result: utils.EvalResult
    figures: dict[str, Figure]


def rescore_and_draw(run_id: str, data: MnistData, *, log_dir: str | Path = "logs",
                     checkpoint_dir: str | Path = "checkpoints", images: str | Path | None = "images") -> RunReport:
    """Evaluate the run's checkpoint again on all test images, refuse unless it reproduces the logged final
    accuracy, then draw every picture (saved as images/*.png unless ``images`` is None). The notebook and
    ``make report`` both call this."""
    log_dir, checkpoint_dir = Path(log_dir), Path(checkpoint_dir)
    history = utils.load_history(log_dir / f"{run_id}.csv")
    if history.split != "test":
        raise SystemExit(f"report.py: error: run {run_id} was evaluated on a validation split; the README "
                         "reports test-set runs only")
    state = load_checkpoint(checkpoint_dir / f"{run_id}.pt")
    # where the data are, in the layout training evaluated in: the same numbers as the log on any device
    model = load_model_state(Net(), state, checkpoint_dir / f"{run_id}.pt").to(
        data.test_images.device, memory_format=torch.channels_last).eval()
    result = utils.test(model, utils.DeviceLoader(data.test_images, data.test_labels, 1000))
    if (result.correct, result.total) != (history.eval_correct[-1], history.eval_total[-1]):
        raise SystemExit(f"report.py: error: checkpoint gives {result.correct}/{result.total}, the log says "
                         f"{history.eval_correct[-1]}/{history.eval_total[-1]}: not the same run?")

    def save(name: str) -> Path | None:
        return None if images is None else Path(images) / f"{name}.png"

    figures = {
        "samples": utils.plot_samples(data.train_images, data.train_labels, save=save("samples")),
        "augmentation": utils.plot_augmentation(data.train_images, run_augmentation(state), save=save("augmentation")),
        "metric_plot": utils.plot_metrics(history, save=save("metric_plot")),
        "predictions": utils.plot_predictions(data.test_images, result, save=save("predictions")),
        "misclassified": utils.plot_misclassified(data.test_images, result, save=save("misclassified")),
        "per_class": utils.plot_per_class(result, save=save("per_class")),
        "confusion_matrix": utils.plot_confusion(result, save=save("confusion_matrix")),
        # inside the Net: what it learned, what each conv layer makes of one test image, where mistakes looked
        "conv1_filters": explain.plot_conv1_filters(model, save=save("conv1_filters")),
        "feature_maps": explain.plot_feature_maps(
            model, data.test_images[0], explain.receptive_field(Net()), save=save("feature_maps"),
            title=f"What each conv layer sees: test image 0 (label {int(data.test_labels[0])})"),
        "saliency": explain.plot_saliency(model, data.test_images, data.test_labels, result, save=save("saliency")),
    }
    command = runs.read_run_info(log_dir / f"{run_id}.json").get("command", "python train.py")
    return RunReport(run_id, command, history, result, figures)


def execute_notebook(path: Path) -> None:
    """Run a notebook top to bottom and save it with its outputs; of tqdm's carriage-return updates only
    what a terminal would finally show is kept."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        merged = []
        for output in cell.get("outputs", []):
            if merged and output.output_type == merged[-1].output_type == "stream" and output.name == merged[-1].name:
                merged[-1].text += output.text
            else:
                merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                output.text = "\n".join(line.rsplit("\r", 1)[-1] for line in output.text.split("\n"))
        if "outputs" in cell:
            cell.outputs = merged
    nbformat.write(nb, path)


def epoch_table(history: utils.History) -> str:
    lines = ["| epoch | lr at start | train loss | train acc (%) | test loss | test acc (%) | correct | train s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in history.rows():
        lines.append(f"| {r['epoch']:g} | {r['lr']:.4g} | {r['train_loss']:.4f} | {r['train_acc']:.2f} | "
                     f"{r['eval_loss']:.4f} | {r['eval_acc']:.2f} | {r['eval_correct']:,}/{r['eval_total']:,} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def results_section(report: RunReport) -> str:
    """The README's results block: the epoch table, the final figures and the pictures."""
    history, result, run_id = report.history, report.result, report.run_id
    return "\n".join([
        f"Run `{run_id}` (`{report.command}`), read from `logs/{run_id}.csv` and re-checked by evaluating "
        f"`checkpoints/{run_id}.pt` on all {result.total:,} test images.",
        "",
        epoch_table(history),
        "",
        f"**Final test accuracy: {result.accuracy:.2f}%** ({result.correct:,}/{result.total:,}, test loss "
        f"{result.loss:.4f}) after {history.epoch[-1]:g} epochs and {sum(history.seconds):.0f} s of training.",
        "",
        "![Training and test loss and accuracy per epoch](images/metric_plot.png)",
        "",
        f"The first 20 test images with their predictions, and the 20 most confident of all "
        f"{result.total - result.correct} mistakes:",
        "",
        "![The first 20 test images with true and predicted labels](images/predictions.png)",
        "![Most confident mistakes on the test set](images/misclassified.png)",
        "",
        "Accuracy of each class over all of its test images, and the confusion matrix:",
        "",
        "![Per-class accuracy](images/per_class.png)",
        "![Confusion matrix](images/confusion_matrix.png)",
        "",
        "Inside the Net: conv1's 32 learned 3×3 filters; the feature maps of one test image at each conv layer, with "
        "that layer's receptive field; and saliency maps, |∂ log p / ∂ pixel|, of the most confident mistakes.",
        "",
        "![conv1 filters](images/conv1_filters.png)",
        "![Feature maps of one test image](images/feature_maps.png)",
        "![Saliency of the most confident mistakes](images/saliency.png)",
    ])


def write_readme(readme: Path, report: RunReport) -> None:
    """Regenerate the README's summary, receptive-field and results blocks."""
    table = io.StringIO()
    with redirect_stdout(table):
        summary(Net(), (1, 28, 28), device="cpu")
    update_block(readme, "summary", f"```text\n{table.getvalue().rstrip()}\n```")
    update_block(readme, "rf", explain.receptive_field_table(explain.receptive_field(Net())))
    update_block(readme, "results", results_section(report))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run id (logs/<run>.csv and checkpoints/<run>.pt); default: the newest")
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--images", default="images")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check (for tiny test data)")
    p.add_argument("--notebook", type=Path,
                   help="execute this notebook in place first (it trains and draws images/), then update the README "
                        "from its run (implies --replace)")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing the README's results when they come from another run")
    args = p.parse_args(argv)
    if args.notebook:
        if not args.notebook.is_file():
            p.error(f"--notebook {args.notebook}: no such notebook")
        execute_notebook(args.notebook)
    log_dir, checkpoint_dir = Path(args.log_dir), Path(args.checkpoint_dir)
    try:
        run_id, why = find_run(log_dir, checkpoint_dir, args.run)
    except UsageError as exc:
        p.error(str(exc))
    except NoCheckpointError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return exc.exit_status
    print(f"run {run_id}: {why}")
    current = reported_run(Path(args.readme))
    if current not in (None, run_id) and not (args.replace or args.notebook):
        raise SystemExit(f"report.py: error: {args.readme} reports run {current}; run {run_id} would replace its "
                         "results and images/: add --replace to do that (or --readme and --images elsewhere)")
    # after the notebook, its pictures are already drawn from this very run: only the README is left
    images = None if args.notebook else args.images
    try:
        data = load_mnist(args.data_dir, md5s=None if args.no_verify else MNIST_MD5)
        report = rescore_and_draw(run_id, data, log_dir=log_dir, checkpoint_dir=checkpoint_dir, images=images)
    except (CheckpointError, MnistError) as exc:  # missing, damaged, foreign or hostile: one line, no traceback
        print(f"report.py: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", 1)
    write_readme(Path(args.readme), report)
    drawn = "" if images is None else f" and {images}/"
    print(f"{args.readme}{drawn} regenerated from run {run_id}: {report.result.accuracy:.2f}% test accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
