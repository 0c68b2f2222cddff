"""Export a checkpoint to ONNX and torch.export, then check both against PyTorch on MNIST's test
set (``python -m tools.export CHECKPOINT --help``).

Exit status: 0 exported and every check passed; 1 a check failed, or the checkpoint is unusable;
2 usage error, no checkpoint file, missing extras or MNIST, or an output file already exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from s5 import checkpoint, export, mnist
from s5.cli import add_data_arguments, bounded, fail, program

PROG = program("tools.export")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Write CHECKPOINT's Net as DIR/<name>.onnx (input 'images' "
        "(N, 1, 28, 28) normalized, output 'log_probs' (N, 10)) and DIR/<name>.pt2 "
        "(torch.export.load), never over an existing file; then compare their digits and "
        "log-probabilities with PyTorch's on the MNIST test set.")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                   help="a checkpoint written by train.py")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder for the .onnx and .pt2 files (default: the checkpoint's folder)")
    add_data_arguments(p)
    p.add_argument("--skip-compare", action="store_true",
                   help="only write the files; do not run the test set")
    p.add_argument("--no-program", action="store_true",
                   help="write only the ONNX file, no torch.export program")
    p.add_argument("--bench", action="store_true",
                   help="also measure onnxruntime vs PyTorch images/s on the CPU")
    p.add_argument("--bench-seconds", type=bounded(float, 0, 600, low_open=True), default=2.0,
                   help="time per speed measurement (default: 2)")
    p.add_argument("--threads", type=bounded(int, 1, 1024),
                   help="intra-op threads of both runtimes in --bench (default: torch's)")
    return p


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [name for name in export.EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        return fail(PROG, f"it needs {', '.join(missing)}: pip install -r requirements-extras.txt",
                    2)
    try:
        model = checkpoint.load_trained_net(args.checkpoint, "cpu")
    except checkpoint.CheckpointError as exc:
        return fail(PROG, _first_line(exc), exc.exit_status)
    onnx_path, program_path = export.export_paths(args.checkpoint, args.out)
    program_path = None if args.no_program else program_path
    try:
        export.refuse_existing(*(q for q in (onnx_path, program_path) if q is not None))
        data = None
        if not args.skip_compare or args.bench:  # MNIST read before the slow exports: fail early
            data = mnist.load_mnist(args.data_dir, md5s=None if args.no_verify else mnist.MNIST_MD5,
                                    log=lambda message: print(message, file=sys.stderr))
        start = time.perf_counter()
        writers = {onnx_path: export.onnx_writer(model, source=args.checkpoint)}
        if program_path is not None:
            writers[program_path] = export.program_writer(model)
        export.write_all_or_none(writers)  # both files, or neither
        print(f"wrote {onnx_path} (ONNX, dynamic batch; input {export.INPUT_NAME!r} "
              f"(N, 1, 28, 28) normalized, output {export.OUTPUT_NAME!r} (N, 10) "
              f"log-probabilities) in {time.perf_counter() - start:.1f}s")
        if program_path is not None:
            print(f"wrote {program_path} (torch.export program, dynamic batch; "
                  "torch.export.load(path).module())")
    except mnist.MnistError as exc:  # it lists every source tried and how to place the files
        return fail(PROG, exc, 2)
    except (export.ExportError, OSError) as exc:
        return fail(PROG, _first_line(exc), 2)
    status = 0
    if data is not None and not args.skip_compare:
        print(f"checking on the {len(data.test_images):,} MNIST test images against PyTorch ...")
        for result in export.verify(model, onnx_path, data.test_images, data.test_labels,
                                    program_path):
            print(result.line())
            status = status if result.ok else 1
    if data is not None and args.bench:
        speeds = export.inference_speed(model, data.test_images, onnx_path,
                                        min_seconds=args.bench_seconds, threads=args.threads)
        print(export.format_speed(speeds))
    return status


if __name__ == "__main__":
    sys.exit(main())
