"""torch.hub's entry point: the Week 5 Net, untrained or with a checkpoint's weights
(``torch.hub.load(REPO, "net", checkpoint=PATH)``).

This file is run by torch.hub inside the caller's program, which may have modules of its own
named ``model`` or ``s5`` imported already: this repository's model.py, s5/files.py and
s5/checkpoint.py are therefore loaded by file path under private names (unless the very same files
are imported already), so a caller's ``model`` never replaces this Net.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import pathlib
import sys
import types

import torch

# modules only, no names imported into this file: torch.hub.list shows every public callable here

# What the modules above and below import: torch.hub checks each is installed before calling net.
dependencies = ["torch", "numpy"]

HERE = pathlib.Path(__file__).resolve().parent
# one private prefix per copy of the repository: two copies loaded in one process stay apart
PRIVATE = "_hub_" + hashlib.sha256(str(HERE).encode()).hexdigest()[:12] + "_"


def _is_ours(module: types.ModuleType | None, path: pathlib.Path) -> bool:
    """Whether ``module`` was loaded from ``path`` (this repository's file)."""
    file = getattr(module, "__file__", None)
    return file is not None and pathlib.Path(file).resolve() == path


@contextlib.contextmanager
def _names_bound(modules: dict[str, types.ModuleType]):
    """``modules`` under their public names in sys.modules while a file of ours is executed (its
    ``from model import Net`` must find ours), the caller's own modules put back after."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _load(name: str, relative: str, needs: dict[str, types.ModuleType]) -> types.ModuleType:
    """This repository's module ``name`` (file ``relative``): the one imported already if it is
    this very file, else the file executed under a private name, with ``needs`` bound for it."""
    path = HERE / relative
    for candidate in (sys.modules.get(name), sys.modules.get(PRIVATE + name)):
        if _is_ours(candidate, path):
            return candidate
    spec = importlib.util.spec_from_file_location(PRIVATE + name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered first, as an import does (dataclasses need it)
    try:
        with _names_bound(needs):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


_model = _load("model", "model.py", {})
_files = _load("s5.files", "s5/files.py", {})
_checkpoint = _load("s5.checkpoint", "s5/checkpoint.py", {"model": _model, "s5.files": _files})


def net(checkpoint: str | None = None, device: str = "cpu") -> torch.nn.Module:
    """The Week 5 MNIST Net (593,200 parameters) on ``device``, in eval mode.

    Without ``checkpoint`` it is untrained (fresh weights). With ``checkpoint``, a path on this
    machine to a ``.pt`` written by train.py (or ``torch.save(net.state_dict())``), it carries
    those weights, read by the package's safe loader (``torch.load(weights_only=True)`` after a
    size check, architecture and finite weights verified); a file that fails raises
    ``s5.checkpoint.CheckpointError`` with a one-line reason.

    Input: (N, 1, 28, 28) float images normalized with MNIST's mean 0.1307 and std 0.3081
    (``utils.normalize`` does it for uint8 images); output: (N, 10) log-probabilities.
    """
    if checkpoint is None:
        return _model.Net().to(torch.device(device)).eval()
    return _checkpoint.load_trained_net(checkpoint, device=device)
