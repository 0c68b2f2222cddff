"""Checkpoints: every read and write of a ``.pt`` file of this package.

    from s5.checkpoint import load_trained_net
    net = load_trained_net("checkpoints/<run-id>.pt")   # a model.Net in eval mode, weights loaded

Writes are atomic (a temporary file, then a rename); reads use ``torch.load(weights_only=True)``,
so a file that would run code when unpickled is refused, whatever torch version words the refusal.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import time
import zipfile
from pathlib import Path

import torch
from torch import nn

from model import Net
from s5.files import atomic_write_bytes, process_is_gone

CHECKPOINT_FORMAT = "s5-mnist-checkpoint-v2"  # v2: settings as plain dicts ("settings", "augment")
OLDER_FORMATS = ("s5-mnist-checkpoint-v1",)  # their weights still load; their runs cannot resume
# Far above any checkpoint of this Net and its optimizer: a file unpacking to more is refused.
MAX_CHECKPOINT_BYTES = 256 * 2**20
STALE_TEMP_SECONDS = 3600  # a temporary file older than this was left by a process that died saving


class CheckpointError(RuntimeError):
    """A file that cannot be used as a checkpoint of this package's Net: command lines exit 1."""

    exit_status = 1


class NoCheckpointError(CheckpointError):
    """No checkpoint file where one was named or looked for: a usage error, command lines exit 2."""

    exit_status = 2


def no_checkpoint_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened as a checkpoint file (absent, a folder, a FIFO...), or None."""
    path = Path(path)
    if path.is_file():
        return None
    what = ("is a folder" if path.is_dir() else "is not a regular file" if path.exists()
            else "does not exist")
    return f"{path}: no such checkpoint file (it {what})"


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int = 0,
    history: dict | None = None,
    settings: dict | None = None,
    augment: dict | None = None,
    partial: dict | None = None,
    run_id: str = "",
    kind: str = "train",
) -> Path:
    """Save everything needed to use or resume a run, atomically.

    ``epoch`` is the number of finished epochs; ``partial`` the sums of an interrupted next epoch;
    ``kind`` says what made it ("train", "dry-run", ...); ``settings`` are every setting of the run
    (train.py's flags after its recipe) and ``augment`` its augmentation's fields, both plain dicts.
    Non-finite weights are never saved.
    """
    weights = model.state_dict()
    bad = [name for name, tensor in weights.items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"not saving {path}: the weights of {', '.join(bad[:3])} "
                              "are NaN or infinite")
    state = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "run_id": run_id,
        "model": weights,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": epoch,
        "partial": partial,
        "history": history or {},
        "settings": {k: (str(v) if isinstance(v, Path) else v)
                     for k, v in (settings or {}).items()},
        "augment": dict(augment or {}),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temp_files(folder: str | Path,
                            older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete what runs that died left in ``folder``: the ``.<name>.pt.<pid>.tmp`` of an unfinished
    save and the ``.<run-id>.claim`` of a run (it holds the run's process id), once their process
    is gone (or, with no process id to tell, after ``older_than`` seconds). Only these hidden files
    of ours are ever deleted."""
    removed = []
    now = time.time()
    for leftover in [*Path(folder).glob(".*.pt.*.tmp"), *Path(folder).glob(".*.claim")]:
        try:
            pid = (leftover.name.rsplit(".", 2)[1] if leftover.suffix == ".tmp"
                   else leftover.read_text().strip())
            gone = (process_is_gone(int(pid)) if pid.isdigit()
                    else now - leftover.stat().st_mtime > older_than)
            if gone:
                leftover.unlink()
                removed.append(leftover)
        except OSError:
            continue  # another process took it, or it is not ours to delete
    return removed


def check_size(path: Path) -> None:
    """Refuse, before anything is unpacked, a file that would take more memory than any checkpoint
    of this Net: torch.save writes a zip, whose declared sizes ``zipfile`` reads uninflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        declared = path.stat().st_size  # not a zip (an old or foreign format): its own size
    if declared > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path} would unpack to {declared / 2**20:,.0f} MB, more than any "
                              "checkpoint of this Net "
                              f"({MAX_CHECKPOINT_BYTES // 2**20} MB at most): refused unread; "
                              "use a checkpoint made by train.py")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (a pickle that would run code is refused)."""
    path = Path(path)
    if problem := no_checkpoint_file(path):
        raise NoCheckpointError(problem)
    check_size(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler names the global it would have had to call ("Unsupported
        # global" or "... was not an allowed global"); other errors mean no pickle at all. torch's
        # own text is never shown: it suggests weights_only=False, unsafe for an untrusted file.
        if "global" in f"{exc} {exc.__context__}".lower():
            raise CheckpointError(
                f"{path} was refused: it holds objects other than tensors and plain data, and "
                "loading it could run code. Only load checkpoints made by train.py."
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              "(not a file written by torch.save)") from None
    except Exception as exc:  # torch.load raises many kinds on a damaged or foreign file
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, or not written by torch.save): "
            f"{type(exc).__name__}"
        ) from None
    if isinstance(state, dict) and "format" not in state and state and all(
            isinstance(v, torch.Tensor) for v in state.values()):
        # torch.save(net.state_dict())
        state = {"format": CHECKPOINT_FORMAT, "kind": "weights", "model": state}
    if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT,
                                                                   *OLDER_FORMATS):
        raise CheckpointError(f"{path} is not a checkpoint of this package "
                              f"(no '{CHECKPOINT_FORMAT}' marker)")
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} carries this package's checkpoint marker but no model "
                              "weights; it cannot be used. Train again, or pass another "
                              "checkpoint.")
    return state


def load_model_state(model: nn.Module, state: dict, path: str | Path = "checkpoint") -> nn.Module:
    """Load a checkpoint's weights into ``model``; another architecture or NaNs are clear errors."""
    weights = state["model"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights)
                   if not isinstance(weights[k], torch.Tensor)
                   or expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(
            part for part in (
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else "",
                "shape differs for " + ", ".join(
                    f"{k} {tuple(getattr(weights[k], 'shape', ()))} vs {tuple(expected[k].shape)}"
                    for k in wrong[:4]) if wrong else "",
            ) if part
        )
        raise CheckpointError(f"{path} was made for a different architecture than "
                              f"{type(model).__name__}: {details}")
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}): "
                              "the run diverged; use an earlier checkpoint or train again")
    model.load_state_dict(weights)
    return model


def load_trained_net(path: str | Path, device: str | torch.device = "cpu") -> Net:
    """A ``model.Net`` with a checkpoint's weights, on ``device``, in eval mode."""
    device = torch.device(device)
    if (device.type == "cuda" and not torch.cuda.is_available()) or (
            device.type == "mps" and not torch.backends.mps.is_available()):
        raise ValueError(f"load_trained_net(device={str(device)!r}): torch sees no such device "
                         "here; use device='cpu'")
    state = load_checkpoint(path, map_location=device)
    return load_model_state(Net(), state, path).to(device).eval()


def is_finished(state: dict) -> bool:
    """Whether a checkpoint's run trained every epoch it planned (not interrupted or stopped)."""
    settings = state.get("settings") or state.get("args") or {}
    return (not state.get("partial") and "epochs" in settings
            and state.get("epoch", 0) >= settings["epochs"])


def describe(state: dict, path: str | Path) -> str:
    """One line on a checkpoint: its run, how far it trained, its last evaluated accuracy."""
    history = state.get("history") or {}
    split = history.get("split", "test")
    accuracy = (history.get("eval_acc") or [None])[-1]
    parts = [f"run {state['run_id']}" if state.get("run_id") else "",
             f"{split} accuracy {accuracy:.2f}% after {history['epoch'][-1]:g} epochs"
             if accuracy is not None else "no evaluation recorded",
             "" if is_finished(state) else "an unfinished run"]
    return f"{path} ({', '.join(part for part in parts if part)})"


def newest_checkpoint(folder: str | Path = "checkpoints") -> Path:
    """The most recently modified ``*.pt`` in ``folder`` whose run finished (dry runs write none),
    else the newest of any; ``CheckpointError`` when there is none."""
    folder = Path(folder)
    found = [p for p in folder.glob("*.pt") if p.is_file() and not p.name.startswith(".")]
    if not found:
        raise NoCheckpointError(
            f"no checkpoint found: {folder}/ holds no *.pt file. Run `make train` to train "
            "one, or pass --checkpoint PATH."
        )
    found.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    for path in found[:20]:  # newest first: the first finished run wins
        try:
            if is_finished(load_checkpoint(path)):
                return path
        except CheckpointError:
            continue
    return found[0]


def load_given_or_newest(path: str | Path | None = None,
                         folder: str | Path = "checkpoints") -> tuple[Net, Path, str]:
    """The Net of checkpoint ``path``, or of the newest finished one in ``folder`` when none is
    given, with the path used and a line describing it (for the command lines to print first);
    ``CheckpointError`` when there is none."""
    path = Path(path) if path is not None else newest_checkpoint(folder)
    state = load_checkpoint(path)
    return load_model_state(Net(), state, path).eval(), path, describe(state, path)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a checkpoint file's bytes: an export records it to name its checkpoint."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
