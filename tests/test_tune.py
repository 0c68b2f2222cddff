"""python -m tools.tune and python -m tools.study: real Optuna studies on tiny data, several
workers, interruptions, a real PostgreSQL server where one can start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import PASSWORD, write_mnist
from optuna.trial import TrialState

import utils
from s5 import recipes
from tools import study as study_cli
from tools import tune

SPACE = {"recipe": "fast", "search": {"lr": {"low": 0.001, "high": 0.01, "log": True}}}
RECIPE = {"lr": recipes.RECIPES["fast"].lr}  # the recipe's own value: trial 0 of every study


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A working folder with 512/128 tiny images and a one-setting space file."""
    write_mnist(tmp_path / "data", 512, 128)
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    return tmp_path


def tune_cmd(*flags: str, epochs: str = "1") -> list[str]:
    return [sys.executable, "-m", "tools.tune", "--space", "space.json", "--study", "s",
            "--val", "128", *flags, "--",
            "--data-dir", "data", "--no-verify", "--epochs", epochs, "--checkpoint-dir", "ck"]


def journal_study(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="s",
                             storage=tune.journal(tune.journal_path(folder / "studies", "s")))


def check_runs(study: optuna.Study, run_dir: Path) -> list[str]:
    """Every run a trial names exists once, with the study and trial in its run file; returns the
    run ids."""
    run_ids = [r for t in study.trials for r in t.user_attrs.get("runs", [])]
    assert len(run_ids) == len(set(run_ids)) == len(list(run_dir.glob("*.json")))
    for t in study.trials:
        for run_id in t.user_attrs.get("runs", []):
            info = json.loads((run_dir / f"{run_id}.json").read_text())
            assert ((info["study"], info["trial"], info["kind"], info["split"])
                    == ("s", t.number, "tuning", "val"))
    return run_ids


def test_two_workers_share_one_journal_study(place: Path) -> None:
    workers = [subprocess.Popen(tune_cmd("--trials", "6"), cwd=place, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = journal_study(place)
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 6 <= len(done) <= 8  # each worker may start one trial before it sees the other's last
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both workers' trials recorded
    # the recipe first
    assert study.trials[0].params == RECIPE and study.trials[0].user_attrs["baseline"]
    check_runs(study, place / "studies" / "s")


def test_ctrl_c_marks_the_trial_failed_and_the_study_resumes(place: Path) -> None:
    # the same command twice, as the message says (a study refuses a worker with other flags)
    command = tune_cmd("--trials", "2", epochs="4")
    proc = subprocess.Popen(command, cwd=place, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(  # mid-trial: three epochs to go
            "Epoch 1 " in p.read_text() for p in (place / "studies" / "s").glob("*.log")):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, output
    assert "recorded as failed" in output and "Continue the study with" in output
    assert [t.state for t in journal_study(place).trials] == [TrialState.FAIL]
    done = subprocess.run(command, cwd=place, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = journal_study(place).trials
    assert trials[0].state == TrialState.FAIL and len(trials) == 3
    # the interrupted recipe, again
    assert trials[1].params == RECIPE and trials[1].user_attrs["baseline"]
    assert trials[1].state == TrialState.COMPLETE  # the recipe is the yardstick: never pruned
    check_runs(journal_study(place), place / "studies" / "s")


def test_a_trial_whose_worker_died_is_marked_failed(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=tune.journal(tmp_path / "s.journal"),
                                direction="maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, alive = study.ask(), study.ask()
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    alive.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    assert tune.fail_abandoned_trials(study) == [orphan.number]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING]


@pytest.mark.parametrize(("argv", "message"), [
    (["--space", "nope"], "not one of fast"),
    (["--space", "bad.json"], "not a recipe setting"),
    (["--study", "a/b"], "--study"),
    (["--trials", "0"], "--trials"),
    (["--space", "space.json", "--", "--lr", "0.1"], "searched by the space"),
    (["--space", "space.json", "--", "--epochs", "-1"], "--epochs"),
    (["--space", "space.json", "--storage", "nosuchdb://x"], "cannot open the study"),
])
def test_usage_errors_are_one_line(place: Path, argv: list[str], message: str) -> None:
    (place / "bad.json").write_text(json.dumps({"recipe": "fast",
                                                "search": {"colour": {"choices": [1]}}}))
    result = subprocess.run([sys.executable, "-m", "tools.tune", *argv], cwd=place,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode == 2 and message in result.stderr
            and "Traceback" not in result.stderr), result.stderr
    assert not (place / "studies" / "nope.journal").exists()


def test_a_study_renders_to_markdown_and_a_plot(place: Path) -> None:
    assert subprocess.run(tune_cmd("--trials", "3"), cwd=place, capture_output=True,
                          timeout=600).returncode == 0
    out = place / "docs"
    assert study_cli.main(["s", "--log-dir", str(place / "studies"), "--out", str(out)]) == 0
    text = (out / "s.md").read_text()
    study = journal_study(place)
    for t in study.trials:
        assert f"| {t.number} | {t.state.name.lower()} | {t.params['lr']:.4g} |" in text
        assert all(f"`{r}`" in text for r in t.user_attrs["runs"])
    assert "The recipe as it stood (trial 0)" in text and "Best at 1 epochs" in text
    assert (out / "s.png").stat().st_size > 10_000
    assert study_cli.main(["missing", "--log-dir", str(place / "studies"), "--out", str(out)]) == 2


def test_two_workers_share_one_postgresql_study(place: Path, capsys, postgres: str) -> None:
    url = postgres
    workers = [subprocess.Popen(tune_cmd("--trials", "4", "--storage", url), cwd=place,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert PASSWORD not in "".join(outputs) and "postgres:***@" in outputs[0]
    study = optuna.load_study(study_name="s", storage=url)
    assert PASSWORD not in json.dumps(study.user_attrs)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) >= 4
    check_runs(study, place / "studies" / "s")
    # nothing went to the default file
    assert not (place / "studies" / "s.journal").exists()
    out = place / "docs"
    assert study_cli.main(["s", "--storage", url, "--out", str(out)]) == 0
    assert PASSWORD not in (out / "s.md").read_text() + (out / "s.json").read_text()
    wrong = url.replace(PASSWORD, "wrong-pw")
    capsys.readouterr()
    assert study_cli.main(["s", "--storage", wrong, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "wrong-pw" not in err and "postgres:***@" in err and len(err.splitlines()) == 1


def test_a_worker_stops_after_three_failed_trials_in_a_row(place: Path, monkeypatch,
                                                           capsys) -> None:
    calls = []

    def failing_run(settings, *, record, **places):  # ends in error, as a run diverging at once
        calls.append(record["trial"])
        return SimpleNamespace(status="diverged", history=utils.History(),
                               files=SimpleNamespace(run_id=f"run-{len(calls)}"))

    monkeypatch.chdir(place)
    monkeypatch.setattr(tune.training, "train", failing_run)
    assert tune.main(["--space", "space.json", "--study", "s", "--val", "128", "--trials", "10",
                      "--", "--data-dir", "data", "--no-verify"]) == 1
    assert calls == [0, 1, 2] and "3 trials in a row failed" in capsys.readouterr().err
    assert [t.state for t in journal_study(place).trials] == [TrialState.FAIL] * 3


def fake_train(settings, *, record, on_epoch, **places):
    """A finished run in no time: its validation accuracy is the learning rate's (to tell apart)."""
    history = utils.History(split="val", epoch=[1.0], eval_acc=[settings.lr * 1000], seconds=[0.1])
    on_epoch(history)
    return SimpleNamespace(status="finished", history=history,
                           files=SimpleNamespace(run_id=f"t{record['trial']}-s{settings.seed}"))


@pytest.mark.parametrize(("space", "message"), [
    ([SPACE], "needs a JSON object"),
    (None, "needs a JSON object"),
    ({"recipe": "fast", "search": {"lr": {"choices": [-1]}}}, "lr: -1 is no value a run can use"),
    ({"recipe": "fast", "search": {"lr": {"low": -1, "high": 0.1}}}, "lr: -1 is no value"),
    ({"recipe": "fast", "search": {"optimizer": {"choices": [None]}}}, "list of str values"),
    ({"recipe": "fast", "search": {"optimizer": {"choices": ["sgdx"]}}}, "'sgdx': use one of"),
    ({"recipe": "fast", "search": {"batch_size": {"choices": [1.5]}}}, "list of int values"),
    ({"recipe": "fast", "search": {"lr": {"low": 0.1, "hi": 1}}}, "give {\"choices\""),
])
def test_a_bad_space_is_refused_before_any_trial(place: Path, monkeypatch, capsys, space: object,
                                                 message: str) -> None:
    (place / "bad.json").write_text(json.dumps(space))
    monkeypatch.chdir(place)
    monkeypatch.setattr(tune.training, "train", lambda *a, **k: pytest.fail("a trial started"))
    assert tune.main(["--space", "bad.json", "--val", "128", "--", "--data-dir", "data"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m tools.tune: error: ") and len(err.splitlines()) == 1, err
    assert message in err and not (place / "studies").exists()


@pytest.mark.parametrize(("log_dir", "message"), [("afile", "is a file"),
                                                  ("afile/sub", "cannot write there"),
                                                  ("/proc", "cannot write there")])  # even root
def test_an_unusable_log_dir_is_refused_before_any_work(place: Path, monkeypatch, capsys,
                                                        log_dir: str, message: str) -> None:
    (place / "afile").write_text("")
    monkeypatch.chdir(place)
    assert tune.main(["--space", "space.json", "--log-dir", log_dir, "--", "--data-dir", "data"]) \
        == 2
    err = capsys.readouterr().err
    assert f"--log-dir {log_dir}: {message}" in err and len(err.splitlines()) == 1, err
    assert not (place / "studies").exists()


@pytest.mark.parametrize(("flags", "train", "difference"), [
    (["--seeds", "2"], [], "--seeds [1], this worker with [2]"),
    (["--val", "256"], [], "--val 128, this worker with 256"),
    ([], ["--epochs", "2"], 'after -- {"epochs": 1.0}, this worker with {"epochs": 2.0}'),
    ([], ["--no-verify"], 'after -- {"verify": null}, this worker with {"verify": false}'),
])
def test_a_study_refuses_a_worker_that_scores_otherwise(place: Path, monkeypatch, flags: list[str],
                                                        train: list[str], difference: str) -> None:
    def args(*flags: str, train: tuple[str, ...] = (), space: str = "space.json") -> object:
        return tune.build_parser().parse_args(["--space", space, "--study", "s", "--val", "128",
                                               *flags, "--", "--data-dir", "data", "--epochs", "1",
                                               "--checkpoint-dir", "ck", *train])

    monkeypatch.chdir(place)
    study = tune.checked_study(args())[2]
    assert {k: study.user_attrs[k] for k in ("seeds", "val", "train")} == {
        "seeds": [1], "val": 128, "train": {"epochs": 1.0, "data_dir": "data"}}
    tune.checked_study(args(train=("--checkpoint-dir", "elsewhere")))  # where output goes: free
    with pytest.raises(tune.UsageError, match="another --study name") as refused:
        tune.checked_study(args(*flags, train=tuple(train)))
    assert difference in str(refused.value)
    (place / "other.json").write_text(json.dumps({**SPACE, "recipe": "default"}))
    with pytest.raises(tune.UsageError, match="scored with --space"):
        tune.checked_study(args(space="other.json"))


def test_a_grid_ends_normally_when_used_up(place: Path, monkeypatch, capsys) -> None:
    (place / "grid.json").write_text(json.dumps(
        {"recipe": "fast", "search": {"lr": {"choices": [0.002, 0.004, RECIPE["lr"]]}}}))
    monkeypatch.chdir(place)
    monkeypatch.setattr(tune.training, "train", fake_train)
    argv = ["--space", "grid.json", "--study", "s", "--sampler", "grid", "--trials", "10", "--val",
            "128", "--", "--data-dir", "data"]
    assert tune.main(argv) == 0
    out = capsys.readouterr().out
    assert "The grid is done: each of its 3 combinations has been tried" in out, out
    trials = journal_study(place).trials
    assert sorted(t.params["lr"] for t in trials) == sorted([0.002, 0.004, RECIPE["lr"]])
    # the grid's point that is the recipe: marked, never pruned, and run once
    assert [t.params for t in trials if t.user_attrs.get("baseline")] == [RECIPE]
    assert tune.main(argv) == 0 and "The grid is done" in capsys.readouterr().out
    assert len(journal_study(place).trials) == 3


def test_a_cut_off_journal_is_repaired_and_other_damage_named(place: Path, monkeypatch,
                                                              capsys) -> None:
    monkeypatch.chdir(place)
    monkeypatch.setattr(tune.training, "train", fake_train)
    argv = ["--space", "space.json", "--study", "s", "--trials", "2", "--val", "128", "--",
            "--data-dir", "data"]
    assert tune.main(argv) == 0
    path = place / "studies" / "s.journal"
    whole = path.read_bytes()
    path.write_bytes(whole[:-20])  # a worker killed while writing its last record
    argv[argv.index("2")] = "3"
    assert tune.main(argv) == 0
    err = capsys.readouterr().err
    assert f"WARNING: {Path('studies/s.journal')}: its last record was cut off" in err, err
    assert path.read_bytes().endswith(b"\n") and len(journal_study(place).trials) >= 3
    path.write_bytes(path.read_bytes() + b"{not json\n" + whole.splitlines(keepends=True)[-1])
    assert tune.main(argv) == 2
    err = capsys.readouterr().err
    assert "studies/s.journal: not a readable study journal" in err and len(err.splitlines()) == 1


def test_passwords_are_never_recorded_or_printed(place: Path, monkeypatch, capsys) -> None:
    assert tune.redact("a postgresql://me:p@s:s@db:5/x b") == "a postgresql://me:***@db:5/x b"
    assert tune.redact("sqlite:///a.db postgresql://db/x") == "sqlite:///a.db postgresql://db/x"
    monkeypatch.chdir(place)
    monkeypatch.setattr(tune.time, "sleep", lambda s: None)
    url = "postgresql://me:hunter2@127.0.0.1:1/db"  # nothing listens on port 1
    assert tune.main(["--space", "space.json", "--storage", url, "--", "--data-dir", "data"]) == 2
    assert study_cli.main(["s", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and err.count("postgresql://me:***@127.0.0.1:1/db") == 2, err
