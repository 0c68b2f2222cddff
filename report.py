"""Regenerate README.md's model and results sections and images/*.png from one logged run (`make report`).

    python report.py                   # the newest finished run in logs/ that has a checkpoint
    python report.py --run 20261124-101500
    python report.py --notebook S5.ipynb   # first run the notebook (it trains), then report on its run

Nothing is typed by hand: the tables come from torchsummary, the receptive-field walk, the run's CSV, and the
run's checkpoint evaluated again on the full 10k test set (which must reproduce the logged accuracy).
"""

from __future__ import annotations

import argparse
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

from torchsummary import summary

import train
import utils
from model import Net


def find_run(log_dir: Path, checkpoint_dir: Path, run_id: str | None) -> str:
    """The given run id, or the newest run with a CSV and a checkpoint that is no dry run or benchmark."""
    if run_id:
        return run_id
    candidates = [p.stem for p in sorted(log_dir.glob("*.csv"))
                  if "dry-run" not in p.stem and "bench" not in p.stem and (checkpoint_dir / f"{p.stem}.pt").exists()]
    if not candidates:
        raise SystemExit(f"no finished run with a checkpoint in {log_dir}/ and {checkpoint_dir}/: run `make train`")
    return candidates[-1]


def replace_block(text: str, name: str, content: str) -> str:
    """Replace what stands between <!-- name:start --> and <!-- name:end --> in ``text``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"README has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{content.rstrip()}\n{end}{rest.split(end, 1)[1]}"


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
        lines.append(f"| {r['epoch']} | {r['lr']:.4g} | {r['train_loss']:.4f} | {r['train_acc']:.2f} | "
                     f"{r['test_loss']:.4f} | {r['test_acc']:.2f} | {r['test_correct']:,}/{r['test_total']:,} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run id (logs/<run>.csv and checkpoints/<run>.pt); default: the newest")
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--images", default="images")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check (for tiny test data)")
    p.add_argument("--notebook", type=Path, help="execute this notebook in place first, then report on its run")
    args = p.parse_args(argv)
    if args.notebook:
        execute_notebook(args.notebook)
    log_dir, checkpoint_dir, images = Path(args.log_dir), Path(args.checkpoint_dir), Path(args.images)
    run_id = find_run(log_dir, checkpoint_dir, args.run)
    history = utils.load_history(log_dir / f"{run_id}.csv")
    command = (log_dir / f"{run_id}.log").read_text().splitlines()[0].split(": ", 2)[-1]

    data = utils.load_mnist(args.data_dir, md5s=None if args.no_verify else utils.MNIST_MD5)
    checkpoint = utils.load_checkpoint(checkpoint_dir / f"{run_id}.pt")
    model = utils.load_model_state(Net(), checkpoint, checkpoint_dir / f"{run_id}.pt").eval()
    result = utils.test(model, utils.DeviceLoader(data.test_images, data.test_labels, 1000))
    if (result.correct, result.total) != (history.test_correct[-1], history.test_total[-1]):
        raise SystemExit(f"checkpoint gives {result.correct}/{result.total}, the log says "
                         f"{history.test_correct[-1]}/{history.test_total[-1]}: not the same run?")

    utils.plot_samples(data.train_images, data.train_labels, save=images / "samples.png")
    utils.plot_augmentation(data.train_images, train.make_augment(checkpoint["args"]), save=images / "augmentation.png")
    utils.plot_metrics(history, save=images / "metric_plot.png")
    utils.plot_predictions(data.test_images, result, save=images / "predictions.png")
    utils.plot_misclassified(data.test_images, result, save=images / "misclassified.png")
    utils.plot_per_class(result, save=images / "per_class.png")
    utils.plot_confusion(result, save=images / "confusion_matrix.png")

    table = io.StringIO()
    with redirect_stdout(table):
        summary(Net(), (1, 28, 28), device="cpu")
    results = "\n".join([
        f"Run `{run_id}` (`{command}`), read from `logs/{run_id}.csv` and re-checked by evaluating "
        f"`checkpoints/{run_id}.pt` on all {result.total:,} test images.",
        "",
        epoch_table(history),
        "",
        f"**Final test accuracy: {result.accuracy:.2f}%** ({result.correct:,}/{result.total:,}, test loss "
        f"{result.loss:.4f}) after {history.epoch[-1]} epochs and {sum(history.seconds):.0f} s of training.",
        "",
        "### Accuracy plot",
        "",
        "![Training and test loss and accuracy per epoch](images/metric_plot.png)",
        "",
        "### Sample output",
        "",
        "![The first 20 test images with true and predicted labels](images/predictions.png)",
        "",
        "### Misclassified images",
        "",
        f"All {result.total - result.correct} mistakes were ranked by the model's confidence; the 20 most confident:",
        "",
        "![Most confident mistakes on the test set](images/misclassified.png)",
        "",
        "### Accuracy report for each class",
        "",
        "Counted on every test image of each class (about 1,000 per class):",
        "",
        "```text",
        utils.per_class_report(result),
        "```",
        "",
        "![Per-class accuracy](images/per_class.png)",
        "",
        "![Confusion matrix](images/confusion_matrix.png)",
    ])
    readme = Path(args.readme)
    text = readme.read_text()
    text = replace_block(text, "summary", f"```text\n{table.getvalue().rstrip()}\n```")
    text = replace_block(text, "rf", utils.receptive_field_table(utils.receptive_field(Net())))
    text = replace_block(text, "results", results)
    readme.write_text(text)
    print(f"README.md and {images}/ regenerated from run {run_id}: {result.accuracy:.2f}% test accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
