"""Render Optuna studies made by `python -m tools.tune` into a markdown table and a plot.

    python -m tools.study fast                    # docs/studies/fast.md and fast.png from logs/studies/fast.journal
    python -m tools.study fast --storage URL      # a study in a database

The table lists every trial: its settings, validation accuracy per seed, training seconds and runs (their logs are
under logs/studies/<study>/), with the best trial per training budget (epochs) and the recipe as it stood.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
from optuna.trial import FrozenTrial, TrialState

from s5 import training
from s5.files import atomic_write_bytes
from tools.tune import UsageError, journal, journal_path


def load(name: str, storage: str | None, log_dir: str) -> optuna.Study:
    """A study from --storage, or from the journal file `tune` writes by default (never created here)."""
    if storage is None:
        path = journal_path(log_dir, name)
        if not path.is_file():
            raise UsageError(f"no study file {path}: run python -m tools.tune --study {name} first, or give --storage")
    try:
        return optuna.load_study(study_name=name, storage=storage or journal(path))
    except KeyError:
        raise UsageError(f"no study named {name!r} in {storage or path}") from None


def budget(trial: FrozenTrial) -> float:
    """The epochs a complete trial's runs trained: its training budget."""
    return float(trial.user_attrs.get("epochs", trial.params.get("epochs", 0)))


def cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(study: optuna.Study) -> str:
    """The study as markdown: how it was made, the best trials, one row per trial."""
    trials = [t for t in study.trials if t.state != TrialState.WAITING]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    params = list(study.user_attrs.get("space", {}).get("search", {})) or sorted({k for t in trials for k in t.params})
    counts = ", ".join(f"{sum(t.state == s for t in trials)} {s.name.lower()}" for s in TrialState
                       if any(t.state == s for t in trials))
    runs = sum(len(t.user_attrs.get("runs", [])) for t in trials)
    minutes = sum(t.user_attrs.get("seconds", 0) for t in trials) / 60
    lines = [f"# Study `{study.study_name}`", "",
             f"Started with `{study.user_attrs.get('command', 'python -m tools.tune')}` (seeds "
             f"{study.user_attrs.get('seeds', '?')}), rendered with `python -m tools.study {study.study_name}`. "
             f"Space: recipe `{study.user_attrs.get('space', {}).get('recipe', '?')}`, searching "
             f"{', '.join(params)}. Scored on the validation split (the last 10,000 training images by default), "
             "never the test set.", "",
             f"{len(trials)} trials ({counts}), {runs} runs, {minutes:.1f} minutes of training.", "",
             f"![validation accuracy per trial and per setting]({study.study_name}.png)", ""]
    for baseline in (t for t in trials if t.user_attrs.get("baseline")):  # each time tune ran on a changed recipe
        shown = f"{baseline.value:.2f}%" if baseline.state == TrialState.COMPLETE else baseline.state.name.lower()
        settings = ", ".join(f"{k}={cell(v)}" for k, v in baseline.params.items())
        lines.append(f"- The recipe as it stood (trial {baseline.number}): {shown} ({settings})")
    for epochs in sorted({budget(t) for t in complete}):
        best = max((t for t in complete if budget(t) == epochs), key=lambda t: t.value)
        settings = ", ".join(f"{k}={cell(v)}" for k, v in best.params.items())
        lines.append(f"- Best at {epochs:g} epochs: trial {best.number}, {best.value:.2f}% ({settings})")
    lines += ["", "| trial | state | " + " | ".join(params) + " | validation % per seed | mean % | train s | runs |",
              "|---:|---|" + "---:|" * len(params) + "---|---:|---:|---|"]
    for t in trials:
        values = " | ".join(cell(t.params.get(k, "")) for k in params)
        per_seed = " ".join(f"{a:.2f}" for a in t.user_attrs.get("val_acc", []))
        if t.state == TrialState.PRUNED and t.intermediate_values:  # where the pruner stopped it
            per_seed += f" (stopped at {t.intermediate_values[max(t.intermediate_values)]:.2f})"
        mean = f"{t.value:.2f}" if t.state == TrialState.COMPLETE else ""
        runs = " ".join(f"`{r}`" for r in t.user_attrs.get("runs", []))
        lines.append(f"| {t.number} | {t.state.name.lower()} | {values} | {per_seed} | {mean} | "
                     f"{t.user_attrs.get('seconds', '')} | {runs} |")
    return "\n".join(lines) + "\n"


def plot(study: optuna.Study, path: Path) -> None:
    """Validation accuracy per trial with the best so far, and against each searched setting."""
    trials = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    params = list(study.user_attrs.get("space", {}).get("search", {}))
    fig, axes = plt.subplots(1, 1 + len(params), figsize=(4 * (1 + len(params)), 3.4), squeeze=False)
    score = {t.number: t.value if t.value is not None else t.intermediate_values[max(t.intermediate_values)]
             for t in trials if t.value is not None or t.intermediate_values}
    best, shown = [], -float("inf")
    for t in trials:
        if t.state == TrialState.COMPLETE:
            shown = max(shown, t.value)
        best.append(shown)
    for ax, key in zip(axes[0], [None, *params], strict=True):
        for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
            chosen = [t for t in trials if t.state == state and t.number in score]
            xs = [t.number if key is None else t.params.get(key) for t in chosen]
            ax.scatter([str(x) if isinstance(x, str) else x for x in xs], [score[t.number] for t in chosen],
                       marker=marker, label=state.name.lower())
        if key is None:
            ax.step([t.number for t in trials], best, where="post", color="k", lw=1, label="best so far")
            ax.set_xlabel("trial")
            ax.legend(fontsize=7)
        else:
            ax.set_xlabel(key)
            if study.user_attrs["space"]["search"][key].get("log"):  # (a linear reset would drop categorical labels)
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # 2x10^-3 ... labels overlap
        ax.set_ylabel("validation accuracy %")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Study {study.study_name}: validation accuracy (pruned: where it stopped)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("studies", nargs="+", type=training.run_name, metavar="STUDY")
    p.add_argument("--storage", help="the database URL the study was made in (default: its journal file)")
    p.add_argument("--log-dir", default="logs", help="where `tune` keeps <log-dir>/studies/<study>.journal")
    p.add_argument("--out", default="docs/studies", help="folder for <study>.md and <study>.png")
    args = p.parse_args(argv)
    try:
        studies = [load(name, args.storage, args.log_dir) for name in args.studies]
    except UsageError as exc:
        print(f"python -m tools.study: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for study in studies:
        atomic_write_bytes(out / f"{study.study_name}.md", markdown(study).encode())
        plot(study, out / f"{study.study_name}.png")
        print(f"Wrote {out / study.study_name}.md and .png ({len(study.trials)} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
