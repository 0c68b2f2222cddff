"""Regenerate README.md's model and results blocks, docs/results.json and images/*.png from one run.

    python -m tools.report               # the newest finished run in logs/ that has a checkpoint
    python -m tools.report --replace     # ... even when the README shows another run's results
    python -m tools.report --run 20261124-101500
    python -m tools.report --notebook S5.ipynb   # run the notebook (it trains and draws --images),
                                                 # then report its run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from s5.checkpoint import CheckpointError, NoCheckpointError
from s5.cli import UsageError, add_data_arguments, fail, program
from s5.mnist import MNIST_MD5, MnistError, load_mnist
from s5.report import (
    ReportError,
    check_writable,
    find_run,
    publish,
    record_path,
    reported_run,
    rescore_and_draw,
    staged_images,
    targets,
)

PROG = program("tools.report")


def execute_notebook(path: Path, parameters: dict | None = None) -> None:
    """Run a notebook top to bottom and save it with its outputs; ``parameters`` are set at the end
    of its cell tagged "parameters" for this run only. Of tqdm's carriage-return updates only what
    a terminal would finally show is kept."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if parameters and len(tagged) != 1:
        raise ReportError(f"{path} needs one cell tagged parameters to set {', '.join(parameters)}")
    defaults = tagged[0].source if tagged else ""
    if parameters:
        tagged[0].source = "\n".join([defaults, *(f"{k} = {v!r}" for k, v in parameters.items())])
    nbclient.NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    if parameters:  # the saved notebook keeps its own defaults: a user's run draws elsewhere
        tagged[0].source = defaults
    for cell in nb.cells:
        merged = []
        for output in cell.get("outputs", []):
            if (merged and output.output_type == merged[-1].output_type == "stream"
                    and output.name == merged[-1].name):
                merged[-1].text += output.text
            else:
                merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                lines = output.text.split("\n")
                output.text = "\n".join(line.rsplit("\r", 1)[-1] for line in lines)
        if "outputs" in cell:
            cell.outputs = merged
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run id (logs/<run>.csv and checkpoints/<run>.pt); default: the "
                   "newest")
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--images", default="images")
    p.add_argument("--readme", default="README.md",
                   help="the README to update; its results record is docs/results.json beside it")
    add_data_arguments(p)
    p.add_argument("--notebook", type=Path,
                   help="execute this notebook in place first (it trains and draws --images, its "
                        "IMAGES_DIR), then update the README from its run (implies --replace)")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing the README's results when they come from another run")
    args = p.parse_args(argv)
    if not Path(args.readme).is_file():  # before the notebook trains or anything is drawn
        return fail(PROG, f"--readme {args.readme}: no such file", 2)
    if args.notebook:
        if not args.notebook.is_file():
            return fail(PROG, f"--notebook {args.notebook}: no such notebook", 2)
        # the maintainer's run: its pictures are the README's, --images (as seen from the notebook)
        images_dir = os.path.relpath(Path(args.images).resolve(), args.notebook.resolve().parent)
        try:
            execute_notebook(args.notebook, {"IMAGES_DIR": images_dir})
        except ReportError as exc:
            return fail(PROG, exc, 2)
    readme, log_dir = Path(args.readme), Path(args.log_dir)
    checkpoint_dir = Path(args.checkpoint_dir)
    try:
        run_id, why = find_run(log_dir, checkpoint_dir, args.run)
    except (UsageError, NoCheckpointError) as exc:
        return fail(PROG, exc, exc.exit_status)
    print(f"run {run_id}: {why}")
    current = reported_run(readme)
    if current not in (None, run_id) and not (args.replace or args.notebook):
        return fail(PROG, f"{readme} reports run {current} ({record_path(readme)}); run {run_id} "
                          "would replace its results and images/: add --replace to do that (or "
                          "--readme and --images elsewhere)")
    # after the notebook, its pictures are already drawn from this very run: only the README is left
    images = None if args.notebook else Path(args.images)
    try:
        check_writable(targets(readme, images))  # a read-only target: found before any drawing
        data = load_mnist(args.data_dir, md5s=None if args.no_verify else MNIST_MD5)
        with staged_images(images) as staged:  # drawn aside, moved in with the README: all or none
            report = rescore_and_draw(run_id, data, log_dir=log_dir,
                                      checkpoint_dir=checkpoint_dir, images=staged)
            record = publish(readme, report, images, staged)
    except (CheckpointError, MnistError, ReportError, OSError, ValueError) as exc:
        return fail(PROG, exc, getattr(exc, "exit_status", 1))  # one line, no traceback
    drawn = "" if images is None else f" and {images}/"
    print(f"{readme}, {record}{drawn} regenerated from run {run_id}: "
          f"{report.result.accuracy:.2f}% test accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
