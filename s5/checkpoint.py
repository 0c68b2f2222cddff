"""Checkpoints: every read and write of a ``.pt`` file of this package.

    from s5.checkpoint import load_trained_net
    net = load_trained_net("checkpoints/<run-id>.pt")   # a model.Net in eval mode, weights loaded

Writes are atomic (a temporary file, then a rename); reads use ``torch.load(weights_only=True)``, so a
file that would run code when unpickled is refused, whatever torch version words the refusal.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import time
from pathlib import Path

import torch
from torch import nn

from model import Net
from s5.mnist import atomic_write_bytes

CHECKPOINT_FORMAT = "s5-mnist-checkpoint-v2"  # v2: the run's full settings as plain dicts ("settings", "augment")
OLDER_FORMATS = ("s5-mnist-checkpoint-v1",)  # their weights still load; their runs cannot be resumed
STALE_TEMP_SECONDS = 3600  # a temporary file older than this was left by a process that died while saving


class CheckpointError(RuntimeError):
    """A file that cannot be used as a checkpoint of this package's Net."""


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
    ``kind`` says what made it ("train", "dry-run", ...); ``settings`` are every setting of the run (train.py's
    flags after its recipe) and ``augment`` its augmentation's fields, both plain dicts. Non-finite weights are
    never saved.
    """
    weights = model.state_dict()
    bad = [name for name, tensor in weights.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"not saving {path}: the weights of {', '.join(bad[:3])} are NaN or infinite")
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
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in (settings or {}).items()},
        "augment": dict(augment or {}),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temp_files(folder: str | Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the ``.<name>.pt.<pid>.tmp`` files that a process killed while saving left in ``folder``."""
    removed = []
    now = time.time()
    for tmp in Path(folder).glob(".*.pt.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # another process took it, or it is not ours to delete
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (a pickle that would run code is refused)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler names the class or function it would have had to call: "Unsupported
        # global" (torch 2.4-2.13) or "... was not an allowed global". Other unpickling errors (a PNG,
        # random bytes) mean the file is no pickle at all. torch's own text is never shown: it suggests
        # weights_only=False, which is exactly what must not be done with an untrusted file.
        if "global" in f"{exc} {exc.__context__}".lower():
            raise CheckpointError(
                f"{path} was refused: it holds objects other than tensors and plain data, and loading it "
                "could run code. Only load checkpoints made by train.py."
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint (not a file written by torch.save)") from None
    except Exception as exc:  # torch.load raises many kinds on a damaged or foreign file
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, or not written by torch.save): {type(exc).__name__}"
        ) from None
    if isinstance(state, dict) and "format" not in state and state and all(
            isinstance(v, torch.Tensor) for v in state.values()):
        state = {"format": CHECKPOINT_FORMAT, "kind": "weights", "model": state}  # torch.save(net.state_dict())
    if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, *OLDER_FORMATS):
        raise CheckpointError(f"{path} is not a checkpoint of this package (no '{CHECKPOINT_FORMAT}' marker)")
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} carries this package's checkpoint marker but no model weights; "
                              "it cannot be used. Train again, or pass another checkpoint.")
    return state


def load_model_state(model: nn.Module, state: dict, path: str | Path = "checkpoint") -> nn.Module:
    """Load a checkpoint's weights into ``model``; another architecture or non-finite weights are clear errors."""
    weights = state["model"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights)
                   if not isinstance(weights[k], torch.Tensor) or expected[k].shape != weights[k].shape)
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
        raise CheckpointError(f"{path} was made for a different architecture than {type(model).__name__}: {details}")
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}): the run diverged; "
                              "use an earlier checkpoint or train again")
    model.load_state_dict(weights)
    return model


def load_trained_net(path: str | Path, device: str | torch.device = "cpu") -> Net:
    """A ``model.Net`` with a checkpoint's weights, on ``device``, in eval mode."""
    state = load_checkpoint(path, map_location=device)
    return load_model_state(Net(), state, path).to(device).eval()


def newest_checkpoint(folder: str | Path = "checkpoints") -> Path:
    """The most recently modified ``*.pt`` in ``folder`` (dry runs write none); ``CheckpointError`` when
    there is none."""
    folder = Path(folder)
    found = [p for p in folder.glob("*.pt") if p.is_file() and not p.name.startswith(".")]
    if not found:
        raise CheckpointError(
            f"no checkpoint found: {folder}/ holds no *.pt file. Run `make train` to train "
            "one, or pass --checkpoint PATH."
        )
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))


def load_given_or_newest(path: str | Path | None = None, folder: str | Path = "checkpoints") -> tuple[Net, Path]:
    """The Net of checkpoint ``path``, or of the newest one in ``folder`` when none is given, with the path used
    (for the command lines that say which checkpoint they read); ``CheckpointError`` when there is none."""
    path = Path(path) if path is not None else newest_checkpoint(folder)
    return load_trained_net(path), path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a checkpoint file's bytes: what an export records to tell which checkpoint it was made from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
