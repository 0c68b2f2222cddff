"""docs/experiments.md: generated from data files (run files, run facts, real-world and study
records) in a logs folder and a tar.xz archive, never from log text or markdown; and up to date."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tools import experiments, study

ROOT = Path(__file__).resolve().parents[1]
HEADER = "epoch,lr,train_loss,train_acc,{0}_loss,{0}_acc,{0}_correct,{0}_total,seconds\n"


def csv_text(split: str, *accs: float) -> str:
    rows = [f"{i},0.001,0.5,98.0,0.1,{a:.6f},{round(a * 100)},10000,100.0\n"
            for i, a in enumerate(accs, 1)]
    return HEADER.format(split) + "".join(rows)


def realworld(checkpoint: str, accuracy: float) -> str:
    """An evaluation's record (python -m tools.realworld eval) whose overall accuracy is given."""
    group = {"images": 3197, "top3": 99.7, "flagged": 9.0, "accuracy_when_not_flagged": 99.5}
    return json.dumps({"date": "2026-01-01 02:00:00", "checkpoint": checkpoint,
                       "folder": "realworld", "images": 3197, "unreadable": 0,
                       "uncertain_below": 0.7,
                       "groups": [{"group": "source: fonts", **group, "accuracy": 99.0},
                                  {"group": "all", **group, "accuracy": accuracy}],
                       "sweep": [], "failures": []})


def make_logs(tmp_path: Path) -> tuple[Path, Path]:
    """Two baseline runs in logs/ with an evaluation, two candidate runs archived (one older than
    run files, known from the run facts only) with theirs; a misleading text log is ignored."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for seed, accs in ((1, (99.0, 99.40)), (2, (99.1, 99.50))):
        run_id = f"20260101-000000-base-s{seed}"
        (logs / f"{run_id}.csv").write_text(csv_text("test", *accs))
        (logs / f"{run_id}.json").write_text(json.dumps(
            {"run_id": run_id, "kind": "train", "split": "test",
             "command": f"python train.py --seed {seed} --name base-s{seed}"}))
        # text is not data: what a log says is never read
        (logs / f"{run_id}.log").write_text("x INFO:utils:Device: cuda, autocast: torch.float16\n")
    (logs / "realworld-20260101-020000.json").write_text(
        realworld("checkpoints/20260101-000000-base-s1.pt", 96.10))
    (logs / "realworld-20260101-030000.md").write_text(  # a report without its record: not read
        "Checkpoint `checkpoints/20260101-000000-base-s2.pt`\n| all | 3197 | 50.00% |\n")
    facts = {"runs": {
        "20260101-000001-cand-s1": {"device": "cpu", "autocast": "off"},
        "20260101-000002-cand-s2": {"device": "cpu", "autocast": "torch.bfloat16", "split": "val",
                                    "command": "python train.py --val 10000 --lr 0.003 --seed 2",
                                    "trained_weights_accuracy": 99.25}}}
    archived = {
        "run-facts.json": json.dumps(facts),
        "tuning/20260101-000001-cand-s1.csv": csv_text("val", 99.2, 99.30),
        "tuning/20260101-000001-cand-s1.json": json.dumps(
            {"run_id": "20260101-000001-cand-s1", "kind": "train", "split": "val",
             "command": "python train.py --val 10000 --lr 0.003 --seed 1 --log-dir logs/tuning "
                        "--name cand-s1"}),
        # an old run: no .json, test_* columns although it ran on --val; the run facts say so
        "tuning/20260101-000002-cand-s2.csv": csv_text("test", 99.20),
        "tuning/realworld-20260101-010000.json": realworld(
            "checkpoints/tuning/20260101-000001-cand-s1.pt", 97.50),
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
                  [("baseline", "base-s?"), (None, "cand-s?", "cand-s?-trained")],
                  "The candidate won.", ("abc1234", "--cand")),
    experiments.Q("A question whose runs were never logged", [(None, "nothing-*")],
                  "Nothing to say."),
]


def row(markdown: str, first_cell: str) -> list[str]:
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_tables_come_from_the_data_files_of_the_logs_and_the_archive(tmp_path):
    logs, archive = make_logs(tmp_path)
    out = tmp_path / "docs" / "experiments.md"
    experiments.main(["--logs", str(logs), "--archive", str(archive), "--out", str(out),
                      "--studies", str(tmp_path / "none")])  # the real questions
    assert "## 1. " in out.read_text()
    md = experiments.build(logs, archive, QUESTIONS, studies=None)
    assert "## 1. Does the candidate beat the baseline?" in md
    assert "## 2. A question whose runs" in md
    assert "**Conclusion.** The candidate won." in md and "commit `abc1234`" in md
    # run, candidate, kind, split, device, epochs, accuracy, real-world (report), train s, command
    assert row(md, "`20260101-000000-base-s1`") == [
        "`20260101-000000-base-s1`", "baseline", "train", "test", "—", "2", "99.40",
        "96.10 (`20260101-020000`)", "200", "`python train.py --seed 1`"]
    assert row(md, "`20260101-000000-base-s2`")[7] == "—"  # a markdown report is not read
    assert row(md, "`20260101-000001-cand-s1`")[1:9] == [
        "cand", "train", "val", "cpu fp32", "2", "99.30", "97.50 (`20260101-010000`)", "200"]
    assert row(md, "`20260101-000001-cand-s1`")[9] == \
        "`python train.py --val 10000 --lr 0.003 --seed 1`"
    old = row(md, "`20260101-000002-cand-s2`")
    assert old[2:8] == ["—", "val", "cpu bf16", "1", "99.20", "—"]
    assert old[9] == "`python train.py --val 10000 --lr 0.003 --seed 2`"
    assert row(md, "`20260101-000002-cand-s2-trained`")[6] == "99.25"  # the facts' trained weights
    # medians: candidate, split, runs, accuracy, real-world (runs with a report), train s
    assert row(md, "baseline") == ["baseline", "test", "2", "99.45", "96.10 (1)", "200"]
    assert row(md, "cand") == ["cand", "val", "2", "99.25", "97.50 (1)", "150"]
    assert "_No logged run matches this question's patterns (`nothing-*`)._" in md
    assert "1. [Does the candidate beat the baseline?](#1-does-the-candidate-beat-the-baseline)" \
        in md


def test_without_an_archive_the_archived_runs_are_reported_missing(tmp_path):
    logs, _ = make_logs(tmp_path)
    md = experiments.build(logs, tmp_path / "absent.tar.xz", QUESTIONS, studies=None)
    assert "`20260101-000000-base-s1`" in md and "cand-s1" not in md
    assert "No logged run matches `cand-s?`, `cand-s?-trained`." in md


def test_output_only_flags_are_left_out_of_commands():
    assert experiments.shown_command(
        "python train.py --name x --no-progress --lr 0.1 --log-dir a --checkpoint-dir b "
        "--no-save-model --seed 2") == "python train.py --lr 0.1 --seed 2"


def study_record() -> dict:
    trial = {"params": {"lr": 0.005, "optimizer": "adamw"}, "epochs": 0.5, "val_acc": [99.1, 98.9],
             "stopped_at": None, "seconds": 60.0, "runs": ["r0-s1", "r0-s2"], "baseline": False}
    return {"study": "s", "command": "python -m tools.tune --space fast --study s", "seeds": [1, 2],
            "space": {"recipe": "fast", "search": {"lr": {"low": 0.001, "high": 0.03, "log": True},
                                                   "optimizer": {"choices": ["adamw", "muon"]}}},
            "trials": [{**trial, "number": 0, "state": "complete", "value": 99.0, "baseline": True},
                       {**trial, "number": 1, "state": "pruned", "value": 98.5, "stopped_at": 98.5,
                        "params": {"lr": 0.02, "optimizer": "muon"}, "val_acc": [],
                        "runs": ["r1-s1"]},
                       {**trial, "number": 2, "state": "complete", "value": 99.3,
                        "params": {"lr": 0.006, "optimizer": "muon"}}]}


def test_a_study_is_rendered_and_cited_from_its_record(tmp_path):
    record = study_record()
    path = study.write(record, tmp_path / "studies")
    assert json.loads(path.read_text()) == record
    page = (tmp_path / "studies" / "s.md").read_text()
    assert "3 trials (2 complete, 1 pruned), 5 runs, 3.0 minutes of training." in page
    assert "| 1 | pruned | 0.02 | muon |  (stopped at 98.50) |  | 60.0 | `r1-s1` |" in page
    assert "- Best at 0.5 epochs: trial 2, 99.30% (lr=0.006, optimizer=muon)" in page
    assert (tmp_path / "studies" / "s.png").stat().st_size > 10_000
    (tmp_path / "studies" / "s.md").write_text("- a line the summary must not take\n")  # not read
    logs = tmp_path / "logs"
    logs.mkdir()
    md = experiments.build(logs, None, QUESTIONS, studies=tmp_path / "studies")
    assert ("- [`s`](studies/s.md): 3 trials (2 complete, 1 pruned), 5 runs, 3.0 minutes of "
            "training. The recipe as it stood (trial 0): 99.00% (lr=0.005, optimizer=adamw); "
            "Best at 0.5 epochs: trial 2, 99.30% (lr=0.006, optimizer=muon)") in md


def test_conclusions_are_one_sentence_without_typed_numbers():
    for entry in experiments.QUESTIONS:
        prose = re.sub(r"`[^`]*`", "", entry["conclusion"])
        assert not re.search(r"\d", prose), entry["conclusion"]
        assert prose.endswith(".") and ". " not in prose, entry["conclusion"]


def test_committed_documents_are_what_the_commands_generate(tmp_path, monkeypatch):
    # from the committed files only: a user's own runs in logs/ do not make the documents stale
    tracked = subprocess.run(["git", "ls-files", "logs", "docs/studies"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git clone: the committed logs cannot be told from a user's own")
    for name in tracked:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for record in sorted((tmp_path / "docs" / "studies").glob("*.json")):  # each study's page
        study.write(json.loads(record.read_text()), tmp_path / "rendered")
        assert (tmp_path / "rendered" / f"{record.stem}.md").read_text() == \
            record.with_suffix(".md").read_text(), f"run python -m tools.study {record.stem}"
    out = tmp_path / "experiments.md"
    experiments.main(["--out", str(out)])
    assert out.read_text() == (ROOT / "docs" / "experiments.md").read_text(), (
        "docs/experiments.md is stale: run `make experiments` (python -m tools.experiments)")
