"""A run's files: its id, its text log, what it records about itself and its TensorBoard events."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from tqdm import tqdm

import utils
from s5.files import write_json


class RunLog:
    """``log(message)``: each line to ``logs/<run-id>.log`` as ``<time> INFO:utils:…``; echoed."""

    def __init__(self, path: Path, echo: bool = True) -> None:
        self.path, self.echo = Path(path), echo
        self._file = open(self.path, "a", encoding="utf-8")

    def __call__(self, message: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self._file.write(f"{stamp} INFO:utils:{line}\n")
        self._file.flush()
        if self.echo:
            tqdm.write(str(message))

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


@dataclass(frozen=True)
class RunFiles:
    """Where a run writes: logs/<run_id>.log, .csv (per epoch), .json (its command), and
    checkpoints/<run_id>.pt."""

    run_id: str
    log: Path
    csv: Path
    info: Path
    checkpoint: Path

    @property
    def claim(self) -> Path:
        """A hidden file that reserves the checkpoint's name in its folder while the run lives."""
        return self.checkpoint.with_name(f".{self.run_id}.claim")

    @property
    def tensorboard(self) -> Path:
        """The run's TensorBoard event files: <log-dir>/tensorboard/<run-id>/, its own folder."""
        return self.log.parent / "tensorboard" / self.run_id

    def release(self) -> None:
        self.claim.unlink(missing_ok=True)


def new_run(log_dir: str | Path = "logs", checkpoint_dir: str | Path = "checkpoints",
            name: str = "") -> RunFiles:
    """Claim a fresh run id (``YYYYmmdd-HHMMSS[-name][-k]``): its log file and a claim beside its
    checkpoint are created exclusively (runs sharing a folder never collide), which also proves
    both folders writable."""
    log_dir, checkpoint_dir = Path(log_dir), Path(checkpoint_dir)
    for folder in (log_dir, checkpoint_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, a read-only parent, ...
            raise OSError(f"{folder} cannot be used as an output folder: "
                          f"{exc.strerror or exc}") from None
    base = datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{name}" if name else "")
    for k in range(1, 10_000):
        run_id = base if k == 1 else f"{base}-{k}"
        files = RunFiles(run_id, log_dir / f"{run_id}.log", log_dir / f"{run_id}.csv",
                         log_dir / f"{run_id}.json", checkpoint_dir / f"{run_id}.pt")
        if files.csv.exists() or files.info.exists() or files.checkpoint.exists():
            continue
        try:
            with open(files.claim, "x") as claim:
                # whose claim it is: a later run removes it once this process is gone
                claim.write(str(os.getpid()))
        except FileExistsError:
            continue
        except OSError as exc:  # a full disk: the claim may be there, empty
            files.claim.unlink(missing_ok=True)
            raise OSError(f"{checkpoint_dir} cannot be used as an output folder: "
                          f"{exc.strerror or exc}") from None
        try:
            with open(files.log, "x"):
                return files
        except FileExistsError:
            files.release()
    raise RuntimeError(f"no free run id under {log_dir} for {base}")


def continue_run(run_id: str, log_dir: str | Path, checkpoint: str | Path) -> RunFiles:
    """The files of run ``run_id``, which ``--resume`` continues: the same id, log, CSV, run file
    and checkpoint. Its claim is taken exclusively, so two processes never continue one run."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    files = RunFiles(run_id, log_dir / f"{run_id}.log", log_dir / f"{run_id}.csv",
                     log_dir / f"{run_id}.json", Path(checkpoint))
    try:
        with open(files.claim, "x") as claim:
            claim.write(str(os.getpid()))
    except FileExistsError:
        raise OSError(f"run {run_id} is being continued by another process ({files.claim} exists); "
                      "wait for it, or delete that file if no training runs") from None
    return files


def tensorboard_installed() -> bool:
    """Whether ``torch.utils.tensorboard`` imports (it needs the optional ``tensorboard``)."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def check_board_folder(log_dir: str | Path) -> None:
    """Before a run claims its files: ``<log_dir>/tensorboard`` must be a folder events can be
    written in (else ``OSError`` naming --no-tensorboard), not found only after an epoch."""
    folder = Path(log_dir) / "tensorboard"
    if not folder.exists() and not folder.is_symlink():
        return  # made inside the log folder, which the run's claim proves writable
    try:
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is not a folder")
        tempfile.TemporaryFile(dir=folder).close()  # a probe: os.access is always True for root
    except OSError as exc:
        raise OSError(f"{folder} cannot hold this run's TensorBoard events: "
                      f"{exc.strerror or exc}; fix it, or train with --no-tensorboard") from None


class RunBoard:
    """TensorBoard events of one run in ``folder`` (``None``: none): a view of its CSV and log.

    The folder is made on the first write, so a run that stops before its first epoch leaves none;
    without the ``tensorboard`` package nothing is written and nothing is said. A resumed run adds
    files to the same folder."""

    def __init__(self, folder: Path | None, log: Callable[[str], None] = print) -> None:
        self.folder, self._writer, self.log = folder, None, log
        self._thread_hook = threading.excepthook

    def _open(self):  # -> SummaryWriter | None; tensorboard is imported only where it is wanted
        if self._writer is None and self.folder is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.folder = None
                return None
            threading.excepthook = self._writer_thread_failed
            self._writer = SummaryWriter(log_dir=str(self.folder))
        return self._writer

    def _writer_thread_failed(self, args: threading.ExceptHookArgs) -> None:
        # TensorBoard's writer thread re-raises a write error that the run reports in one line
        ours = "tensorboard" in type(args.thread).__module__
        if not (ours and issubclass(args.exc_type, OSError)):
            self._thread_hook(args)

    def _stop(self, exc: OSError) -> None:
        """The events are a view of the CSV and the log: a disk that takes no more stops them, not
        the run."""
        self.log(f"WARNING: TensorBoard events stopped, {self.folder} cannot be written "
                 f"({exc.strerror or exc}); the CSV and log go on (--no-tensorboard: no events)")
        self.folder, writer, self._writer = None, self._writer, None
        with contextlib.suppress(OSError):
            if writer is not None:
                writer.close()

    def epoch(self, history: utils.History, step: int) -> None:
        """The CSV's newest row at training step ``step``: each column a scalar, ``train_loss`` as
        ``train/loss``, ``test_acc`` as ``test/acc`` (``val/acc`` under --val), ``lr``, ``seconds``,
        ``epoch``."""
        try:
            self._epoch(history, step)
        except OSError as exc:
            self._stop(exc)

    def _epoch(self, history: utils.History, step: int) -> None:
        if (writer := self._open()) is None:
            return
        row = history.rows()[-1]
        for column, name in zip(row, utils.csv_header(history.split), strict=True):
            if column not in ("eval_correct", "eval_total"):  # the accuracy already says it
                writer.add_scalar(name.replace("_", "/", 1), row[column], step)
        writer.flush()  # as current as the CSV, even if the process is killed

    def finish(self, history: utils.History, result: utils.EvalResult, *, step: int,
               settings: dict) -> None:
        """At the end of a finished run: the metric plot and the last evaluation's confusion matrix
        as images, and ``settings`` with the final numbers (the HParams tab)."""
        try:
            self._finish(history, result, step=step, settings=settings)
        except OSError as exc:
            self._stop(exc)

    def _finish(self, history: utils.History, result: utils.EvalResult, *, step: int,
                settings: dict) -> None:
        if (writer := self._open()) is None:
            return
        figures = {"metrics": utils.plot_metrics(history),
                   "confusion": utils.plot_confusion(result)}
        for name, figure in figures.items():
            canvas = FigureCanvasAgg(figure)  # here: SummaryWriter.add_figure would import pyplot
            canvas.draw()
            writer.add_image(f"figures/{name}", np.asarray(canvas.buffer_rgba())[..., :3], step,
                             dataformats="HWC")
        split = history.split
        metrics = {"hparam/train_loss": history.train_loss[-1],
                   "hparam/train_acc": history.train_acc[-1],
                   f"hparam/{split}_loss": history.eval_loss[-1],
                   f"hparam/{split}_acc": history.eval_acc[-1],
                   "hparam/seconds": sum(history.seconds)}
        # hparam values must be int, float, str or bool; run_name "." keeps them in the run's folder
        writer.add_hparams({k: v if isinstance(v, int | float | str | bool) else str(v)
                            for k, v in settings.items()},
                           metrics, run_name=".", global_step=step)

    def __enter__(self) -> RunBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        except OSError as error:
            self._stop(error)
        finally:
            threading.excepthook = self._thread_hook


def write_run_info(files: RunFiles, **info: object) -> None:
    """Record what a run is as JSON (``kind``: train, dry-run, bench, tuning; command, settings)."""
    write_json(files.info, {"run_id": files.run_id, **info})


def read_run_info(path: str | Path) -> dict:
    """The JSON ``write_run_info`` wrote; an empty dict for runs made before it existed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


