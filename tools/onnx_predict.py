"""Read digits with an ONNX export of the Net in onnxruntime, without torch:

    python -m tools.onnx_predict MODEL.onnx IMAGE_OR_FOLDER...

Image files are read as predict.py reads them; a .npy array holds MNIST-style digits already.
Exit status: 0 every file was predicted; 1 some files could not be read (the others are still
printed) or the model is unusable; 2 usage error or no model file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        session = onnx_predict.load(args.model)
    except Exception as exc:  # onnxruntime raises its own exception types for missing or bad files
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        # as for checkpoints: 2 when there is no file, 1 when it is there but unusable
        return fail(PROG, f"{args.model}: cannot load the model: {reason}",
                    1 if args.model.is_file() else 2)
    paths = image.expand(args.images)
    status = 0
    for path, digits in zip(paths, onnx_predict.read_all(paths), strict=True):
        if isinstance(digits, ImageError):  # an unreadable file: reported, the others go on
            status = fail(PROG, digits)
            continue
        answers = onnx_predict.best_digits(session, digits)
        for i, (digit, probability, uncertain) in enumerate(answers):
            label = f"{path}[{i}]" if len(answers) > 1 else str(path)
            flag = ", uncertain" if uncertain else ""
            print(f"{label}: {digit} (probability {probability:.3f}{flag})")
    return status


if __name__ == "__main__":
    sys.exit(main())
