"""Export a trained Net to ONNX (dynamic batch) and a ``torch.export`` program, then check them on MNIST.

    python -m tools.export CHECKPOINT [--out DIR] [--data-dir data] [--no-verify] [--skip-compare] [--bench]

Writes ``DIR/<checkpoint name>.onnx`` (input ``images`` (N, 1, 28, 28) float, normalized as for training;
output ``log_probs`` (N, 10)) and ``DIR/<checkpoint name>.pt2`` (``torch.export.load``-able); ``DIR``
defaults to the checkpoint's folder. An existing file is never overwritten: the export is refused instead.
Then onnxruntime (CPUExecutionProvider) and the exported program classify the full 10k MNIST test set, and
their predicted digits and log-probabilities are compared with PyTorch's; ``--bench`` adds onnxruntime vs
PyTorch inference speed (images/s at batch 1000 and batch 1) on this machine's CPU.

Exit status: 0 exported and every check passed; 1 a check failed (a prediction differs, or a
log-probability differs by more than 1e-4); 2 usage error, unusable checkpoint, missing MNIST, or an
output file already exists. To predict with onnxruntime alone (no torch), see ``onnx_predict.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import utils
from s5 import checkpoint, digits, mnist
from s5.cli import bounded

TOLERANCE = 1e-4  # largest accepted |log-prob difference| between PyTorch and an export
INPUT_NAME, OUTPUT_NAME = "images", "log_probs"
EXTRAS = ("onnx", "onnxscript", "onnxruntime")  # requirements-extras.txt: the exporter and the runtime
EXAMPLE_BATCH = 2  # the example input of the trace; the batch dimension stays dynamic


class ExportError(RuntimeError):
    """An export could not be written (its output exists, or the exporter failed)."""


# --------------------------------------------------------------------------------------------------
# Writing the files: each is written to a temporary name, then linked into place only if that name is free
# --------------------------------------------------------------------------------------------------


def export_paths(source: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``(<out_dir>/<stem>.onnx, <out_dir>/<stem>.pt2)`` for a checkpoint; ``out_dir`` defaults to its folder."""
    source = Path(source)
    folder = Path(out_dir) if out_dir is not None else source.parent
    return folder / f"{source.stem}.onnx", folder / f"{source.stem}.pt2"


def refuse_existing(*paths: Path) -> None:
    """Raise ``ExportError`` naming the first of ``paths`` that exists."""
    for path in paths:
        if path.exists():
            raise ExportError(f"{path} already exists; export.py never overwrites a file: delete it or pass --out DIR")


def write_all_or_none(writers: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Call each writer on a temporary path beside its file; only when every one has finished, hard-link them into
    place (atomic, and never replacing a file, even one that appeared meanwhile). A failure or a crash leaves none of
    the files, so an export is never half there. Returns the paths written."""
    temps: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for path, write in writers.items():
            refuse_existing(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            temps[path] = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # exporters check suffixes
            write(temps[path])
        for path, tmp in temps.items():
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ExportError(f"{path} appeared while exporting and was left as it is") from None
            except OSError:  # a file system without hard links: exclusive create, then copy
                with open(path, "xb") as f:
                    f.write(tmp.read_bytes())
            placed.append(path)
    except BaseException:
        for path in placed:  # ours, made a moment ago: the export is all or nothing
            path.unlink(missing_ok=True)
        raise
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return placed


@contextlib.contextmanager
def _quiet():
    """Capture the exporters' progress chatter; it is shown only if the export fails."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch-internal
            yield
    except Exception:
        sys.stderr.write(out.getvalue() + err.getvalue())
        raise


def _example(model: nn.Module) -> torch.Tensor:
    return torch.zeros(EXAMPLE_BATCH, 1, 28, 28, device=next(model.parameters()).device)


def _dynamic_batch() -> dict[str, dict[int, object]]:
    return {"x": {0: torch.export.Dim("batch", min=1, max=1 << 20)}}


def export_onnx(model: nn.Module, path: str | Path, source: str | Path | None = None) -> Path:
    """Write ``model`` as an ONNX file with a dynamic batch dimension; refuses to replace an existing file.
    ``source``: the checkpoint it came from, whose SHA-256 goes into the file's metadata (``digits.SOURCE_KEY``):
    predict.py runs an export beside a checkpoint only if it was made from those very bytes."""
    write_all_or_none({Path(path): onnx_writer(model, source)})
    return Path(path)


def onnx_writer(model: nn.Module, source: str | Path | None = None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model.eval(), (_example(model),), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=_dynamic_batch(), verbose=False)
            if source is not None:
                program.model.metadata_props[digits.SOURCE_KEY] = checkpoint.file_sha256(source)
            program.save(str(tmp), external_data=False)

    return write


def export_program(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` as a ``torch.export`` program (``.pt2``) with a dynamic batch dimension."""
    write_all_or_none({Path(path): program_writer(model)})
    return Path(path)


def program_writer(model: nn.Module) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with _quiet():
            torch.export.save(torch.export.export(model.eval(), (_example(model),), dynamic_shapes=_dynamic_batch()),
                              tmp)

    return write


# --------------------------------------------------------------------------------------------------
# Running and comparing
# --------------------------------------------------------------------------------------------------


def ort_log_probs(session, x: torch.Tensor | np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) log-probabilities from an onnxruntime session for a normalized (N, 1, 28, 28) batch."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)])


@torch.inference_mode()
def torch_log_probs(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) fp32 log-probabilities of ``model`` (or an exported program's module) on the CPU."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    return torch.cat([model(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]).numpy()


@dataclass(frozen=True)
class Comparison:
    """How an export's outputs agree with PyTorch's on a set of images."""

    name: str
    total: int
    identical: int  # images whose predicted digit is the same
    max_abs_diff: float  # largest |log-prob difference| over all images and classes
    correct: int  # the export's correct predictions (labels given)

    @property
    def ok(self) -> bool:
        return self.identical == self.total and self.max_abs_diff <= TOLERANCE

    def line(self) -> str:
        verdict = "OK" if self.ok else f"FAILED (needs identical predictions and a difference <= {TOLERANCE:g})"
        return (f"{self.name}: {self.identical}/{self.total} identical predictions, max |log-prob difference| "
                f"{self.max_abs_diff:.3g}, accuracy {100 * self.correct / max(self.total, 1):.2f}% -> {verdict}")


def compare(name: str, reference: np.ndarray, other: np.ndarray, labels: torch.Tensor | np.ndarray) -> Comparison:
    """Compare two (N, 10) log-probability arrays: same argmax per row, and their largest absolute difference."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    pred = other.argmax(axis=1)
    return Comparison(name, len(reference), int((reference.argmax(axis=1) == pred).sum()),
                      float(np.abs(reference - other).max()) if len(reference) else 0.0, int((pred == labels).sum()))


def verify(model: nn.Module, onnx_path: str | Path, images: torch.Tensor, labels: torch.Tensor,
           program_path: str | Path | None = None) -> list[Comparison]:
    """Classify ``images`` (uint8 (N, 28, 28)) with PyTorch, onnxruntime and (if given) the ``.pt2`` program."""
    from s5 import onnx_predict  # imports onnxruntime (requirements-extras.txt)

    x = utils.normalize(images.cpu())
    reference = torch_log_probs(model.eval(), x)
    results = [compare("onnxruntime", reference, ort_log_probs(onnx_predict.load(onnx_path), x), labels)]
    if program_path is not None:
        module = torch.export.load(str(program_path)).module()
        results.append(compare("torch.export program", reference, torch_log_probs(module, x), labels))
    return results


# --------------------------------------------------------------------------------------------------
# Inference speed: onnxruntime vs PyTorch on the CPU
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speed:
    """Inference throughput of one runtime at one batch size."""

    runtime: str
    batch_size: int
    images_per_second: float
    threads: int


def _throughput(run, x: torch.Tensor, batch_size: int, min_seconds: float, warmup: int = 2) -> float:
    batches = [x[i:i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)] or [x[:batch_size]]
    for i in range(warmup):
        run(batches[i % len(batches)])
    done, calls, start = 0, 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_seconds:
        batch = batches[calls % len(batches)]
        run(batch)
        done, calls = done + len(batch), calls + 1
    return done / (time.perf_counter() - start)


def inference_speed(model: nn.Module, images: torch.Tensor, onnx_path: str | Path | None = None,
                    batch_sizes: Sequence[int] = (1000, 1), min_seconds: float = 2.0,
                    threads: int | None = None) -> list[Speed]:
    """Images/s of PyTorch (fp32, inference mode) and onnxruntime (CPUExecutionProvider) on the CPU.

    ``images`` are uint8 (N, 28, 28); each measurement runs whole batches for at least ``min_seconds``
    after a warm-up. Both runtimes use ``threads`` intra-op threads (default: torch's current count).
    Without ``onnx_path`` the model is exported to a temporary file first. For bench.py:
    ``format_speed(export.inference_speed(net, data.test_images))``.
    """
    from s5 import onnx_predict  # imports onnxruntime (requirements-extras.txt)

    threads = threads or torch.get_num_threads()
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()  # the caller's model stays where it is
    model = model.eval()
    x = utils.normalize(images.cpu()).contiguous()
    x_np = x.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            onnx_path = export_onnx(model, Path(tmp) / "net.onnx")
        session = onnx_predict.load(onnx_path, threads)
        name = session.get_inputs()[0].name
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        rows = []
        try:
            for batch_size in batch_sizes:
                with torch.inference_mode():
                    rows.append(Speed("PyTorch", batch_size, _throughput(model, x, batch_size, min_seconds), threads))
                ort_run = lambda b: session.run(None, {name: b})  # noqa: E731
                rows.append(Speed("onnxruntime", batch_size, _throughput(ort_run, x_np, batch_size, min_seconds),
                                  threads))
        finally:
            torch.set_num_threads(previous)
    return rows


def format_speed(rows: Sequence[Speed]) -> str:
    """A markdown table: one row per batch size, PyTorch and onnxruntime images/s and their ratio."""
    by_batch: dict[int, dict[str, float]] = {}
    for row in rows:
        by_batch.setdefault(row.batch_size, {})[row.runtime] = row.images_per_second
    threads = rows[0].threads if rows else torch.get_num_threads()
    lines = [f"Inference on the CPU, fp32, {threads} thread(s): images/s",
             "",
             "batch size | PyTorch | onnxruntime | onnxruntime / PyTorch",
             "---: | ---: | ---: | ---:"]
    for batch_size, speeds in by_batch.items():
        pt, ort_ = speeds.get("PyTorch", float("nan")), speeds.get("onnxruntime", float("nan"))
        lines.append(f"{batch_size} | {pt:,.0f} | {ort_:,.0f} | {ort_ / pt:.2f}x")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by train.py")
    p.add_argument("--out", type=Path, help="folder for the .onnx and .pt2 files (default: the checkpoint's folder)")
    p.add_argument("--data-dir", default="data", help="where MNIST is (fetched if missing)")
    p.add_argument("--no-verify", action="store_true", help="skip MNIST's md5 check (for tiny test data)")
    p.add_argument("--skip-compare", action="store_true", help="only write the files; do not run the test set")
    p.add_argument("--no-program", action="store_true", help="write only the ONNX file, no torch.export program")
    p.add_argument("--bench", action="store_true", help="also measure onnxruntime vs PyTorch images/s on the CPU")
    p.add_argument("--bench-seconds", type=bounded(float, 0, 600, low_open=True), default=2.0,
                   help="time per speed measurement (default: 2)")
    p.add_argument("--threads", type=bounded(int, 1, 1024), help="intra-op threads of both runtimes in --bench "
                   "(default: torch's)")
    args = p.parse_args(argv)
    missing = [name for name in EXTRAS if importlib.util.find_spec(name) is None]

    def fail(message: str, status: int = 2) -> int:
        print(f"export.py: error: {message}", file=sys.stderr)
        return status

    if missing:
        return fail(f"export.py needs {', '.join(missing)}: pip install -r requirements-extras.txt")
    try:
        model = checkpoint.load_trained_net(args.checkpoint, "cpu")
    except checkpoint.CheckpointError as exc:
        return fail(_first_line(exc), exc.exit_status)
    onnx_path, program_path = export_paths(args.checkpoint, args.out)
    program_path = None if args.no_program else program_path
    try:
        refuse_existing(*(q for q in (onnx_path, program_path) if q is not None))
        data = None
        if not args.skip_compare or args.bench:  # read MNIST before the slow exports: fail early
            data = mnist.load_mnist(args.data_dir, md5s=None if args.no_verify else mnist.MNIST_MD5,
                                    log=lambda message: print(message, file=sys.stderr))
        start = time.perf_counter()
        writers = {onnx_path: onnx_writer(model, source=args.checkpoint)}
        if program_path is not None:
            writers[program_path] = program_writer(model)
        write_all_or_none(writers)  # both files, or neither
        print(f"wrote {onnx_path} (ONNX, dynamic batch; input {INPUT_NAME!r} (N, 1, 28, 28) normalized, "
              f"output {OUTPUT_NAME!r} (N, 10) log-probabilities) in {time.perf_counter() - start:.1f}s")
        if program_path is not None:
            print(f"wrote {program_path} (torch.export program, dynamic batch; torch.export.load(path).module())")
    except mnist.MnistError as exc:  # its message lists every source tried and how to place the files by hand
        return fail(str(exc))
    except (ExportError, OSError) as exc:
        return fail(_first_line(exc))
    status = 0
    if data is not None and not args.skip_compare:
        n = len(data.test_images)
        print(f"checking on the {n:,} MNIST test images against PyTorch ...")
        for result in verify(model, onnx_path, data.test_images, data.test_labels, program_path):
            print(result.line())
            status = status if result.ok else 1
    if data is not None and args.bench:
        print(format_speed(inference_speed(model, data.test_images, onnx_path, min_seconds=args.bench_seconds,
                                           threads=args.threads)))
    return status


if __name__ == "__main__":
    sys.exit(main())
