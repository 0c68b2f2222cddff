"""docs/experiments.md: generated from run files in a logs folder and a tar.xz archive, and up to date."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tools import experiments

ROOT = Path(__file__).resolve().parents[1]
HEADER = "epoch,lr,train_loss,train_acc,{0}_loss,{0}_acc,{0}_correct,{0}_total,seconds\n"


def csv_text(split: str, *accs: float) -> str:
    rows = [f"{i},0.001,0.5,98.0,0.1,{a:.6f},{round(a * 100)},10000,100.0\n" for i, a in enumerate(accs, 1)]
    return HEADER.format(split) + "".join(rows)


def report(checkpoint: str, acc: str) -> str:
    return (f"# Real-world set\n\nCheckpoint `{checkpoint}`; 3197 images.\n\n| group | images | accuracy | top-3 |\n"
            f"|---|---:|---:|---:|\n| all | 3197 | {acc}% | 99.70% |\n| source: fonts | 1400 | 99.00% | 99.90% |\n")


def make_logs(tmp_path: Path) -> tuple[Path, Path]:
    """Two baseline runs in logs/, two candidate runs (one without a .json) and their real-world report archived."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for seed, accs in ((1, (99.0, 99.40)), (2, (99.1, 99.50))):
        run_id = f"20260101-000000-base-s{seed}"
        (logs / f"{run_id}.csv").write_text(csv_text("test", *accs))
        (logs / f"{run_id}.json").write_text(json.dumps(
            {"run_id": run_id, "kind": "train", "command": f"python train.py --seed {seed} --name base-s{seed}",
             "split": "test"}))
    (logs / "realworld-20260101-020000.md").write_text(report("checkpoints/20260101-000000-base-s1.pt", "96.10"))
    archived = {
        "tuning/20260101-000001-cand-s1.csv": csv_text("val", 99.2, 99.30),
        "tuning/20260101-000001-cand-s1.json": json.dumps(
            {"run_id": "20260101-000001-cand-s1", "kind": "train", "split": "val",
             "command": "python train.py --val 10000 --lr 0.003 --seed 1 --log-dir logs/tuning --name cand-s1"}),
        "tuning/20260101-000001-cand-s1.log": "x INFO:utils:Device: cpu, autocast: off, torch 2, threads 1\n",
        # an old run: no .json, test_* columns although it ran on --val; its log names the command
        "tuning/20260101-000002-cand-s2.csv": csv_text("test", 99.20),
        "tuning/20260101-000002-cand-s2.log": (
            "x INFO:utils:Run 20260101-000002-cand-s2: python train.py --val 10000 --lr 0.003 --seed 2\n"
            "x INFO:utils:Device: cpu, autocast: torch.bfloat16, torch 2, threads 2\n"
            "x INFO:utils:Without the weight average (--ema 0): validation accuracy 99.25% (9925/10000)\n"),
        "tuning/realworld-20260101-010000.md": report("checkpoints/tuning/20260101-000001-cand-s1.pt", "97.50"),
    }
    archive = tmp_path / "archive.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name, text in archived.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return logs, archive


QUESTIONS = [
    experiments.Q("Does the candidate beat the baseline?",
                  [("baseline", "base-s?"), (None, "cand-s?", "cand-s?-trained")], "The candidate won.",
                  ("abc1234", "--cand")),
    experiments.Q("A question whose runs were never logged", [(None, "nothing-*")], "Nothing to say."),
]


def row(markdown: str, first_cell: str) -> list[str]:
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_tables_come_from_the_logs_and_the_archive(tmp_path):
    logs, archive = make_logs(tmp_path)
    out = tmp_path / "docs" / "experiments.md"
    experiments.main(["--logs", str(logs), "--archive", str(archive), "--out", str(out)])  # the real questions
    assert "## 1. " in out.read_text()
    md = experiments.build(logs, archive, QUESTIONS)
    assert "## 1. Does the candidate beat the baseline?" in md and "## 2. A question whose runs" in md
    assert "**Conclusion.** The candidate won." in md and "commit `abc1234`" in md
    # run, candidate, kind, split, device, epochs, accuracy, real-world (report), train s, command
    assert row(md, "`20260101-000000-base-s1`") == [
        "`20260101-000000-base-s1`", "baseline", "train", "test", "—", "2", "99.40", "96.10 (`20260101-020000`)",
        "200", "`python train.py --seed 1`"]
    assert row(md, "`20260101-000001-cand-s1`")[1:9] == [
        "cand", "train", "val", "cpu fp32", "2", "99.30", "97.50 (`20260101-010000`)", "200"]
    assert row(md, "`20260101-000001-cand-s1`")[9] == "`python train.py --val 10000 --lr 0.003 --seed 1`"
    old = row(md, "`20260101-000002-cand-s2`")
    assert old[2:8] == ["—", "val", "cpu bf16", "1", "99.20", "—"]
    assert old[9] == "`python train.py --val 10000 --lr 0.003 --seed 2`"
    assert row(md, "`20260101-000002-cand-s2-trained`")[6] == "99.25"  # the log's line for the trained weights
    # medians: candidate, split, runs, accuracy, real-world (runs with a report), train s
    assert row(md, "baseline") == ["baseline", "test", "2", "99.45", "96.10 (1)", "200"]
    assert row(md, "cand") == ["cand", "val", "2", "99.25", "97.50 (1)", "150"]
    assert "_No logged run matches this question's patterns (`nothing-*`)._" in md
    assert "1. [Does the candidate beat the baseline?](#1-does-the-candidate-beat-the-baseline)" in md


def test_without_an_archive_the_archived_runs_are_reported_missing(tmp_path):
    logs, _ = make_logs(tmp_path)
    md = experiments.build(logs, tmp_path / "absent.tar.xz", QUESTIONS)
    assert "`20260101-000000-base-s1`" in md and "cand-s1" not in md
    assert "No logged run matches `cand-s?`, `cand-s?-trained`." in md


def test_conclusions_are_one_sentence_without_typed_numbers():
    for entry in experiments.QUESTIONS:
        prose = re.sub(r"`[^`]*`", "", entry["conclusion"])
        assert not re.search(r"\d", prose), entry["conclusion"]
        assert prose.endswith(".") and ". " not in prose, entry["conclusion"]


def test_committed_document_is_what_the_command_generates(tmp_path, monkeypatch):
    # from the committed logs only: a user's own runs in logs/ do not make the committed document stale
    tracked = subprocess.run(["git", "ls-files", "logs", "docs/studies"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git clone: the committed logs cannot be told from a user's own")
    for name in tracked:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "experiments.md"
    experiments.main(["--out", str(out)])
    assert out.read_text() == (ROOT / "docs" / "experiments.md").read_text(), (
        "docs/experiments.md is stale: run `make experiments` (python -m tools.experiments)")
