"""Render Optuna studies made by `python -m tools.tune` into a JSON record, a markdown page and a
plot.

    python -m tools.study fast               # <out>/fast.json, .md, .png from its journal
    python -m tools.study fast --storage URL # a study in a database

A journal is looked for in studies/ (where `tune` keeps yours, git-ignored), then in logs/studies/
(the studies committed with the project); it is only read. The record holds every trial: its
settings, validation accuracy per seed, training seconds and runs (their logs beside the journal,
in <folder>/<study>/); the markdown and the plot are drawn from it alone. Optuna is needed only to
read a study, not to render a record.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from s5.cli import UsageError, fail, program, run_name
from s5.files import json_text, write_together

COMMITTED = "logs/studies"  # the studies the docs cite, kept with the project
PROG = program("tools.study")


def load(name: str, storage: str | None, log_dir: str | None):  # -> optuna.Study
    """A study from --storage, or from the journal file `tune` writes (never created or changed
    here)."""
    import optuna

    from tools.tune import first_line, journal, redact

    if storage is not None:
        check_database(storage)
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise UsageError(f"no study named {name!r} in {redact(storage)}") from None
        except Exception as exc:  # a missing driver, SQLAlchemy's connection errors
            raise UsageError(f"--storage {redact(storage)}: cannot read the study "
                             f"({redact(first_line(exc))})") from None
    path = find_journal(name, log_dir)
    with open(path, "rb") as f:
        cut = f.seek(0, os.SEEK_END) > 0 and f.seek(-1, os.SEEK_END) >= 0 and f.read(1) != b"\n"
    if cut:  # Optuna skips it on reading
        print(f"WARNING: {path}: its last record was cut off: not read (python -m tools.tune "
              "drops it when it next runs)", file=sys.stderr)
    try:
        return optuna.load_study(study_name=name, storage=journal(path))
    except KeyError:
        raise UsageError(f"no study named {name!r} in {path}") from None
    except Exception as exc:  # a damaged journal: Optuna's replay fails in many ways
        raise UsageError(f"{path}: not a readable study journal ({first_line(exc)})") from None


def find_journal(name: str, log_dir: str | None) -> Path:
    """<log-dir>/<study>.journal; without --log-dir, yours (studies/) before the committed ones."""
    from tools.tune import DEFAULT_DIR, journal_path

    paths = [journal_path(folder, name) for folder in ([log_dir] if log_dir else
                                                       [DEFAULT_DIR, COMMITTED])]
    for path in paths:
        if path.is_file():
            return path
    raise UsageError(f"no study file {' nor '.join(map(str, paths))}: run python -m tools.tune "
                     f"--study {name} first, or give --storage")


def check_database(storage: str) -> None:
    """Refuse a database without Optuna's tables before Optuna opens it: it would make them (and
    an empty SQLite file)."""
    import sqlalchemy

    from tools.tune import first_line, redact

    try:
        url = sqlalchemy.engine.make_url(storage)
    except Exception as exc:
        raise UsageError(f"--storage {redact(storage)}: not a database URL ({first_line(exc)})") \
            from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).is_file():
        raise UsageError(f"--storage {redact(storage)}: no database file {url.database}")
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            made = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception as exc:  # a missing driver, SQLAlchemy's connection errors
        raise UsageError(f"--storage {redact(storage)}: cannot read the study "
                         f"({redact(first_line(exc))})") from None
    if not made:
        raise UsageError(f"--storage {redact(storage)}: holds no Optuna study")


def record(study) -> dict:  # study: optuna.Study
    """The study as data: how it was made and one entry per trial (waiting ones left out)."""
    from optuna.trial import TrialState

    from tools.tune import redact

    trials = []
    for t in study.trials:
        if t.state == TrialState.WAITING:
            continue
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        trials.append({
            "number": t.number, "state": t.state.name.lower(), "params": t.params,
            "epochs": float(t.user_attrs.get("epochs", t.params.get("epochs", 0))),
            "val_acc": t.user_attrs.get("val_acc", []), "value": t.value,
            "stopped_at": last if t.state == TrialState.PRUNED else None,
            "seconds": t.user_attrs.get("seconds"), "runs": t.user_attrs.get("runs", []),
            "baseline": bool(t.user_attrs.get("baseline"))})
    attrs = study.user_attrs
    command = redact(attrs.get("command", "python -m tools.tune"))  # made before tune redacted
    return {"study": study.study_name, "command": command,
            "seeds": attrs.get("seeds", "?"), "space": attrs.get("space", {}), "trials": trials}


def cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def settings(trial: dict) -> str:
    return ", ".join(f"{k}={cell(v)}" for k, v in trial["params"].items())


def searched(rec: dict) -> list[str]:
    """The settings the study searched, in the space's order."""
    in_space = list(rec["space"].get("search", {}))
    return in_space or sorted({k for t in rec["trials"] for k in t["params"]})


def counts_line(rec: dict) -> str:
    """How many trials in each state, runs and minutes of training."""
    trials = rec["trials"]
    states = {}
    for t in trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    order = ("running", "complete", "pruned", "fail")  # Optuna's TrialState order
    counts = ", ".join(f"{states[s]} {s}" for s in order if s in states)
    runs = sum(len(t["runs"]) for t in trials)
    minutes = sum(t["seconds"] or 0 for t in trials) / 60
    return f"{len(trials)} trials ({counts}), {runs} runs, {minutes:.1f} minutes of training."


def summary_lines(rec: dict) -> list[str]:
    """The recipe as it stood each time tune ran it, and the best trial per training budget."""
    lines = []
    for t in (t for t in rec["trials"] if t["baseline"]):
        shown = f"{t['value']:.2f}%" if t["state"] == "complete" else t["state"]
        lines.append(f"The recipe as it stood (trial {t['number']}): {shown} ({settings(t)})")
    complete = [t for t in rec["trials"] if t["state"] == "complete"]
    for epochs in sorted({t["epochs"] for t in complete}):
        best = max((t for t in complete if t["epochs"] == epochs), key=lambda t: t["value"])
        lines.append(f"Best at {epochs:g} epochs: trial {best['number']}, {best['value']:.2f}% "
                     f"({settings(best)})")
    return lines


def markdown(rec: dict) -> str:
    """The study's page: how it was made, the best trials, one row per trial."""
    name, params = rec["study"], searched(rec)
    lines = [f"# Study `{name}`", "",
             f"Started with `{rec['command']}` (seeds {rec['seeds']}), rendered with "
             f"`python -m tools.study {name}`. Space: recipe `{rec['space'].get('recipe', '?')}`, "
             f"searching {', '.join(params)}. Scored on the validation split (the last 10,000 "
             "training images by default), never the test set.", "",
             counts_line(rec), "",
             f"![validation accuracy per trial and per setting]({name}.png)", "",
             *(f"- {line}" for line in summary_lines(rec)),
             "", "| trial | state | " + " | ".join(params) + " | validation % per seed | mean % | "
             "train s | runs |", "|---:|---|" + "---:|" * len(params) + "---|---:|---:|---|"]
    for t in rec["trials"]:
        values = " | ".join(cell(t["params"].get(k, "")) for k in params)
        per_seed = " ".join(f"{a:.2f}" for a in t["val_acc"])
        if t["state"] == "pruned" and t["stopped_at"] is not None:  # where the pruner stopped it
            per_seed += f" (stopped at {t['stopped_at']:.2f})"
        mean = f"{t['value']:.2f}" if t["state"] == "complete" else ""
        runs = " ".join(f"`{r}`" for r in t["runs"])
        seconds = "" if t["seconds"] is None else t["seconds"]
        lines.append(f"| {t['number']} | {t['state']} | {values} | {per_seed} | {mean} | "
                     f"{seconds} | {runs} |")
    return "\n".join(lines) + "\n"


def plot(rec: dict, path: Path | io.BytesIO) -> None:
    """Validation accuracy per trial with the best so far, and against each searched setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    trials = [t for t in rec["trials"] if t["state"] in ("complete", "pruned")]
    params = list(rec["space"].get("search", {}))
    fig, axes = plt.subplots(1, 1 + len(params), figsize=(4 * (1 + len(params)), 3.4),
                             squeeze=False)
    score = {t["number"]: t["value"] if t["value"] is not None else t["stopped_at"] for t in trials
             if t["value"] is not None or t["stopped_at"] is not None}
    best, shown = [], -float("inf")
    for t in trials:
        if t["state"] == "complete":
            shown = max(shown, t["value"])
        best.append(shown)
    for ax, key in zip(axes[0], [None, *params], strict=True):
        for state, marker in (("complete", "o"), ("pruned", "x")):
            chosen = [t for t in trials if t["state"] == state and t["number"] in score]
            xs = [t["number"] if key is None else t["params"].get(key) for t in chosen]
            ax.scatter([str(x) if isinstance(x, str) else x for x in xs],
                       [score[t["number"]] for t in chosen], marker=marker, label=state)
        if key is None:
            ax.step([t["number"] for t in trials], best, where="post", color="k", lw=1,
                    label="best so far")
            ax.set_xlabel("trial")
            ax.legend(fontsize=7)
            if not score:  # say so on the plot rather than leave it blank
                ax.text(0.5, 0.5, "no trial has a score yet", ha="center", transform=ax.transAxes)
        else:
            ax.set_xlabel(key)
            xs = [t["params"].get(key) for t in trials if t["number"] in score]
            positive = bool(xs) and all(isinstance(x, int | float) and x > 0 for x in xs)
            # only a log axis is set: a linear reset would drop categorical labels; matplotlib
            # refuses a log axis without positive data (e.g. every trial failed)
            if rec["space"]["search"][key].get("log") and positive:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels overlap
        ax.set_ylabel("validation accuracy %")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Study {rec['study']}: validation accuracy (pruned: where it stopped)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write(rec: dict, out: Path) -> Path:
    """<study>.json and the .md and .png drawn from it, in ``out``, all three or none; returns the
    JSON's path."""
    png = io.BytesIO()
    plot(rec, png)
    path = out / f"{rec['study']}.json"
    write_together({path: json_text(rec).encode(),
                    out / f"{rec['study']}.md": markdown(rec).encode(),
                    out / f"{rec['study']}.png": png.getvalue()})
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("studies", nargs="+", type=run_name, metavar="STUDY")
    p.add_argument("--storage",
                   help="the database URL the study was made in (default: its journal file)")
    p.add_argument("--log-dir", help="where `tune` kept <log-dir>/<study>.journal [default: "
                                     f"studies, then {COMMITTED}]")
    p.add_argument("--out", help="folder for <study>.json, .md and .png [default: docs/studies "
                                 "for a committed study, beside the journal for yours]")
    args = p.parse_args(argv)
    from tools.tune import DEFAULT_DIR, redact

    try:
        studies = [load(name, args.storage, args.log_dir) for name in args.studies]
        # which journal: yours in studies/ comes before the committed one
        sources = [redact(args.storage) if args.storage else find_journal(s.study_name,
                                                                          args.log_dir)
                   for s in studies]
        # a user's study renders beside its journal: it never rewrites the committed docs
        outs = [Path(args.out) if args.out else Path(DEFAULT_DIR) if args.storage else
                Path("docs/studies") if source.parent == Path(COMMITTED) else source.parent
                for source in sources]
        for out in outs:
            if out.exists() and not out.is_dir():
                raise UsageError(f"--out {out}: is a file, not a folder")
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--out {out}: cannot write there "
                                 f"({exc.strerror or exc})") from None
    except UsageError as exc:
        return fail(PROG, exc, exc.exit_status)

    for study, source, out in zip(studies, sources, outs, strict=True):
        rec = record(study)
        try:
            path = write(rec, out)
        except OSError as exc:  # a full disk: none of the three files was written
            return fail(PROG, exc, 1)
        scored = sum(t["state"] in ("complete", "pruned") for t in rec["trials"])
        why = "" if scored else "; no trial completed or was pruned, so the plot is empty"
        print(f"Wrote {path} and its .md and .png from {source} ({len(study.trials)} "
              f"trials{why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
