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
import model  # the module hubconf imported
torch.save({"params": [sum(p.numel() for p in n.parameters()) for n in (untrained, trained)],
            "training": [untrained.training, trained.training],
            "outputs": trained(torch.load(inputs)), "error": error, "model_file": model.__file__},
           out)
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
                if isinstance(f, ast.FunctionDef)]
    assert entry.name == "net" and "checkpoint" in ast.get_docstring(entry)
