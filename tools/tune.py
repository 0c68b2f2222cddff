"""Optuna searches of a recipe's settings on the validation split: `python -m tools.tune`.

Each trial trains one logged run per seed (logs/studies/<study>/); its value is their mean
validation accuracy. The recipe as it stands is trial 0, so a study says whether the search beat it.
`python -m tools.study <study>` renders a study into docs/studies/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import sys
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
MAX_FAILED_IN_A_ROW = 3  # a worker stops after this many failed trials in a row
PROG = program("tools.tune")
STEPS_PER_SEED = 1000  # a trial's step for the pruner: seed's index * this + epoch's index


def load_space(name: str) -> dict:
    """A space from SPACES by name or from a JSON file of that shape, checked."""
    if name in SPACES:
        space = SPACES[name]
    else:
        try:
            space = json.loads(Path(name).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--space {name}: not one of {', '.join(SPACES)} nor a readable JSON "
                             f"file ({exc})") \
                from None
    recipe, search = space.get("recipe"), space.get("search")
    if recipe not in recipes.RECIPES or not isinstance(search, dict) or not search:
        raise UsageError(f"--space {name}: needs a \"recipe\" (one of "
                         f"{', '.join(recipes.RECIPES)}) and a "
                         "non-empty \"search\" object")
    for setting, spec in search.items():
        distribution(setting, spec)
    return space


def distribution(setting: str, spec: dict) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one searched setting (``UsageError`` if it is wrong)."""
    if setting not in recipes.RECIPE_KEYS:
        raise UsageError(f"the space searches {setting!r}, not a recipe setting "
                         f"({', '.join(recipes.RECIPE_KEYS)})")
    if isinstance(spec, dict) and isinstance(spec.get("choices"), list) and spec["choices"]:
        return CategoricalDistribution(spec["choices"])
    low, high, log = (spec.get(k) for k in ("low", "high", "log")) if isinstance(spec, dict) \
        else (None, None, None)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high \
            or (log and low <= 0):
        raise UsageError(f"the space's {setting}: give \"choices\": [...] or \"low\" < \"high\" "
                         "(> 0 with \"log\")")
    if all(isinstance(v, int) for v in (getattr(recipes.DEFAULT, setting), low, high)):
        return IntDistribution(low, high, log=bool(log))
    return FloatDistribution(low, high, log=bool(log))


def open_study(args: argparse.Namespace, space: dict) -> optuna.Study:
    """The study named --study in --storage (default: the journal beside its runs), made if new."""
    storage = args.storage or journal(journal_path(args.log_dir, args.study))
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    sampler = samplers.get(args.sampler)
    if args.sampler == "grid":
        grid = {k: v.get("choices") for k, v in space["search"].items()}
        if not all(grid.values()):
            raise UsageError("--sampler grid needs a space of choices only (no low/high ranges)")
        sampler = lambda: optuna.samplers.GridSampler(grid)  # noqa: E731
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4)  # four finish before any is judged
    for attempt in range(4):
        try:
            return optuna.create_study(storage=storage, study_name=args.study, direction="maximize",
                                       sampler=sampler(), pruner=pruner, load_if_exists=True)
        except ImportError as exc:  # e.g. PostgreSQL without its driver
            raise UsageError(f"--storage {args.storage}: {exc}; pip install -r "
                             "requirements-tune.txt") from None
        except Exception as exc:  # SQLAlchemy's many connection errors: one line each
            if attempt == 3:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UsageError(f"--storage {args.storage or storage}: cannot open the study "
                                 f"({first})") from None
            time.sleep(1 + attempt)  # workers started together race to create the tables


def journal_path(log_dir: str | Path, study: str) -> Path:
    """Where a study lives by default: <log-dir>/studies/<study>.journal, beside its runs."""
    return Path(log_dir) / "studies" / f"{study}.journal"


def journal(path: Path) -> optuna.storages.JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


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
                  "log_dir": Path(args.log_dir) / "studies" / args.study}
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
                                     "sqlite:///...); default: "
                                     "the journal file logs/studies/<study>.journal")
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
    p.add_argument("--log-dir", default="logs",
                   help="the study's runs go to <log-dir>/studies/<study>/")
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
    trial_settings(args, space, {}, args.seeds[0]).check()
    distributions = {k: distribution(k, v) for k, v in space["search"].items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial, ours
    study = open_study(args, space)
    if study.user_attrs.get("space", space) != space:
        raise UsageError(f"study {args.study!r} searches another space "
                         f"({study.user_attrs['space']}): give this one another --study name")
    return space, distributions, study


def enqueue_recipe(study: optuna.Study, space: dict) -> None:
    """Make the recipe as it stands the next trial, unless the study has it or it lies outside."""
    baseline = {k: getattr(recipes.RECIPES[space["recipe"]], k) for k in space["search"]}
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
        grid = isinstance(study.sampler, optuna.samplers.GridSampler)
        if grid and study.sampler.is_exhausted(study):
            break
        trial = study.ask(distributions)
        print(f"Trial {trial.number}: {trial.params}", flush=True)
        outcome = run_trial(study, trial, args, space)
        print(f"Trial {trial.number} {outcome}", flush=True)
        failed_in_a_row = failed_in_a_row + 1 if outcome == "failed" else 0
        if failed_in_a_row == MAX_FAILED_IN_A_ROW:  # e.g. settings that always diverge
            return fail(PROG, f"{failed_in_a_row} trials in a row failed; their run logs in "
                              f"{Path(args.log_dir) / 'studies' / args.study}/ say why")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 done, 1 a run failed to start (its error is printed), 2 usage, 130
    interrupted."""
    args = build_parser().parse_args(argv)
    try:
        space, distributions, study = checked_study(args)
    except (UsageError, argparse.ArgumentTypeError) as exc:
        return fail(PROG, exc, 2)
    study.set_user_attr("space", space)
    study.set_user_attr("seeds", args.seeds)
    command = shlex.join(["python", "-m", "tools.tune", *(sys.argv[1:] if argv is None else argv)])
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
