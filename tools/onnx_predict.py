"""Read digits with an ONNX export of the Net in onnxruntime, without torch:

    python -m tools.onnx_predict MODEL.onnx IMAGE_OR_FOLDER... [--json]

Image files are read as predict.py reads them; a .npy array holds MNIST-style digits already.
Exit status: 0 every file was predicted; 1 some files could not be read (the others are still
printed) or the model is unusable; 2 usage error or no model file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from s5 import image, onnx_predict
from s5.cli import fail, program
from s5.image import ImageError

PROG = program("tools.onnx_predict")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read the digit in each image file, or each digit of a .npy array "
        "(N, 28, 28), with an ONNX export of the Net in onnxruntime; torch is not needed.")
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="an export written by python -m tools.export")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files (PNG, JPEG, ...), .npy arrays, or folders of them")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of results instead of text (as predict.py --json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if problem := onnx_predict.no_model_file(args.model):  # before onnxruntime opens a FIFO
        return fail(PROG, problem, 2)
    try:
        session = onnx_predict.load(args.model)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        return fail(PROG, f"{args.model}: cannot load the model: {reason}", 1)
    paths = image.expand(args.images)
    entries: list[dict] = []
    for path, digits in zip(paths, onnx_predict.read_all(paths), strict=True):
        if isinstance(digits, ImageError):  # an unreadable file: reported, the others go on
            entries.append({"file": str(path), "error": str(digits)})
            continue
        try:
            probs = np.exp(onnx_predict.log_probs(session, digits))
        except onnx_predict.ModelError as exc:  # as predict.py refuses a checkpoint giving NaN
            return fail(PROG, f"{args.model}: {exc}", 1)
        for i, p in enumerate(probs):
            label = f"{path}[{i}]" if len(probs) > 1 else str(path)
            entries.append({"file": label, **onnx_predict.answer(p)})
    if args.json:
        print("[\n" + ",\n".join(f"  {json.dumps(e)}" for e in entries) + "\n]")  # one file a line
    else:  # with --json a file's error is its entry's "error", as in predict.py --json
        for e in entries:
            if "error" in e:
                fail(PROG, e["error"])
                continue
            flag = ", uncertain" if e["uncertain"] else ""
            print(f"{e['file']}: {e['digit']} (probability {e['probability']:.3f}{flag})")
    return 1 if any("error" in e for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
