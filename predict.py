"""Read handwritten digits in your own image files with a trained Net.

    python predict.py IMAGE_OR_FOLDER... [--checkpoint PATH] [--json]

Each image is made to look like an MNIST digit (see ``s5.image.preprocess``), then classified; answers whose
probability is below ``digits.UNCERTAIN_BELOW`` are marked uncertain. When `python -m tools.export CHECKPOINT` has
written the checkpoint's ONNX file beside it and onnxruntime is installed (requirements-extras.txt), the Net runs
in onnxruntime instead (the same digits, faster). From Python:

    from s5 import digits
    from s5.checkpoint import load_trained_net
    net = load_trained_net("checkpoints/<run-id>.pt")
    [result] = digits.predict(net, digits.read_image("seven.png"))  # or a (N, 28, 28) uint8 batch
    result.digit, result.probability, result.top3, result.uncertain

Exit status: 0 every file was predicted; 1 some files could not be read (the others are still
printed); 2 usage error or no usable checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from s5 import digits, image
from s5.checkpoint import CheckpointError, load_given_or_newest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Read the digit in each image file with a trained Net.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, BMP, ...) or folders")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of train.py (default: newest checkpoints/*.pt)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of results instead of text")
    args = parser.parse_args(argv)
    try:
        model, checkpoint, about = load_given_or_newest(args.checkpoint)
    except CheckpointError as exc:
        print(f"predict.py: error: {exc}", file=sys.stderr)
        return exc.exit_status  # 2: none there; 1: there but unusable (damaged, foreign, refused)
    print(f"checkpoint: {about}", file=sys.stderr)
    exported = digits.exported_net(checkpoint)  # its ONNX export, when there is one and onnxruntime is installed
    if exported is not None:
        print(f"onnxruntime: {exported.path} (the export of this checkpoint by python -m tools.export)", file=sys.stderr)
    paths = image.expand(args.images)
    entries = [{"file": str(p)} for p in paths]
    read = digits.read_images(paths)  # both cores for a large folder
    for entry, result in zip(entries, read, strict=True):
        if isinstance(result, digits.ImageError):
            entry["error"] = str(result)
    images = [r for r in read if not isinstance(r, digits.ImageError)]
    good = [e for e in entries if "error" not in e]
    try:
        predictions = digits.predict(exported or model, torch.stack(images)) if images else []
    except ValueError as exc:  # a checkpoint whose weights give NaN
        print(f"predict.py: error: {checkpoint}: {exc}", file=sys.stderr)
        return 2
    for entry, p in zip(good, predictions, strict=True):
        entry.update(digit=p.digit, probability=round(p.probability, 6), top3=[[d, round(q, 6)] for d, q in p.top3],
                     uncertain=p.uncertain)
    if args.json:
        print("[\n" + ",\n".join(f"  {json.dumps(e)}" for e in entries) + "\n]")  # one file a line
    else:
        for e in entries:
            if "error" in e:
                print(f"error: {e['error']}", file=sys.stderr)
            else:
                top3 = ", ".join(f"{d} {q:.3f}" for d, q in e["top3"])
                flag = ", uncertain" if e["uncertain"] else ""
                print(f"{e['file']}: {e['digit']} (probability {e['probability']:.3f}{flag}; top 3: {top3})")
    return 0 if len(good) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
