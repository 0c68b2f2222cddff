"""python -m tools.tune and python -m tools.study: real Optuna studies on tiny data, several
workers, interruptions, a real PostgreSQL server where one can start."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import write_mnist
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
                             storage=tune.journal(tune.journal_path(folder / "logs", "s")))


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
    check_runs(study, place / "logs" / "studies" / "s")


def test_ctrl_c_marks_the_trial_failed_and_the_study_resumes(place: Path) -> None:
    proc = subprocess.Popen(tune_cmd("--trials", "2", epochs="200"), cwd=place,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(
            "Epoch 2 " in p.read_text() for p in (place / "logs" / "studies" / "s").glob("*.log")):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, output
    assert "recorded as failed" in output and "Continue the study with" in output
    assert [t.state for t in journal_study(place).trials] == [TrialState.FAIL]
    done = subprocess.run(tune_cmd("--trials", "2"), cwd=place, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = journal_study(place).trials
    assert trials[0].state == TrialState.FAIL and len(trials) == 3
    # the interrupted recipe, again
    assert trials[1].params == RECIPE and trials[1].user_attrs["baseline"]
    assert trials[1].state == TrialState.COMPLETE  # the recipe is the yardstick: never pruned
    check_runs(journal_study(place), place / "logs" / "studies" / "s")


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
    assert not (place / "logs" / "studies" / "nope.journal").exists()


def test_a_study_renders_to_markdown_and_a_plot(place: Path) -> None:
    assert subprocess.run(tune_cmd("--trials", "3"), cwd=place, capture_output=True,
                          timeout=600).returncode == 0
    out = place / "docs"
    assert study_cli.main(["s", "--log-dir", str(place / "logs"), "--out", str(out)]) == 0
    text = (out / "s.md").read_text()
    study = journal_study(place)
    for t in study.trials:
        assert f"| {t.number} | {t.state.name.lower()} | {t.params['lr']:.4g} |" in text
        assert all(f"`{r}`" in text for r in t.user_attrs["runs"])
    assert "The recipe as it stood (trial 0)" in text and "Best at 1 epochs" in text
    assert (out / "s.png").stat().st_size > 10_000
    assert study_cli.main(["missing", "--log-dir", str(place / "logs"), "--out", str(out)]) == 2


def start_postgres(folder: Path) -> tuple[str, list[str]]:
    """Start a PostgreSQL server (Debian's package) on a free local port; returns its URL and the
    stop command."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
    bin_dir = Path(found[-1]).parent
    # the server refuses to run as root
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "pg"
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-w", "-l", folder / "pg.log", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    return (f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
            [*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "stop"])


def test_two_workers_share_one_postgresql_study(place: Path) -> None:
    pytest.importorskip("psycopg2", reason="PostgreSQL's driver is in requirements-tune.txt")
    # outside pytest's private tmp: the server's user reads it
    folder = Path(tempfile.mkdtemp(prefix="s5-pg-"))
    folder.chmod(0o755)
    try:
        url, stop = start_postgres(folder)
        try:
            workers = [subprocess.Popen(tune_cmd("--trials", "4", "--storage", url), cwd=place,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                       for _ in range(2)]
            outputs = [w.communicate(timeout=600)[0] for w in workers]
            assert [w.returncode for w in workers] == [0, 0], outputs
            study = optuna.load_study(study_name="s", storage=url)
            assert len({t.user_attrs["worker"] for t in study.trials}) == 2
            assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) >= 4
            check_runs(study, place / "logs" / "studies" / "s")
            # nothing went to the default file
            assert not (place / "logs" / "studies" / "s.journal").exists()
        finally:
            subprocess.run(stop, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
