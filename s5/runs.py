"""A run's files: its id, its text log, what it records about itself, and the README blocks made from runs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from s5.mnist import atomic_write_bytes


class RunLog:
    """``log(message)``: each line to ``logs/<run-id>.log`` as ``<time> INFO:utils:…`` and to the console."""

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
    """Where a run writes: logs/<run_id>.log, .csv (per epoch), .json (its command) and checkpoints/<run_id>.pt."""

    run_id: str
    log: Path
    csv: Path
    info: Path
    checkpoint: Path

    @property
    def claim(self) -> Path:
        """A hidden file that reserves the checkpoint's name in its folder while the run lives."""
        return self.checkpoint.with_name(f".{self.run_id}.claim")

    def release(self) -> None:
        self.claim.unlink(missing_ok=True)


def new_run(log_dir: str | Path = "logs", checkpoint_dir: str | Path = "checkpoints", name: str = "") -> RunFiles:
    """Claim a fresh run id (``YYYYmmdd-HHMMSS[-name][-k]``): its log file and a claim beside its checkpoint are
    created exclusively (runs sharing a folder never collide), which also proves both folders writable."""
    log_dir, checkpoint_dir = Path(log_dir), Path(checkpoint_dir)
    for folder in (log_dir, checkpoint_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, a read-only parent, ...
            raise OSError(f"{folder} cannot be used as an output folder: {exc.strerror or exc}") from None
    base = datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{name}" if name else "")
    for k in range(1, 10_000):
        run_id = base if k == 1 else f"{base}-{k}"
        files = RunFiles(run_id, log_dir / f"{run_id}.log", log_dir / f"{run_id}.csv", log_dir / f"{run_id}.json",
                         checkpoint_dir / f"{run_id}.pt")
        if files.csv.exists() or files.info.exists() or files.checkpoint.exists():
            continue
        try:
            with open(files.claim, "x") as claim:
                claim.write(str(os.getpid()))  # whose claim it is: a later run removes it once this process is gone
        except FileExistsError:
            continue
        try:
            with open(files.log, "x"):
                return files
        except FileExistsError:
            files.release()
    raise RuntimeError(f"no free run id under {log_dir} for {base}")


def continue_run(run_id: str, log_dir: str | Path, checkpoint: str | Path) -> RunFiles:
    """The files of run ``run_id``, which ``--resume`` continues: the same id, log, CSV, run file and checkpoint.
    Its claim is taken exclusively, so two processes never continue one run at once."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    files = RunFiles(run_id, log_dir / f"{run_id}.log", log_dir / f"{run_id}.csv", log_dir / f"{run_id}.json",
                     Path(checkpoint))
    try:
        with open(files.claim, "x") as claim:
            claim.write(str(os.getpid()))
    except FileExistsError:
        raise OSError(f"run {run_id} is being continued by another process ({files.claim} exists); wait for it, "
                      "or delete that file if no training runs") from None
    return files


def write_run_info(files: RunFiles, **info: object) -> None:
    """Record what a run is (``kind``: train, dry-run, bench, tuning; its command and settings) as JSON."""
    atomic_write_bytes(files.info, (json.dumps({"run_id": files.run_id, **info}, indent=1) + "\n").encode())


def read_run_info(path: str | Path) -> dict:
    """The JSON ``write_run_info`` wrote; an empty dict for runs made before it existed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def update_readme_block(readme: str | Path, name: str, content: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` atomically (no marker: an error)."""
    readme = Path(readme)
    text = readme.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to regenerate; add the two markers")
    head, rest = text.split(start, 1)
    atomic_write_bytes(readme, f"{head}{start}\n{content.rstrip()}\n{end}{rest.split(end, 1)[1]}".encode())
