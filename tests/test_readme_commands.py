"""Every shell command README.md shows, run as printed in a throwaway clone of this working tree,
on tiny data: each exits as the README says, and afterwards `git status` of the clone shows no
change to a tracked file and nothing new but the user's own inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, synthetic_digits, write_mnist
from PIL import Image, ImageDraw

from s5 import mnist

README = (ROOT / "README.md").read_text()
PROSE = re.sub(r"```.*?```", "", README, flags=re.S)
# `make ...` and `python ...` in the prose, and every line of every bash block (less its comment)
INLINE = {code for code in re.findall(r"`([^`\n]+)`", PROSE)
          if code.startswith(("make ", "python ", "pip ", "du ", ". "))}
BLOCKS = {line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
          for line in block.splitlines() if line.strip()}
# Not run here, and why: each is run by a test of its own parts, or needs what a test cannot have.
NOT_RUN = {
    "make test": "this test runs inside it",
    "make bench": "3 seeds of every recipe, full MNIST; tests/test_cli.py runs its --quick form",
    "python -m tools.bench": "as make bench",
    "make bench-frontier": "10 seeds of recipes and peers, full MNIST; tests/test_frontier.py",
    "python -m tools.bench --page": "Chromium on the real page; tests/test_app.py drives it",
    "make notebook": "the full MNIST; tests/test_notebook.py executes the notebook on tiny data",
    "make font-digits": "installs Debian fonts (root, network); the test writes its output instead",
    "make eval-real": "installs Debian fonts and builds the real-world set from them",
    "python -m tools.realworld build": "as make eval-real",
    "python -m tools.realworld eval": "as make eval-real; tests/test_digits.py runs it, tiny data",
    "python -m tools.onnx_predict": "named in prose; the export block runs it with its arguments",
}
# The commands each test below runs, in its order: every other README command is in one of them.
QUICK_START = ("make train", ". .venv/bin/activate", "python train.py --help", "du -sh .venv/",
               "make setup", "pip install -r requirements.txt", "make colab-zip")
TRAIN = ("python train.py", "python train.py --recipe fast", "python train.py --recipe seed",
         "python train.py --epochs 2.5 --lr 3e-3", "python train.py --dry-run",
         "python train.py --recipe handwriting", "python train.py --resume checkpoints/<run-id>.pt")
USE = ("python predict.py my_seven.png",
       "python predict.py scans/ photo.jpg --checkpoint checkpoints/<run-id>.pt",
       "python predict.py scans/ --json > results.json",
       "python -m tools.export checkpoints/<run-id>.pt",
       "python -m tools.onnx_predict checkpoints/<run-id>.onnx digits.npy seven.png",
       "make bench ARGS=--table-only", "make experiments", "make report", "make links", "make app",
       "python -m tools.gpu_checks", "python -m tools.profile_gpu_step")
TUNE = ("python train.py --val 10000", "python -m tools.tune --space fast --trials 16 --seeds 1 2",
        "python -m tools.study fast")
STORAGE = "postgresql://USER:PASSWORD@HOST/DB"
MANY = (f"python -m tools.tune --space fast --study fast-lab --storage {STORAGE}",
        f"python -m tools.study fast-lab --storage {STORAGE}")
USER_FILES = {"my_seven.png", "photo.jpg", "scans/a.png", "scans/b.jpg", "digits.npy", "seven.png",
              "results.json"}  # what the user put there, or redirected a command's output to
STAND_IN = '''"""Test only: tiny MNIST files stand in for the genuine ones (md5s from md5s.json)."""
import json, sys
from importlib.abc import MetaPathFinder
from importlib.util import find_spec

class StandIn(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "s5.mnist":
            return None
        sys.meta_path.remove(self)
        spec = find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            with open(%r) as f:
                module.MNIST_MD5.update(json.load(f))
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, StandIn())
'''
MADE_BY_MAKE = pytest.mark.skipif(not (Path(sys.prefix) / ".installed-dev").exists(),
                                  reason="this environment was not made by `make setup-dev`")


class Clone:
    """A git repository of this working tree's tracked files, its `.venv` this interpreter's, that
    runs ``commands`` (README lines) and nothing else."""

    def __init__(self, folder: Path, commands: tuple[str, ...]) -> None:
        self.path, self.commands, self.ran = folder / "clone", commands, set()
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
        for name in filter(None, files):
            if (ROOT / name).is_file():
                (self.path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, self.path / name)
        for name in self.path.glob("requirements*.txt"):  # older than the environment's stamps
            os.utime(name, (0, 0))
        (self.path / ".venv").symlink_to(sys.prefix)
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
            subprocess.run(git + step, cwd=self.path, check=True, capture_output=True)
        self.committed = {p.stem for p in (self.path / "logs").glob("2*.csv")}
        self.md5s = folder / "md5s.json"
        (folder / "site").mkdir()
        (folder / "site" / "sitecustomize.py").write_text(STAND_IN % str(self.md5s))
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
        self.env = {**keep, "PATH": f"{self.path / '.venv/bin'}{os.pathsep}{os.environ['PATH']}",
                    "VIRTUAL_ENV": str(self.path / ".venv"), "PYTHONPATH": str(folder / "site"),
                    "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def data(self, n_train: int, n_test: int) -> None:
        """MNIST-format files in data/, where `make train` puts the real ones."""
        self.md5s.write_text(json.dumps(write_mnist(self.path / "data", n_train, n_test)))

    def command(self, printed: str, values: dict[str, str]) -> str:
        assert printed in self.commands, f"`{printed}` is not one of this test's commands"
        self.ran.add(printed)
        for placeholder, value in values.items():  # <run-id>, USER, PASSWORD, ...
            printed = printed.replace(placeholder if placeholder.isupper() else f"<{placeholder}>",
                                      value)
        return printed

    def run(self, printed: str, status: int = 0, then: str = "", **values: str) -> str:
        """Run a README command as printed, its placeholders filled from ``values`` (``run_id``
        for <run-id>) and ``then`` after it: it must exit with ``status``, with no traceback."""
        command = self.command(printed, {k.replace("_", "-"): v for k, v in values.items()})
        proc = subprocess.run(["bash", "-c", command + then], cwd=self.path, env=self.env,
                              text=True, capture_output=True, timeout=900)
        output = proc.stdout + proc.stderr
        assert proc.returncode == status, f"`{command}` exited {proc.returncode}:\n{output[-3000:]}"
        assert "Traceback" not in output, f"`{command}`:\n{output[-3000:]}"
        return output

    def start(self, printed: str, **values: str) -> subprocess.Popen:
        return subprocess.Popen(["bash", "-c", "exec " + self.command(printed, values)],
                                cwd=self.path, env=self.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def runs(self) -> list[str]:
        """The runs made in the clone, oldest first."""
        return sorted(p.stem for p in (self.path / "logs").glob("2*.csv")
                      if p.stem not in self.committed)

    def finish(self) -> None:
        """Every command was run, and the clone holds no change but the user's own files."""
        assert self.ran == set(self.commands), set(self.commands) - self.ran
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                                cwd=self.path, capture_output=True, text=True, check=True).stdout
        left = [line for line in status.splitlines() if line[3:] not in USER_FILES]
        assert not left, f"README commands changed or left files in the clone: {left}"


def test_each_readme_command_is_run_by_a_test_or_says_why_not() -> None:
    assert len(BLOCKS) >= 20 and "make train" in BLOCKS
    listed = {*QUICK_START, *TRAIN, *USE, *TUNE, *MANY}
    assert not (set(NOT_RUN) | listed) - INLINE - BLOCKS, "listed here, gone from the README"
    assert not listed & set(NOT_RUN)
    assert not (INLINE | BLOCKS) - set(NOT_RUN) - listed, "a README command that no test runs"


@MADE_BY_MAKE
def test_quick_start_and_train_as_printed(tmp_path: Path) -> None:
    clone = Clone(tmp_path, QUICK_START + TRAIN)
    clone.data(1024, 256)  # 16 steps of batch 64 an epoch
    clone.run("make train")
    (first,) = clone.runs()
    assert (clone.path / "checkpoints" / f"{first}.pt").is_file()
    python = clone.run(". .venv/bin/activate", then=" && command -v python && python -c ''")
    assert Path(python.strip()).parent.resolve() == (clone.path / ".venv" / "bin").resolve()
    assert "--recipe" in clone.run("python train.py --help")
    clone.run("du -sh .venv/")
    clone.run("make setup")
    clone.run("pip install -r requirements.txt")
    clone.run("make colab-zip")
    assert (clone.path / "s5-colab.zip").is_file()
    for command in TRAIN[:5]:
        clone.run(command)
    assert "make font-digits" in clone.run("python train.py --recipe handwriting", 1)
    font = mnist.font_digits_dir(clone.path / "data")  # what `make font-digits` writes
    images, labels = synthetic_digits(64, seed=5)
    mnist.write_idx(font / "images-idx3-ubyte", images)
    mnist.write_idx(font / "labels-idx1-ubyte", labels)
    clone.run("python train.py --recipe handwriting")
    cut = ctrl_c_in_epoch_two(clone)  # "Ctrl-C saves one"
    clone.run("python train.py --resume checkpoints/<run-id>.pt", run_id=cut)
    assert len((clone.path / "logs" / f"{cut}.csv").read_text().splitlines()) == 6  # 5 epochs
    clone.finish()


@MADE_BY_MAKE
def test_predict_export_page_and_upkeep_as_printed(tmp_path: Path) -> None:
    clone = Clone(tmp_path, USE)
    clone.data(1024, 256)
    user_inputs(clone.path)
    subprocess.run([".venv/bin/python", "train.py", "--recipe", "fast", "--no-progress"],
                   cwd=clone.path, env=clone.env, check=True, capture_output=True, timeout=600)
    (run_id,) = clone.runs()
    out = clone.run("python predict.py my_seven.png")
    p = r"[01]\.\d{3}"  # the README's example line, its digits and probabilities as patterns
    line = rf"my_seven\.png: \d \(probability {p}(, uncertain)?; top 3: \d {p}, \d {p}, \d {p}\)"
    assert re.search(f"^{line}$", out, re.M), out
    clone.run("python predict.py scans/ photo.jpg --checkpoint checkpoints/<run-id>.pt",
              run_id=run_id)
    clone.run("python predict.py scans/ --json > results.json")
    assert len(json.loads((clone.path / "results.json").read_text())) == 2
    clone.run("python -m tools.export checkpoints/<run-id>.pt", run_id=run_id)
    clone.run("python -m tools.onnx_predict checkpoints/<run-id>.onnx digits.npy seven.png",
              run_id=run_id)
    # the committed records rebuild the committed files as they are
    clone.run("make bench ARGS=--table-only")
    clone.run("make experiments")
    clone.run("make links")  # the Makefile's REPOSITORY is already in the README and notebook
    # the README shows another run's results: refused in one line, unless asked to replace them
    assert "--replace" in clone.run("make report", 2)
    make_app(clone)
    for command in ("python -m tools.gpu_checks", "python -m tools.profile_gpu_step"):
        if torch_sees_cuda():
            clone.ran.add(command)  # they train on the full MNIST: run by hand on a GPU
        else:
            assert "needs a CUDA GPU" in clone.run(command, 2)
    clone.finish()


@MADE_BY_MAKE
def test_tuning_on_one_machine_as_printed(tmp_path: Path) -> None:
    clone = Clone(tmp_path, TUNE)
    clone.data(10_240, 256)  # the validation split holds 10,000 of them
    clone.run("python train.py --val 10000")
    out = clone.run("python -m tools.tune --space fast --trials 16 --seeds 1 2")
    assert "'fast': 0 of 16 trials done" in out, out  # a study of its own, not the committed one
    clone.run("python -m tools.study fast")
    assert (clone.path / "studies" / "fast.md").is_file()
    clone.finish()


@MADE_BY_MAKE
def test_two_machines_share_a_postgresql_study_as_printed(tmp_path: Path, postgres: str) -> None:
    clone = Clone(tmp_path, MANY)
    clone.data(10_240, 256)
    user, password, host, db = re.fullmatch(r"postgresql://(.*):(.*)@(.*)/(.*)", postgres).groups()
    values = dict(USER=user, PASSWORD=password, HOST=host, DB=db)
    workers = [clone.start(MANY[0], **values) for _ in range(2)]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert password not in "".join(outputs) and "Traceback" not in "".join(outputs)
    assert password not in clone.run(MANY[1], **values)
    record = (clone.path / "studies" / "fast-lab.json").read_text()
    assert password not in record and len(json.loads(record)["trials"]) >= 16
    clone.finish()


def user_inputs(folder: Path) -> None:
    """The images and arrays a user brings to predict.py and onnx_predict."""
    (folder / "scans").mkdir()
    for name, box in (("my_seven.png", (40, 30, 160, 170)), ("photo.jpg", (60, 20, 140, 180)),
                      ("scans/a.png", (50, 40, 150, 160)), ("scans/b.jpg", (70, 30, 130, 170)),
                      ("seven.png", (40, 30, 160, 170))):
        image = Image.new("RGB" if name.endswith(".jpg") else "L", (200, 200), "white")
        ImageDraw.Draw(image).line(box, fill="black", width=14)
        image.save(folder / name)
    np.save(folder / "digits.npy", synthetic_digits(4, seed=3)[0])


def ctrl_c_in_epoch_two(clone: Clone) -> str:
    """`python train.py`, stopped by Ctrl-C in its second epoch; returns the run's id."""
    before = set(clone.runs())
    proc = subprocess.Popen([".venv/bin/python", "train.py"], cwd=clone.path, env=clone.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, new = time.monotonic() + 300, []
    while time.monotonic() < deadline and proc.poll() is None:
        new = sorted(set(clone.runs()) - before)
        log = clone.path / "logs" / f"{new[0]}.log" if new else None
        if log and log.is_file() and "Epoch 2 (" in log.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130 and "python train.py --resume" in output, output[-3000:]
    return new[0]


def torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_app(clone: Clone) -> None:
    """`make app` serves the page on port 7860 until Ctrl-C."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 7860)) == 0:
            pytest.skip("port 7860 is taken: the page cannot be served here")
    proc = clone.start("make app")
    deadline, served = time.monotonic() + 300, False
    while time.monotonic() < deadline and proc.poll() is None and not served:
        try:
            served = urllib.request.urlopen("http://127.0.0.1:7860", timeout=5).status == 200
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: to make and the server
    output = proc.communicate(timeout=60)[0]
    assert served, output[-3000:]
    assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in output, output[-3000:]
