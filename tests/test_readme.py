"""Every Python example in README.md runs as written, in a fresh interpreter, on a real tiny run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_mnist
from PIL import Image, ImageDraw

from tools.links import makefile_repository

REPOSITORY = makefile_repository(ROOT / "Makefile")  # torch.hub's name of this repository
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """A folder like a clone after `make train`: data/, logs/, checkpoints/, and a user's images."""
    folder = tmp_path_factory.mktemp("readme")
    md5s = write_mnist(folder / "data", 512, 128)
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--no-verify", "--no-progress",
                           "--epochs", "1", "--test-batch-size", "128"],
                          cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_id,) = [p.stem for p in (folder / "checkpoints").glob("*.pt")]
    for name, digit_box in (("my_seven.png", (40, 30, 160, 170)), ("a.png", (60, 20, 140, 180)),
                            ("b.jpg", (50, 40, 150, 160))):
        image = Image.new("L", (200, 200), 255)
        ImageDraw.Draw(image).line(digit_box, fill=0, width=14)
        image.save(folder / name)
    (folder / "images").mkdir()
    return folder, run_id, md5s


def test_the_readme_has_python_examples() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_python_example_runs(project: tuple[Path, str, dict[str, str]], index: int) -> None:
    folder, run_id, md5s = project
    # the tiny data set stands in for MNIST: its md5s replace the genuine ones in this interpreter
    prelude = f"from s5 import mnist\nmnist.MNIST_MD5.update({md5s!r})\n"
    code = prelude + SNIPPETS[index].replace("<run-id>", run_id)
    # torch.hub's GitHub name of this repository: the examples load the working tree, offline
    code = code.replace(f'"{REPOSITORY}", "net"', f'{str(ROOT)!r}, "net", source="local"')
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, f"README example {index} failed:\n{SNIPPETS[index]}\n{proc.stderr}"
