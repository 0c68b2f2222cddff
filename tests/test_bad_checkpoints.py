"""Every kind of bad checkpoint given to every command line that loads one: one line on stderr, no
traceback, the same exit status everywhere (2 when there is no checkpoint file, 1 when the file is
there but unusable), and the file left as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import ROOT, write_mnist
from PIL import Image
from test_faults import zip_bomb_checkpoint

import predict
from model import Net
from s5 import train_cli
from s5.checkpoint import CHECKPOINT_FORMAT
from tools import export, realworld, report

RUN = "20261204-220208"  # the README's committed run: its log files stand in for a finished run


class Evil:
    def __reduce__(self):  # would run a command if the pickle were loaded unsafely
        return (os.system, ("echo pwned > pwned.txt",))


def make(kind: str, path: Path) -> None:
    good = {"format": CHECKPOINT_FORMAT, "model": Net().state_dict()}
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "truncated":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "bomb":
        zip_bomb_checkpoint(path)
    elif kind == "code":
        torch.save({"format": CHECKPOINT_FORMAT, "model": Evil()}, path)
    elif kind == "foreign":
        torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "nan":
        torch.save({**good, "model": {k: v * float("nan") for k, v in good["model"].items()}},
                   path)
    elif kind == "no-weights":
        torch.save({"format": CHECKPOINT_FORMAT, "model": [1]}, path)


MISSING = ("missing", "folder", "fifo")
KINDS = (*MISSING, "empty", "text", "truncated", "bomb", "code", "foreign", "list", "nan",
         "no-weights")


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny data, a picture, a one-picture real-world manifest and the committed run's logs."""
    root = tmp_path_factory.mktemp("bad")
    write_mnist(root / "data", 256, 1000)
    Image.new("L", (40, 40), 255).save(root / "x.png")
    (root / "rw").mkdir()
    Image.new("L", (40, 40), 255).save(root / "rw" / "a.png")
    (root / "rw" / "manifest.csv").write_text("file,label,source,category,style,width,height\n"
                                               "a.png,7,fonts,clean,x,40,40\n")
    (root / "logs").mkdir()
    for ext in ("csv", "json", "log"):
        shutil.copy(ROOT / "logs" / f"{RUN}.{ext}", root / "logs")
    shutil.copy(ROOT / "README.md", root / "README.md")
    return root


def command(tool: str, ck: Path, root: Path, out: Path) -> tuple[str, object, list[str]]:
    if tool == "predict":
        return "predict.py", predict.main, ["--checkpoint", str(ck), str(root / "x.png")]
    if tool == "export":
        return "python -m tools.export", export.main, [str(ck), "--out", str(out), "--skip-compare"]
    if tool == "realworld":
        return "python -m tools.realworld", realworld.main, [
            "eval", "--out", str(root / "rw"), "--checkpoint", str(ck), "--log-dir", str(out)]
    if tool == "resume":
        return "train.py", train_cli.main, ["--resume", str(ck), "--log-dir", str(out),
                                            "--checkpoint-dir", str(out)]
    (out / "checkpoints").mkdir(parents=True)
    if ck.exists() or ck.is_symlink():
        os.symlink(ck, out / "checkpoints" / f"{RUN}.pt", target_is_directory=ck.is_dir())
    return "python -m tools.report", report.main, [
        "--run", RUN, "--log-dir", str(root / "logs"), "--checkpoint-dir", str(out / "checkpoints"),
        "--data-dir", str(root / "data"), "--no-verify", "--images", str(out / "images"),
        "--readme", str(root / "README.md")]


@pytest.mark.parametrize("tool", ["predict", "export", "realworld", "report", "resume"])
def test_every_bad_checkpoint_is_one_line_with_one_exit_status(
        place: Path, tmp_path: Path, tool: str, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    readme = (place / "README.md").read_bytes()
    for kind in KINDS:
        ck = tmp_path / f"{kind}.pt"
        make(kind, ck)
        before = ck.read_bytes() if ck.is_file() else None
        prog, main, argv = command(tool, ck, place, tmp_path / f"out-{kind}")
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse's own error (train.py --resume of a non-file path)
            status = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert status == (2 if kind in MISSING else 1), (kind, err)
        assert (err and err[-1].startswith(f"{prog}: error: ")
                and "Traceback" not in "\n".join(err)), (kind, err)
        # argparse prints its usage first
        assert len(err) == 1 or (prog == "train.py" and err[0].startswith("usage:")), (kind, err)
        assert (ck.read_bytes() if ck.is_file() else None) == before
    assert (place / "README.md").read_bytes() == readme and not (tmp_path / "pwned.txt").exists()


def test_a_manifest_with_a_bad_label_is_one_line(place: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(place / "rw", tmp_path / "rw")
    (tmp_path / "rw" / "manifest.csv").write_text("file,label,source,category,style,width,height\n"
                                                  "a.png,seven,fonts,clean,x,40,40\n")
    good = tmp_path / "good.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": Net().state_dict()}, good)
    status = realworld.main(["eval", "--out", str(tmp_path / "rw"), "--checkpoint", str(good),
                             "--log-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and "has the label 'seven', not a digit 0-9" in err[0], err
