"""Read the handwritten digit in each of your image files with a trained Net:

    python predict.py IMAGE_OR_FOLDER... [--checkpoint PATH] [--json]

Exit status: 0 every file was predicted; 1 some files could not be read (the others are still
printed) or the checkpoint is unusable; 2 usage error or no checkpoint file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from s5.cli import fail, program, quiet_ctrl_c

quiet_ctrl_c()  # before torch loads: Ctrl-C then ends in one line
import numpy as np  # noqa: E402

from s5 import digits, image, onnx_predict  # noqa: E402
from s5.checkpoint import CheckpointError, load_given_or_newest  # noqa: E402
from s5.image import ImageError  # noqa: E402

PROG = program("predict.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read the digit in each image file with a trained Net.")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (PNG, JPEG, BMP, ...) or folders")
    parser.add_argument("--checkpoint", type=Path,
                        help="a checkpoint of train.py (default: newest checkpoints/*.pt)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of results instead of text")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, checkpoint, about = load_given_or_newest(args.checkpoint)
    except CheckpointError as exc:  # 2: none there; 1: there but unusable (damaged, foreign, ...)
        return fail(PROG, exc, exc.exit_status)
    print(f"checkpoint: {about}", file=sys.stderr)
    exported = digits.exported_net(checkpoint)  # its ONNX export, where onnxruntime is installed
    if exported is not None:
        print(f"onnxruntime: {exported.path} (the export of this checkpoint by python -m "
              "tools.export)", file=sys.stderr)
    paths = image.expand(args.images)
    entries = [{"file": str(p)} for p in paths]
    read = image.read_images(paths)  # every core for a large folder
    for entry, result in zip(entries, read, strict=True):
        if isinstance(result, ImageError):
            entry["error"] = str(result)
    images = [r for r in read if not isinstance(r, ImageError)]
    good = [e for e in entries if "error" not in e]
    try:
        predictions = digits.predict(exported or model, np.stack(images)) if images else []
    except ValueError as exc:  # weights that give NaN: the file is there but unusable (1)
        return fail(PROG, f"{checkpoint}: {exc}", 1)
    for entry, p in zip(good, predictions, strict=True):
        entry.update(onnx_predict.answer(p.probabilities))
    if args.json:
        print("[\n" + ",\n".join(f"  {json.dumps(e)}" for e in entries) + "\n]")  # one file a line
    else:
        for e in entries:
            if "error" in e:
                fail(PROG, e["error"])
            else:
                top3 = ", ".join(f"{d} {q:.3f}" for d, q in e["top3"])
                flag = ", uncertain" if e["uncertain"] else ""
                print(f"{e['file']}: {e['digit']} (probability {e['probability']:.3f}{flag}; "
                      f"top 3: {top3})")
    return 0 if len(good) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
