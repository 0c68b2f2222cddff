"""hubconf.py: torch.hub.load(..., "net") on a copy of the repository, offline (source="local")."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from conftest import ROOT

from model import Net
from s5 import checkpoint

# Loads through torch.hub in a fresh interpreter, outside the copy and without PYTHONPATH: the copy
# alone must provide the modules (here, model and s5 are already imported from the working tree).
HUB_SCRIPT = """
import sys, torch
clone, ckpt, inputs, out = sys.argv[1:]
untrained = torch.hub.load(clone, "net", source="local")
trained = torch.hub.load(clone, "net", source="local", checkpoint=ckpt)
try:
    torch.hub.load(clone, "net", source="local", checkpoint="no-such.pt")
    error = ""
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
model_file = sys.modules[type(trained).__module__].__file__  # the module hubconf loaded
torch.save({"params": [sum(p.numel() for p in n.parameters()) for n in (untrained, trained)],
            "training": [untrained.training, trained.training],
            "outputs": trained(torch.load(inputs)), "error": error, "model_file": model_file},
           out)
"""

# The caller has a `model` module of its own (and an `s5`) imported before torch.hub.load: hubconf
# must still give this repository's Net, and leave the caller's modules as they were.
FOREIGN_SCRIPT = """
import sys, types, torch
clone, ckpt = sys.argv[1:]
theirs = types.ModuleType("model")
theirs.Net = "the caller's own Net"
sys.modules["model"] = theirs
sys.modules["s5"] = types.ModuleType("s5")
net = torch.hub.load(clone, "net", source="local", checkpoint=ckpt)
assert sum(p.numel() for p in net.parameters()) == 593_200 and not net.training
assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
assert sys.modules["model"] is theirs and not hasattr(sys.modules["s5"], "checkpoint")
again = torch.hub.load(clone, "net", source="local")
assert type(again) is type(net)  # loaded once per copy, not once per call
import importlib.util
spec = importlib.util.spec_from_file_location("hubconf", clone + "/hubconf.py")
hub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hub)
# the entry points torch.hub.list (GitHub only) shows: public callables
assert [n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_")] == ["net"]
print("ok", sys.modules[type(net).__module__].__file__)
"""


def copy_of_the_repository(dest: Path) -> Path:
    """What a clone holds: tracked files plus new uncommitted ones (git's ignore rules apply)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_torch_hub_loads_the_seed_net_and_a_trained_one(tmp_path: Path) -> None:
    clone = copy_of_the_repository(tmp_path / "clone")
    assert (clone / "hubconf.py").is_file() and not (clone / "data").exists()
    torch.manual_seed(0)
    saved = checkpoint.save_checkpoint(tmp_path / "run.pt", model=Net(), epoch=1, run_id="tiny")
    inputs = torch.randn(4, 1, 28, 28)
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(clone), str(saved),
                           str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["params"] == [593_200, 593_200] and got["training"] == [False, False]
    assert Path(got["model_file"]).parent == clone  # the copy's modules, not the working tree's
    with torch.no_grad():
        assert torch.equal(got["outputs"], checkpoint.load_trained_net(saved)(inputs))
    assert got["error"].startswith("NoCheckpointError: no-such.pt: no such checkpoint file")
    # torch.hub.help (GitHub only) shows the entry point's docstring
    (entry,) = [f for f in ast.parse((ROOT / "hubconf.py").read_text()).body
                if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]
    assert entry.name == "net" and "checkpoint" in ast.get_docstring(entry)


def test_torch_hub_gives_this_net_to_a_caller_with_its_own_model_module(tmp_path: Path) -> None:
    clone = copy_of_the_repository(tmp_path / "clone")
    saved = checkpoint.save_checkpoint(tmp_path / "run.pt", model=Net(), epoch=1, run_id="tiny")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", FOREIGN_SCRIPT, str(clone), str(saved)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"ok {clone / 'model.py'}\n"
