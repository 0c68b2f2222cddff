"""python -m tools.study: the committed study renders as the docs show it, read only; studies that
are empty, damaged or missing, and bad places, give one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tools import study as study_cli
from tools import tune

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"recipe": "fast", "search": {"lr": {"low": 0.001, "high": 0.01, "log": True}}}


def make_study(folder: Path, states: list[TrialState], **attrs: object) -> Path:
    """A journal study <folder>/s.journal whose trials end in ``states``; returns its path."""
    path = tune.journal_path(folder, "s")
    study = optuna.create_study(study_name="s", storage=tune.journal(path), direction="maximize")
    for key, value in {"space": SPACE, "seeds": [1], **attrs}.items():
        study.set_user_attr(key, value)
    for state in states:
        trial = study.ask({"lr": FloatDistribution(0.001, 0.01, log=True)})
        trial.set_user_attr("runs", [f"run-{trial.number}"])
        study.tell(trial, 90.0 if state == TrialState.COMPLETE else None, state=state)
    return path


def test_the_committed_study_renders_as_committed_and_is_only_read(tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    journal = ROOT / "logs" / "studies" / "fast.journal"
    before = journal.read_bytes()
    monkeypatch.chdir(ROOT)  # no studies/fast.journal of the user's in a clean checkout
    if (ROOT / "studies" / "fast.journal").exists():
        pytest.skip("this checkout has its own studies/fast.journal, which comes first")
    assert study_cli.main(["fast", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "fast.json").read_text()) == \
        json.loads((ROOT / "docs" / "studies" / "fast.json").read_text())
    assert journal.read_bytes() == before and not list(journal.parent.glob("fast.journal?*"))
    assert "(18 trials)" in capsys.readouterr().out


def test_a_users_study_renders_beside_its_journal_and_a_committed_one_into_the_docs(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_study(Path("studies"), [TrialState.COMPLETE])
    assert study_cli.main(["s"]) == 0
    assert (tmp_path / "studies" / "s.md").is_file() and not (tmp_path / "docs").exists()
    (tmp_path / "studies" / "s.journal").unlink()  # yours would come first
    make_study(Path("logs") / "studies", [TrialState.COMPLETE])  # as committed with the project
    assert study_cli.main(["s"]) == 0
    assert (tmp_path / "docs" / "studies" / "s.md").is_file()


def test_a_study_whose_trials_all_failed_renders(tmp_path: Path, capsys) -> None:
    make_study(tmp_path, [TrialState.FAIL] * 2)
    out = tmp_path / "out"
    assert study_cli.main(["s", "--log-dir", str(tmp_path), "--out", str(out)]) == 0
    assert "no trial completed or was pruned" in capsys.readouterr().out
    assert "| 1 | fail |" in (out / "s.md").read_text() and (out / "s.png").stat().st_size > 1000


def test_a_recorded_password_is_not_rendered(tmp_path: Path) -> None:
    command = "python -m tools.tune --storage postgresql://me:hunter2@db/x"  # as once recorded
    make_study(tmp_path, [TrialState.COMPLETE], command=command)
    assert study_cli.main(["s", "--log-dir", str(tmp_path), "--out", str(tmp_path)]) == 0
    for name in ("s.md", "s.json"):
        text = (tmp_path / name).read_text()
        assert "hunter2" not in text and "postgresql://me:***@db/x" in text


def test_damaged_journals_are_named_in_one_line(tmp_path: Path, capsys) -> None:
    path = make_study(tmp_path, [TrialState.COMPLETE] * 2)
    whole = path.read_bytes()
    path.write_bytes(whole[:-15])  # cut off mid-record: read without it, the file left as it is
    assert study_cli.main(["s", "--log-dir", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert f"WARNING: {path}: its last record was cut off" in capsys.readouterr().err
    assert path.read_bytes() == whole[:-15]
    path.write_bytes(b"\x00garbage\n" + whole)
    assert study_cli.main(["s", "--log-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: not a readable study journal" in err and len(err.splitlines()) == 1, err


def test_bad_places_are_one_line_and_make_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    make_study(tmp_path, [TrialState.COMPLETE])
    (tmp_path / "afile").write_text("")
    monkeypatch.chdir(tmp_path)
    for argv, message in [(["--log-dir", ".", "--out", "afile"], "--out afile: is a file"),
                          (["--storage", "sqlite:///new.db"], "no database file new.db"),
                          (["--storage", "nosuchdb://x"], "--storage nosuchdb://x: "),
                          (["--log-dir", "nowhere"], "no study file nowhere/s.journal")]:
        assert study_cli.main(["s", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "docs").exists()
    assert not (tmp_path / "nowhere").exists()


def test_a_study_in_a_sqlite_database_renders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("space", SPACE)
    study.enqueue_trial({"lr": 0.002})
    study.tell(study.ask({"lr": FloatDistribution(0.001, 0.01, log=True)}), 91.0)
    assert study_cli.main(["s", "--storage", url, "--out", str(tmp_path)]) == 0
    assert "| 0 | complete | 0.002 |" in (tmp_path / "s.md").read_text()
    assert study_cli.main(["t", "--storage", url, "--out", str(tmp_path)]) == 2  # no such study


def test_a_study_that_cannot_write_all_three_files_writes_none(tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make_study(Path("studies"), [TrialState.COMPLETE])
    (tmp_path / "studies" / "s.png").mkdir()  # the last of the three cannot be written
    assert study_cli.main(["s"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("studies/s.png: it is a folder") and "\n" not in err
    left = {p.name for p in (tmp_path / "studies").iterdir()}
    assert not left & {"s.json", "s.md"} and not [n for n in left if n.endswith(".tmp")], left
