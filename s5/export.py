"""The Net exported to ONNX (dynamic batch) and to a ``torch.export`` program, written all or
nothing and never over an existing file; the exports checked against PyTorch, and their CPU
speed."""

from __future__ import annotations

import contextlib
import copy
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
from s5 import checkpoint, digits, onnx_predict

TOLERANCE = 1e-4  # largest accepted |log-prob difference| between PyTorch and an export
INPUT_NAME, OUTPUT_NAME = "images", "log_probs"
EXTRAS = ("onnx", "onnxscript", "onnxruntime")  # requirements-extras.txt: exporter and runtime
EXAMPLE_BATCH = 2  # the example input of the trace; the batch dimension stays dynamic


class ExportError(RuntimeError):
    """An export could not be written (its output exists, or the exporter failed)."""


# --------------------------------------------------------------------------------------------------
# Writing the files: each to a temporary name, then linked into place only if that name is free
# --------------------------------------------------------------------------------------------------


def export_paths(source: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``(<out_dir>/<stem>.onnx, <out_dir>/<stem>.pt2)`` for a checkpoint; ``out_dir`` defaults to
    its folder."""
    source = Path(source)
    folder = Path(out_dir) if out_dir is not None else source.parent
    return folder / f"{source.stem}.onnx", folder / f"{source.stem}.pt2"


def refuse_existing(*paths: Path) -> None:
    """Raise ``ExportError`` naming the first of ``paths`` that exists."""
    for path in paths:
        if path.exists():
            raise ExportError(f"{path} already exists; an export never overwrites a file: delete "
                              "it or choose another folder")


def write_all_or_none(writers: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Call each writer on a temporary path beside its file; only when every one has finished,
    hard-link them into place (atomic, and never replacing a file, even one that appeared
    meanwhile). A failure or a crash leaves none of the files, so an export is never half there.
    Returns the paths written."""
    temps: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for path, write in writers.items():
            refuse_existing(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # the suffix last: the exporters check it
            temps[path] = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
            write(temps[path])
        for path, tmp in temps.items():
            try:
                os.link(tmp, path)
            except FileExistsError:
                message = f"{path} appeared while exporting and was left as it is"
                raise ExportError(message) from None
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
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            # torch-internal
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    except Exception:
        sys.stderr.write(out.getvalue() + err.getvalue())
        raise


def _example(model: nn.Module) -> torch.Tensor:
    return torch.zeros(EXAMPLE_BATCH, 1, 28, 28, device=next(model.parameters()).device)


def _dynamic_batch() -> dict[str, dict[int, object]]:
    return {"x": {0: torch.export.Dim("batch", min=1, max=1 << 20)}}


def export_onnx(model: nn.Module, path: str | Path, source: str | Path | None = None) -> Path:
    """Write ``model`` as an ONNX file with a dynamic batch dimension; refuses to replace an
    existing file. ``source``: the checkpoint it came from, whose SHA-256 goes into the file's
    metadata (``digits.SOURCE_KEY``), so that predict.py runs an export beside a checkpoint only if
    it was made from those very bytes."""
    write_all_or_none({Path(path): onnx_writer(model, source)})
    return Path(path)


def onnx_writer(model: nn.Module, source: str | Path | None = None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model.eval(), (_example(model),), dynamo=True,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=_dynamic_batch(), verbose=False)
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
            exported = torch.export.export(model.eval(), (_example(model),),
                                           dynamic_shapes=_dynamic_batch())
            torch.export.save(exported, tmp)

    return write


# --------------------------------------------------------------------------------------------------
# Running and comparing
# --------------------------------------------------------------------------------------------------


def ort_log_probs(session, x: torch.Tensor | np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) log-probabilities from an onnxruntime session for a normalized (N, 1, 28, 28)
    batch."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return onnx_predict.run(session, x, batch_size)


@torch.inference_mode()
def torch_log_probs(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) fp32 log-probabilities of ``model`` (or an exported program's module) on the CPU."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    parts = [model(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]
    return torch.cat(parts).numpy()


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
        verdict = ("OK" if self.ok else
                   f"FAILED (needs identical predictions and a difference <= {TOLERANCE:g})")
        accuracy = 100 * self.correct / max(self.total, 1)
        return (f"{self.name}: {self.identical}/{self.total} identical predictions, max |log-prob "
                f"difference| {self.max_abs_diff:.3g}, accuracy {accuracy:.2f}% -> {verdict}")


def compare(name: str, reference: np.ndarray, other: np.ndarray,
            labels: torch.Tensor | np.ndarray) -> Comparison:
    """Compare two (N, 10) log-probability arrays: same argmax per row, and their largest absolute
    difference."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    pred = other.argmax(axis=1)
    largest = float(np.abs(reference - other).max()) if len(reference) else 0.0
    return Comparison(name, len(reference), int((reference.argmax(axis=1) == pred).sum()), largest,
                      int((pred == labels).sum()))


def verify(model: nn.Module, onnx_path: str | Path, images: torch.Tensor, labels: torch.Tensor,
           program_path: str | Path | None = None) -> list[Comparison]:
    """Classify ``images`` (uint8 (N, 28, 28)) with PyTorch, onnxruntime and (if given) the
    ``.pt2`` program."""
    x = utils.normalize(images.cpu())
    reference = torch_log_probs(model.eval(), x)
    session = onnx_predict.load(onnx_path)
    results = [compare("onnxruntime", reference, ort_log_probs(session, x), labels)]
    if program_path is not None:
        module = torch.export.load(str(program_path)).module()
        results.append(compare("torch.export program", reference, torch_log_probs(module, x),
                               labels))
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


def _throughput(run, x: torch.Tensor, batch_size: int, min_seconds: float,
                warmup: int = 2) -> float:
    starts = range(0, len(x) - batch_size + 1, batch_size)
    batches = [x[i:i + batch_size] for i in starts] or [x[:batch_size]]
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
    """Images/s of PyTorch (fp32, inference mode) and onnxruntime (CPUExecutionProvider) on the
    CPU.

    ``images`` are uint8 (N, 28, 28); each measurement runs whole batches for at least
    ``min_seconds`` after a warm-up. Both runtimes use ``threads`` intra-op threads (default:
    torch's current count). Without ``onnx_path`` the model is exported to a temporary file first.
    """
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
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        rows = []
        try:
            for batch_size in batch_sizes:
                with torch.inference_mode():
                    speed = _throughput(model, x, batch_size, min_seconds)
                rows.append(Speed("PyTorch", batch_size, speed, threads))
                ort_run = lambda b: onnx_predict.run(session, b, len(b))  # noqa: E731
                speed = _throughput(ort_run, x_np, batch_size, min_seconds)
                rows.append(Speed("onnxruntime", batch_size, speed, threads))
        finally:
            torch.set_num_threads(previous)
    return rows


def format_speed(rows: Sequence[Speed]) -> str:
    """A markdown table: one row per batch size, PyTorch and onnxruntime images/s and their
    ratio."""
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
