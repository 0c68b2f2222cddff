"""Optuna searches of a recipe's settings on the validation split: `python -m tools.tune`.

Each trial trains one logged run per seed (studies/<study>/, git-ignored, beside the study's journal
studies/<study>.journal); its value is their mean validation accuracy. The recipe as it stands is
trial 0, so a study says whether the search beat it. A study records what scores it (space, seeds,
--val, the flags after --): a worker that differs is refused. `python -m tools.study <study>`
renders a study into docs/studies/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from s5 import recipes, train_cli, training
from s5.checkpoint import CheckpointError
from s5.cli import UsageError, bounded, fail, program, run_name
from s5.files import process_is_gone
from s5.mnist import MnistError

# The search spaces: the recipe a study starts from, and what of it varies: "choices", or a range
# "low".."high" (on a log scale with "log"). A JSON file of this shape works too.
SPACES = {
    # Batch 64 stays, so every trial costs about the same time.
    "fast": {"recipe": "fast", "search": {
        "lr": {"low": 0.001, "high": 0.03, "log": True},
        "optimizer": {"choices": ["adamw", "muon"]},
        "label_smoothing": {"low": 0.0, "high": 0.2},
        "degrees": {"low": 0.0, "high": 20.0}}},
    "default": {"recipe": "default", "search": {
        "lr": {"low": 0.0005, "high": 0.01, "log": True},
        "momentum": {"low": 0.85, "high": 0.98},
        "label_smoothing": {"low": 0.0, "high": 0.2},
        "lowres": {"low": 0.0, "high": 0.5}}},
    # The GPU recipes' grid: `--space gpu --sampler grid --seeds 1 2 3 -- --device cuda`.
    "gpu": {"recipe": "gpu", "search": {
        "lr": {"choices": [0.004, 0.006, 0.008, 0.01]},
        "batch_size": {"choices": [256, 512, 1024]}}},
    "gpu-fast": {"recipe": "gpu-fast", "search": {
        "epochs": {"choices": [1, 2, 3]},
        "batch_size": {"choices": [256, 512, 1024]},
        "lr": {"choices": [0.006, 0.008, 0.01, 0.012, 0.015, 0.02]}}},
}
DEFAULT_DIR = "studies"  # git-ignored: a clone's committed studies (logs/studies/) stay as they are
MAX_FAILED_IN_A_ROW = 3  # a worker stops after this many failed trials in a row
PROG = program("tools.tune")
STEPS_PER_SEED = 1000  # a trial's step for the pruner: seed's index * this + epoch's index
# Train flags that only say where output goes: workers may differ in them, studies ignore them
OUTPUT_PLACES = ("log_dir", "checkpoint_dir", "tensorboard", "save_model")
# The password of a URL's user info (scheme://user:password@host), greedy: it may hold '@' or ':'
PASSWORD = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@]*):\S*@")


def redact(text: object) -> str:
    """``text`` with every URL's password shown as ***: storage URLs are recorded and printed."""
    return PASSWORD.sub(r"\1:***@", str(text))


def load_space(name: str) -> dict:
    """A space from SPACES by name or from a JSON file of that shape, its shape checked."""
    if name in SPACES:
        space = SPACES[name]
    else:
        try:
            space = json.loads(Path(name).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--space {name}: not one of {', '.join(SPACES)} nor a readable JSON "
                             f"file ({exc})") from None
    recipe, search = (space.get("recipe"), space.get("search")) if isinstance(space, dict) \
        else (None, None)
    if recipe not in recipes.RECIPES or not isinstance(search, dict) or not search:
        raise UsageError(f"--space {name}: needs a JSON object with a \"recipe\" (one of "
                         f"{', '.join(recipes.RECIPES)}) and a non-empty \"search\" object")
    for setting, spec in search.items():
        distribution(setting, spec)
    return space


def distribution(setting: str, spec: object) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one searched setting (``UsageError`` if its shape is wrong)."""
    if setting not in recipes.RECIPE_KEYS:
        raise UsageError(f"the space searches {setting!r}, not a recipe setting "
                         f"({', '.join(recipes.RECIPE_KEYS)})")
    kind = recipes.Settings.__dataclass_fields__[setting].type  # "int", "float" or "str"
    kind = getattr(kind, "__name__", kind)  # a type, were recipes.py to drop postponed annotations
    if isinstance(spec, dict) and set(spec) == {"choices"}:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or not all(map(fits(kind), choices)):
            raise UsageError(f"the space's {setting}: \"choices\" must be a non-empty list of "
                             f"{kind} values, got {json.dumps(choices)}")
        return CategoricalDistribution(choices)
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) <= {"low", "high", "log"} \
            or kind == "str":
        raise UsageError(f"the space's {setting}: give {{\"choices\": [...]}} or {{\"low\": ..., "
                         "\"high\": ...}} (and \"log\": true), ranges for numbers only")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not (fits(kind)(low) and fits(kind)(high) and isinstance(log, bool) and low < high) \
            or (log and low <= 0):
        raise UsageError(f"the space's {setting}: \"low\" < \"high\", {kind} values (> 0 with "
                         f"\"log\": true), got {json.dumps(spec)}")
    if kind == "int":
        return IntDistribution(low, high, log=log)
    return FloatDistribution(low, high, log=log)


def fits(kind: str):  # -> Callable[[object], bool]
    """Whether a JSON value can be a setting of this kind (bools are no numbers here)."""
    types = {"int": int, "float": int | float, "str": str}[kind]
    return lambda v: isinstance(v, types) and not isinstance(v, bool) \
        and (kind == "str" or math.isfinite(v))


def check_values(args: argparse.Namespace, space: dict) -> None:
    """Every choice and range end of the space is a value a run can use (``UsageError`` if not)."""
    for setting, spec in space["search"].items():
        for value in spec.get("choices", [spec.get("low"), spec.get("high")]):
            try:
                trial_settings(args, space, {setting: value}, args.seeds[0]).check()
            except (ValueError, TypeError) as exc:
                raise UsageError(f"the space's {setting}: {json.dumps(value)} is no value a run "
                                 f"can use ({exc})") from None


class Grid(optuna.samplers.GridSampler):
    """Optuna's grid, minus its ``Study.stop`` once the grid is used up: that works only inside
    ``Study.optimize``, and ``work`` checks ``is_exhausted`` before each trial instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def open_study(args: argparse.Namespace, space: dict) -> optuna.Study:
    """The study named --study in --storage (default: its journal beside its runs), made if new."""
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    sampler = samplers.get(args.sampler)
    if args.sampler == "grid":
        grid = {k: v.get("choices") for k, v in space["search"].items()}
        if not all(grid.values()):
            raise UsageError("--sampler grid needs a space of choices only (no low/high ranges)")
        sampler = lambda: Grid(grid)  # noqa: E731
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4)  # four finish before any is judged
    if not args.storage:
        path = journal_path(args.log_dir, args.study)
        try:
            return optuna.create_study(storage=journal(path, repair=True), study_name=args.study,
                                       direction="maximize", sampler=sampler(), pruner=pruner,
                                       load_if_exists=True)
        except OSError as exc:  # the journal cannot be written: a full disk, say
            raise UsageError(f"{path}: cannot write the study journal "
                             f"({exc.strerror or first_line(exc)})") from None
        except Exception as exc:  # a damaged journal: Optuna's replay fails in many ways
            raise UsageError(f"{path}: not a readable study journal ({first_line(exc)}); move it "
                             "aside or give another --study name") from None
    for attempt in range(4):
        try:
            return optuna.create_study(storage=args.storage, study_name=args.study,
                                       direction="maximize", sampler=sampler(), pruner=pruner,
                                       load_if_exists=True)
        except ImportError as exc:  # e.g. PostgreSQL without its driver
            raise UsageError(f"--storage {redact(args.storage)}: {exc}; pip install -r "
                             "requirements-tune.txt") from None
        except Exception as exc:  # SQLAlchemy's many connection errors: one line each
            if attempt == 3:
                raise UsageError(f"--storage {redact(args.storage)}: cannot open the study "
                                 f"({redact(first_line(exc))})") from None
            time.sleep(1 + attempt)  # workers started together race to create the tables
    raise AssertionError("unreachable")


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def journal_path(log_dir: str | Path, study: str) -> Path:
    """Where a study lives by default: <log-dir>/<study>.journal, beside its runs' folder."""
    return Path(log_dir) / f"{study}.journal"


def journal(path: Path, repair: bool = False) -> optuna.storages.JournalStorage:
    """The journal storage in ``path`` (made if new); ``repair``: first drop a cut-off last record,
    which Optuna skips on reading but would glue to the next record it writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    if repair and path.stat().st_size:
        lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))
        lock.acquire()  # the lock Optuna writes under: no worker is mid-record while we look
        try:
            with open(path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.seek(0)
                    keep = f.read().rfind(b"\n") + 1
                    f.truncate(keep)
                    print(f"WARNING: {path}: its last record was cut off (a worker killed while "
                          "writing?): dropped it", file=sys.stderr, flush=True)
        finally:
            lock.release()
    return optuna.storages.JournalStorage(backend)


def check_log_dir(args: argparse.Namespace) -> None:
    """The study's runs folder can be made and written (``UsageError`` before any work if not)."""
    where = Path(args.log_dir)
    if where.exists() and not where.is_dir():
        raise UsageError(f"--log-dir {where}: is a file, not a folder")
    try:
        (where / args.study).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=where / args.study).close()
    except OSError as exc:
        raise UsageError(f"--log-dir {where}: cannot write there ({exc.strerror or exc})") from None


def scored_with(args: argparse.Namespace, space: dict) -> dict:
    """What a study's values depend on, as its user attributes record it (JSON values)."""
    places = {k: v for k, v in args.train.places.items() if k not in OUTPUT_PLACES}
    return json.loads(json.dumps({"space": space, "seeds": args.seeds, "val": args.val,
                                  "train": {**args.train.asked, **places}}))


def check_record(study: optuna.Study, args: argparse.Namespace, space: dict) -> None:
    """Refuse a worker scoring trials otherwise than the study records; record what is missing
    (a new study, or one made before these records)."""
    mine = scored_with(args, space)
    flags = {"space": "--space", "seeds": "--seeds", "val": "--val", "train": "the flags after --"}
    for key, value in mine.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
        elif study.user_attrs[key] != value:
            theirs = study.user_attrs[key]
            if key == "train":  # name the flags that differ, not two whole dicts
                names = sorted(k for k in {*theirs, *value} if theirs.get(k) != value.get(k))
                theirs, value = ({k: d.get(k) for k in names} for d in (theirs, value))
            raise UsageError(f"study {args.study!r} is scored with {flags[key]} "
                             f"{json.dumps(theirs)}, this worker with {json.dumps(value)}: give "
                             "this one another --study name")


def fail_abandoned_trials(study: optuna.Study) -> list[int]:
    """Mark as failed the running trials whose worker on this machine is gone (killed mid-trial)."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and process_is_gone(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


def within(value: object, spec: dict) -> bool:
    """Whether a recipe's value lies in a searched setting's choices or range."""
    return value in spec["choices"] if "choices" in spec else spec["low"] <= value <= spec["high"]


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def trial_settings(args: argparse.Namespace, space: dict, params: dict,
                   seed: int) -> recipes.Settings:
    """What one run of a trial trains with: the recipe, the flags after --, the trial's values."""
    asked = {k: v for k, v in args.train.asked.items() if k != "recipe"}
    return recipes.RECIPES[space["recipe"]].replace(**asked, **params, val=args.val, seed=seed)


def run_trial(study: optuna.Study, trial: optuna.Trial, args: argparse.Namespace,
              space: dict) -> str:
    """Train the trial's runs, one per seed, and tell the study how it went (returned in words)."""
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    prunable = not trial.user_attrs.get("baseline")  # the recipe, the yardstick, runs every seed
    accuracies, run_ids, seconds = [], [], 0.0
    for index, seed in enumerate(args.seeds):
        def report(history: object, index: int = index) -> str | None:
            trial.report(history.eval_acc[-1], step=index * STEPS_PER_SEED + len(history.epoch) - 1)
            if prunable and trial.should_prune():
                return "pruned by the tuner: behind the median trial here"
            return None

        settings = trial_settings(args, space, trial.params, seed)
        places = {"save_model": False, **args.train.places,
                  "log_dir": Path(args.log_dir) / args.study}
        try:  # the run's own lines go to its log file; the console gets one line per trial
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                result = training.train(settings, **places, progress=False, kind="tuning",
                                        on_epoch=report,
                                        name=f"{args.study}-t{trial.number}-s{seed}",
                                        record={"study": args.study, "trial": trial.number})
        except BaseException:  # Ctrl-C before training, or unreadable data: no trial is lost
            study.tell(trial, state=TrialState.FAIL)
            raise
        run_ids.append(result.files.run_id)
        trial.set_user_attr("runs", run_ids)
        history = result.history
        if result.status == "interrupted":
            study.tell(trial, state=TrialState.FAIL)
            raise KeyboardInterrupt
        if result.status not in ("finished", "stopped") or not len(history):
            print(f"Trial {trial.number}: run {result.files.run_id} {result.status} (see its log); "
                  "the trial is marked failed", flush=True)
            study.tell(trial, state=TrialState.FAIL)
            return "failed"
        seconds += sum(history.seconds)
        trial.set_user_attr("seconds", round(seconds, 1))
        trial.set_user_attr("epochs", history.epoch[-1])  # a pruned run: where it stopped
        if prunable and trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return f"pruned after seed {seed} ({history.eval_acc[-1]:.2f}%)"
        accuracies.append(history.eval_acc[-1])
        trial.set_user_attr("val_acc", accuracies)
    study.tell(trial, sum(accuracies) / len(accuracies))
    mean = sum(accuracies) / len(accuracies)
    return f"complete: {mean:.2f}% mean validation accuracy ({accuracies})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="fast",
                   help=f"one of {', '.join(SPACES)}, or a JSON file of that shape")
    p.add_argument("--study", type=run_name, help="the study's name (default: the space's)")
    p.add_argument("--storage", help="a database URL Optuna accepts (postgresql://..., "
                                     "sqlite:///...); default: the journal file "
                                     "<log-dir>/<study>.journal")
    p.add_argument("--trials", type=bounded(int, 1, 10_000), default=16,
                   help="stop once the study holds this many finished (complete or pruned) "
                        "trials, all workers "
                        "together")
    p.add_argument("--timeout", type=bounded(float, 0, 10_000, low_open=True), metavar="MINUTES",
                   help="this worker starts no trial after this many minutes")
    p.add_argument("--seeds", type=bounded(int, 0, 2**63 - 1), nargs="+", default=[1],
                   help="seeds per trial: its value is the mean validation accuracy over them")
    p.add_argument("--val", type=bounded(int, 1, 59_999), default=10_000,
                   help="validation images held out of the training set (never the test set)")
    p.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe",
                   help="Optuna's TPE, random search, or every combination of a space of choices")
    p.add_argument("--log-dir", default=DEFAULT_DIR,
                   help="the study's runs go to <log-dir>/<study>/, its journal (without "
                        f"--storage) beside them [default: {DEFAULT_DIR}, git-ignored]")
    p.add_argument("train_args", nargs="*", metavar="-- TRAIN_FLAGS",
                   help="more train.py flags for every run, after --: -- --device cuda --amp off")
    return p


def checked_study(args: argparse.Namespace) -> tuple[dict, dict, optuna.Study]:
    """The space, its distributions and the study, every argument checked (``UsageError``)."""
    space = load_space(args.space)
    args.study = args.study or (args.space if args.space in SPACES else Path(args.space).stem)
    if len(args.study) > 40:
        raise UsageError(f"--study {args.study}: at most 40 characters (it names the runs)")
    args.train = train_cli.parse(args.train_args)  # bad train flags: exit 2 now
    if searched := set(space["search"]) & set(args.train.asked):
        raise UsageError(f"{', '.join(sorted(searched))}: searched by the space, so not a "
                         "train.py flag here")
    if args.train.resume or args.train.dry_run or {"seed", "val", "recipe"} & set(args.train.asked):
        raise UsageError("-- --resume, --dry-run, --recipe, --seed and --val are the tuner's to "
                         "set (--space, --seeds, --val)")
    try:
        trial_settings(args, space, {}, args.seeds[0]).check()
    except ValueError as exc:
        raise UsageError(exc) from None
    check_values(args, space)
    distributions = {k: distribution(k, v) for k, v in space["search"].items()}
    check_log_dir(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial, ours
    study = open_study(args, space)
    check_record(study, args, space)
    return space, distributions, study


def recipe_point(space: dict) -> dict:
    """The recipe's own values of the searched settings."""
    return {k: getattr(recipes.RECIPES[space["recipe"]], k) for k in space["search"]}


def enqueue_recipe(study: optuna.Study, space: dict) -> None:
    """Make the recipe as it stands the next trial, unless the study has it or it lies outside (or
    a grid holds it: the grid would not count an enqueued trial and run it twice)."""
    baseline = recipe_point(space)
    if isinstance(study.sampler, Grid):
        return
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    tried = study.get_trials(deepcopy=False, states=states)
    if all(within(baseline[k], spec) for k, spec in space["search"].items()) and \
            not any(t.params == baseline for t in tried):  # new, changed, or last time interrupted
        study.enqueue_trial(baseline, user_attrs={"baseline": True})


def work(study: optuna.Study, args: argparse.Namespace, space: dict, distributions: dict) -> int:
    """Run trials until the study holds --trials, the time is up or the grid is done."""
    deadline = time.monotonic() + 60 * args.timeout if args.timeout else float("inf")
    failed_in_a_row = 0
    while finished(study) < args.trials and time.monotonic() < deadline:
        if isinstance(study.sampler, Grid) and study.sampler.is_exhausted(study):
            size = math.prod(len(spec["choices"]) for spec in space["search"].values())
            print(f"The grid is done: each of its {size} combinations has been tried",
                  flush=True)
            break
        trial = study.ask(distributions)
        if trial.params == recipe_point(space):  # the recipe itself, e.g. a grid's point
            trial.set_user_attr("baseline", True)
        print(f"Trial {trial.number}: {trial.params}", flush=True)
        outcome = run_trial(study, trial, args, space)
        print(f"Trial {trial.number} {outcome}", flush=True)
        failed_in_a_row = failed_in_a_row + 1 if outcome == "failed" else 0
        if failed_in_a_row == MAX_FAILED_IN_A_ROW:  # e.g. settings that always diverge
            return fail(PROG, f"{failed_in_a_row} trials in a row failed; their run logs in "
                              f"{Path(args.log_dir) / args.study}/ say why")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 done, 1 a run failed to start (its error is printed), 2 usage, 130
    interrupted."""
    args = build_parser().parse_args(argv)
    try:
        space, distributions, study = checked_study(args)
    except (UsageError, argparse.ArgumentTypeError) as exc:
        return fail(PROG, exc, 2)
    command = redact(shlex.join(["python", "-m", "tools.tune",
                                 *(sys.argv[1:] if argv is None else argv)]))
    if "command" not in study.user_attrs:
        study.set_user_attr("command", command)
    for number in fail_abandoned_trials(study):
        print(f"Trial {number} was left running by a worker that is gone: marked failed")
    enqueue_recipe(study, space)
    print(f"Study {args.study!r}: {finished(study)} of {args.trials} trials done; this worker: "
          f"{command}", flush=True)
    try:
        if status := work(study, args, space, distributions):
            return status
    except KeyboardInterrupt:
        print("Interrupted: the running trial is recorded as failed. Continue the study with: "
              f"{command}", file=sys.stderr)
        return 130
    except (MnistError, CheckpointError, ValueError, OSError) as exc:
        return fail(PROG, f"{exc} (the trial is recorded as failed)")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if done:
        best = max(done, key=lambda t: t.value)
        print(f"Best of {len(done)} complete trials: trial {best.number}, {best.value:.2f}% on "
              f"validation, {best.params}. Render it: python -m tools.study {args.study}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
