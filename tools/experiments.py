"""docs/experiments.md from the logged runs' own files: what was tried, what it scored, and what
was concluded.

    python -m tools.experiments    # reads logs/ and logs/archive.tar.xz, writes docs/experiments.md
    python -m tools.experiments --logs my/logs --archive my/archive.tar.xz --out out/experiments.md

Each question names its candidates by glob patterns over run ids or run names (the id without its
date-time prefix). Only data files are read: a run's ``<run-id>.json`` and ``.csv``,
``run-facts.json`` (what older runs' text logs said and their run files do not), each real-world
evaluation's ``realworld-<date>.json`` and each rendered study's ``docs/studies/<study>.json``. The
conclusions are the only hand-written text and carry no digits outside `code` (settings, not
results).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import tarfile
from fnmatch import fnmatch
from pathlib import Path

from s5.files import atomic_write_text
from tools import study

GONE = "3e0d3af"  # the last commit with the experiment flags that the restructuring removed
# Baselines several questions compare against: the AdamW default recipe of the time, as logged.
BF16 = ("AdamW default then, bf16", "lowres3-s?")
FP32 = ("AdamW default then, fp32", "ema999-s?-trained", "default-fp32-s3")
NO_LOWRES = ("AdamW default before the low-res scans", "default-b64-lr0.002-s?", "base-s1")
FONTS = ("handwriting recipe, 18 faces", "fonts25-s1")
FACTS = "run-facts.json"  # in the logs folder or the archive


def Q(question: str, runs: list[tuple], conclusion: str,
      code: tuple[str, str | None] | None = None) -> dict:
    """A question; ``runs``: (candidate label, or None for the run name less its seed, *patterns);
    ``code``: (commit where removed code last existed, its flag or None)."""
    return dict(q=question, runs=runs, conclusion=conclusion, code=code)


QUESTIONS = [
    Q("SGD with Nesterov momentum or AdamW, and which settings, for the first default recipe?",
      [(None, "f[1-6]", "[ABCGH]")],
      "AdamW with label smoothing, shift and zoom at the smaller batch (run `G`) scored highest "
      "of the five-epoch screens and became the default recipe, and SGD now always uses Nesterov "
      "momentum.", (GONE, "--nesterov")),
    Q("Peak learning rate and batch size of the default recipe",
      [NO_LOWRES[:2], (None, "default-b32-lr0.0015-s?"), BF16, (None, "lr3-s1", "b128-lr3-s1"),
       FP32, (None, "lr15-s1")],
      "Neither more steps at a smaller batch, nor a higher peak learning rate with or without a "
      "larger batch, nor a lower one beat the default on validation, so it keeps its batch and "
      "learning rate."),
    Q("Weight decay: much larger than the default's `1e-4`?",
      [(NO_LOWRES[0], "base-s1"), (None, "wd05-s1"), ("Muon, bf16", "muon-s?"),
       (None, "muon-wd05-s1")],
      "On one seed the larger decay barely moved AdamW's validation accuracy and lowered Muon's, "
      "so the recipes keep the small one."),
    Q("Label smoothing: less or more than the default's `0.1`?",
      [BF16, (None, "ls05-s1"), FP32, (None, "ls20-s?")],
      "Neither less nor more smoothing beat the default on validation, so it stays."),
    Q("Augmentation strength: rotation, CenterCrop, zoom and shift",
      [BF16, (None, "deg10-s1"), FP32, (None, "crop0-s1", "scale15-s1", "translate10-s1")],
      "None of the weaker or stronger settings beat the default's validation accuracy on the same"
      " seed, so the default keeps its augmentation."),
    Q("Low-resolution scans (`--lowres P`): what share of training images should be seen as an "
      "enlarged scan?",
      [NO_LOWRES, ("--lowres 0.3", "lowres3-s?"), ("--lowres 0.5", "lowres5-s?")],
      "A share of `0.3` raised both the validation median and the real-world accuracy over no "
      "scans while `0.5` did worse, so the default recipe uses `--lowres 0.3`."),
    Q("Low-resolution scans down to 7 px (`--lowres-min 7`) with the font digits",
      [FONTS, (None, "fonts25-lrmin7-s?")],
      "Smaller scans left validation accuracy about where it was and lowered real-world accuracy "
      "on the seed that can be compared, so the flag was removed.", (GONE, "--lowres-min")),
    Q("Elastic distortion (`--elastic`)",
      [BF16, (None, "elastic?-s1"), ("Muon, bf16", "muon-s?"), (None, "muon-elastic2-s1")],
      "Elastic distortion lowered validation accuracy at every strength tried, with AdamW and "
      "with Muon, and real-world accuracy with AdamW, so the flag was removed.",
      (GONE, "--elastic")),
    Q("Pen-width augmentation (`--stroke`), trained on the full training set",
      [("default recipe then (reference run)", "20261124-152301"), (None, "styles-stroke0.6-s1")],
      "The stroke augmentation read the real-world set worse than the default's checkpoint did "
      "with the same predict.py (the earlier of its two reports), so the flag was removed.",
      (GONE, "--stroke")),
    Q("Slanting the training images (`--shear`)",
      [FONTS, (None, "fonts25-shear3-s1")],
      "Slanting the training images lowered validation accuracy against the same recipe and seed "
      "(their real-world reports straddle predict.py's slant step, so they do not compare), so "
      "the flag was removed.", (GONE, "--shear")),
    Q("Flagged ones (`--flag-ones`): training 1s drawn with the short down-left stroke",
      [FP32, (None, "flag5-s1")],
      "Drawing flags on training ones lowered both validation and real-world accuracy against the"
      " same recipe and seed, so the flag was removed.", (GONE, "--flag-ones")),
    Q("A last epoch on unaugmented images (`--plain-epochs 1`)",
      [BF16, (None, "plain1-s?")],
      "The plain last epoch lowered validation and real-world accuracy on both seeds, so the flag"
      " was removed.", (GONE, "--plain-epochs")),
    Q("A moving average of the weights (`--ema 0.999`), evaluated instead of the trained weights",
      [("trained weights of the same runs", "ema999-s?-trained"),
       ("averaged weights", "ema999-s?")],
      "The averaged weights scored lower on validation than the same runs' trained weights and no"
      " better on the real-world set, since OneCycle already ends at a tiny learning rate, so the"
      " flag was removed.", (GONE, "--ema")),
    Q("OneCycle warm-up: a shorter rise to the peak than a quarter of the steps?",
      [BF16, (None, "warmup15-s?", "warmup05-s1"), FP32, (None, "warmup15-fp32-s2")],
      "A shorter warm-up matched the default's validation median within noise and did no better "
      "in `fp32`, so the warm-up is fixed at the default's and the flag was removed.",
      (GONE, "--warmup")),
    Q("Ten epochs instead of five",
      [BF16, (None, "ep10-s1", "ep10lr5-s1")],
      "Ten epochs, with or without more low-res scans, read the real-world set no better than "
      "five and hardly moved validation accuracy, so the recipes keep five."),
    Q("Muon or AdamW for the default recipe?",
      [BF16, ("Muon, bf16", "muon-s?"), FP32, ("Muon, fp32", "muon-fp32-s?")],
      "Muon's validation median beat AdamW's in both precisions, so the default recipe trains "
      "with Muon, while the recipes tuned with AdamW keep it."),
    Q("The fast recipe: which peak learning rate, and how much augmentation, for half an epoch?",
      [(None, "fast-half-*")],
      "The `--lr 0.005` candidate with the seed's augmentation had the best validation median and"
      " became the `fast` recipe, until the Optuna study `fast` (below) moved it to Muon."),
    Q("The GPU recipes: batch, peak learning rate and epochs on an H100",
      [(None, "gpu-e5-*", "gpufast-*")],
      "Each GPU recipe is the candidate with the best validation median for its budget, "
      "`gpu-fast` the one-epoch one because the two-epoch one missed the one-second goal in the "
      "first CUDA benchmark (`logs/bench-20261124-195004-cuda.md`)."),
    Q("Font digits (`--font-digits P`): what share of training images should be handwriting "
      "fonts?",
      [FP32[:2],
       (None, "fonts10-s1", "fonts25-s1", "fonts40-s?", "fonts40-ep6-s1", "fonts25-lowres5-s1")],
      "Every share read the real-world set better than none at some cost in validation accuracy, "
      "larger shares costing more, which neither a longer run nor more low-res scans recovered, "
      "so the `handwriting` recipe takes `--font-digits 0.25` and the default takes none."),
    Q("Font digits also stretched to narrower and wider widths",
      [(None, "fonts25-s1", "fontsw25-s1", "fontsw35-s1", "fonts40-s1")],
      "The width-stretched digits lowered validation accuracy at both shares and read the "
      "real-world set no better than the same or a larger share of plain font digits, so the "
      "change was reverted.", ("14d5c3f", None)),
    Q("Six more font faces (24 instead of 18)",
      [("18 faces, validation", "fonts25-s1"), ("24 faces, validation", "fonts24-25-s?"),
       ("24 faces, ten epochs", "fonts24-25-ep10-s?"),
       ("18 faces, full training set", "handwriting-s[123]"),
       ("24 faces, full training set", "handwriting24-s?")],
      "On the full training set the extra faces lowered both the test and the real-world medians "
      "of the same recipe and seeds, and ten epochs did not help them, so they were reverted.",
      ("772e6ba", None)),
    Q("Widening digits until their ink fills a square box (`--fill-box 0.1`), as the scans do",
      [BF16, FP32[:2], (None, "fill10-s1"), FONTS, (None, "fonts25-fill10-s1")],
      "Widening lowered real-world accuracy with and without font digits and did not raise "
      "validation accuracy, so it was reverted.", ("5ee2ac6", "--fill-box")),
    Q("Does the `handwriting` recipe read real handwriting better than the default, on the full "
      "training set?",
      [("default then (make train)", "20261125-000225"), ("AdamW default, fp32", "default-s1"),
       ("handwriting", "handwriting-s?")],
      "The handwriting recipe read the real-world set better than the default's checkpoints at a "
      "small cost in test accuracy, and stays a recipe of its own because it needs the font "
      "packages."),
    Q("predict.py's slant step: does straightening slanted ink read real handwriting better?",
      [("handwriting, reports before the slant step", "handwriting-s?"),
       ("handwriting, with it", "hw-s?")],
      "With the slant step the same recipe and seeds read the real-world set better at the "
      "median, so predict.py keeps it."),
    Q("Font digits built with the slant step too?",
      [("font digits keep every slant", "hw-s?"),
       ("font digits straightened", "handwriting-deslant-s?")],
      "Straightened font digits read the real-world set worse at the median than font digits that"
      " keep every slant, so `make font-digits` keeps every slant.", ("5605e54", None)),
    Q("For the record, measured after the choice: the AdamW and Muon defaults on the test set in "
      "fp32 (goal: a median of 99.70%)",
      [("AdamW default, fp32", "20261202-*-default-s?"),
       ("Muon default, fp32 (benchmark)", "20261203-*-default-seed?"),
       ("Muon default, make notebook", "20261203-033042")],
      "The AdamW default's test median over five seeds stayed just under the goal, which the Muon"
      " default's benchmark median reached."),
    Q("For the record: what training in fp32 instead of bf16 costs the fast recipe on a CPU "
      "(goal: 99.0% within 30 s of training)",
      [("fast, bf16 (last bf16 benchmark)", "20261125-04*-fast-seed?"),
       ("fast, fp32", "fast-fp32-s1"), ("fast, fp32 (benchmark)", "20261203-*-fast-seed?")],
      "In `fp32` the fast recipe took far longer to train than in `bf16` for about the same "
      "accuracy, which is why a benchmark on a CPU without `bf16` misses the time goal."),
]


PRECISION = {"off": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}
OUTPUT_ONLY = {"--no-progress": 0, "--no-save-model": 0, "--log-dir": 1, "--checkpoint-dir": 1,
               "--name": 1}  # flags that only say where output goes, with how many values follow


def read_files(logs: Path, archive: Path | None) -> dict[str, str]:
    """Text of the top-level data files (.json, .csv) in ``logs`` and in ``archive``, by base name
    (logs/ wins)."""
    files, wanted = {}, (".json", ".csv")
    if archive is not None and archive.is_file():
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(wanted):
                    files[Path(member.name).name] = tar.extractfile(member).read().decode("utf-8")
    for path in sorted(logs.iterdir()):
        if path.is_file() and path.name.endswith(wanted):
            files[path.name] = path.read_text(encoding="utf-8")
    return files


def shown_command(command: str) -> str:
    """A run's command without the flags that only say where its output goes."""
    words, kept, skip = command.split(" "), [], 0
    for word in words:
        if skip:
            skip -= 1
        elif word in OUTPUT_ONLY:
            skip = OUTPUT_ONLY[word]
        else:
            kept.append(word)
    return " ".join(kept)


def read_runs(files: dict[str, str]) -> dict[str, dict]:
    """Every run with a CSV, by run id; an ``--ema`` run also gives ``<id>-trained``: its trained
    weights' accuracy."""
    facts = json.loads(files.get(FACTS, "{}")).get("runs", {})
    runs = {}
    for name in sorted(n for n in files if n.endswith(".csv")):
        run_id, rows = name[:-4], list(csv.DictReader(io.StringIO(files[name])))
        if not rows or "epoch" not in rows[0]:
            continue
        info, fact = json.loads(files.get(f"{run_id}.json", "{}")), facts.get(run_id, {})
        acc = next(k for k in rows[-1] if k.endswith("_acc") and k != "train_acc")
        device = fact.get("device") or info.get("settings", {}).get("device", "auto")
        autocast = fact.get("autocast") or info.get("autocast")
        runs[run_id] = dict(
            id=run_id, command=shown_command(info.get("command") or fact.get("command", "—")),
            kind=info.get("kind", "—"), acc=float(rows[-1][acc]),
            split=info.get("split") or fact.get("split", "test"), epochs=float(rows[-1]["epoch"]),
            seconds=sum(float(r.get("seconds") or 0) for r in rows),
            device="—" if device == "auto" else " ".join(
                [device, *([PRECISION.get(autocast, autocast)] if autocast else [])]))
        if "trained_weights_accuracy" in fact:
            runs[f"{run_id}-trained"] = {
                **runs[run_id], "id": f"{run_id}-trained", "acc": fact["trained_weights_accuracy"],
                "command": runs[run_id]["command"] + " (trained weights, from its log)"}
    return runs


def read_reports(files: dict[str, str]) -> dict[str, list[tuple[str, float]]]:
    """Real-world accuracies by checkpoint name (= run id), oldest evaluation first:
    [(its date, accuracy over all images), ...]."""
    reports: dict[str, list[tuple[str, float]]] = {}
    for name in sorted(n for n in files if n.startswith("realworld-") and n.endswith(".json")):
        record = json.loads(files[name])
        overall = next(g for g in record["groups"] if g["group"] == "all")
        reports.setdefault(Path(record["checkpoint"]).stem, []).append(
            (name[len("realworld-"):-len(".json")], overall["accuracy"]))
    return reports


def name_of(run_id: str) -> str:
    """A run id without its date-time prefix: ``muon-fp32-s1`` for
    ``20261202-225612-muon-fp32-s1``."""
    return re.sub(r"^\d{8}-\d{6}-?", "", run_id)


def num(x: float) -> str:
    """Two decimals, or three where a median of an even count needs them (99.675)."""
    s = f"{x:.3f}"
    return s[:-1] if s.endswith("0") else s


def matching(pattern: str, runs: dict[str, dict]) -> list[str]:
    """The run ids a question's pattern names: by the whole id or by the run's name."""
    return sorted(r for r in runs if fnmatch(r, pattern) or fnmatch(name_of(r), pattern))


def section(n: int, entry: dict, runs: dict[str, dict], reports: dict) -> str:
    """One question: a row per matching run, medians per candidate, the conclusion."""
    out, rows, missing, seen = [f"## {n}. {entry['q']}", ""], [], [], set()
    for label, *patterns in entry["runs"]:
        for pattern in patterns:
            found = matching(pattern, runs)
            missing += [] if found else [f"`{pattern}`"]
            for run_id in (r for r in found if r not in seen):
                seen.add(run_id)
                seedless = re.sub(r"-s(eed)?\d+(?=$|-trained$)", "", name_of(run_id)) or run_id
                rows.append((label or seedless, runs[run_id], reports.get(run_id, [])))
    if not rows:
        out += [f"_No logged run matches this question's patterns ({', '.join(missing)})._"]
    else:
        out += ["| run | candidate | kind | split | device | epochs | accuracy (%) | real-world "
                "(%) (report) | train s | command |",
                "|---|---|---|---|---|---:|---:|---|---:|---|"]
        groups: dict[tuple[str, str], list] = {}
        for label, r, rw in rows:
            real = ", ".join(f"{num(a)} (`{date}`)" for date, a in rw) or "—"
            out.append(f"| `{r['id']}` | {label} | {r['kind']} | {r['split']} | {r['device']} | "
                       f"{r['epochs']:g} | {num(r['acc'])} | {real} | {r['seconds']:.0f} | "
                       f"`{r['command'].replace('|', '/')}` |")
            groups.setdefault((label, r["split"]), []).append(
                (r["acc"], rw[-1][1] if rw else None, r["seconds"]))
        medians = [(key, g) for key, g in groups.items() if len(g) > 1]
        if medians:
            out += ["", "Medians over seeds, for each candidate with two or more runs (real-world: "
                    "each run's latest report, with how many runs have one):", "",
                    "| candidate | split | runs | accuracy (%) | real-world (%) | train s |",
                    "|---|---|---:|---:|---:|---:|"]
            for (label, split), g in medians:
                real = [b for _, b, _ in g if b is not None]
                rw = f"{num(statistics.median(real))} ({len(real)})" if real else "—"
                out.append(f"| {label} | {split} | {len(g)} | "
                           f"{num(statistics.median(a for a, _, _ in g))} | {rw} | "
                           f"{statistics.median(s for _, _, s in g):.0f} |")
        if missing:
            out += ["", f"No logged run matches {', '.join(missing)}."]
    out += ["", f"**Conclusion.** {entry['conclusion']}"]
    if entry["code"]:
        commit, flag = entry["code"]
        where = f"git grep -n -e {flag} {commit} -- '*.py'" if flag else f"git show {commit}"
        out += ["", f"**Code.** {f'`{flag}` is' if flag else 'This code is'} no longer in the "
                f"package; it last existed at commit `{commit}` (`{where}`)."]
    return "\n".join(out) + "\n"


HEAD = """# Experiments: what was tried, and what it showed

<!-- Generated by `python -m tools.experiments` (`make experiments`): edit tools/experiments.py, \
not this file. -->

Generated by `python -m tools.experiments` (`make experiments`) from {sources}: the {runs} runs \
and {reports} real-world reports cited below. Every number below is read from data files, never \
from a text log or a markdown report: the command, kind and split from the run's \
`<run-id>.json`, the accuracy after the last epoch and the training seconds from its \
`<run-id>.csv`, the device and training precision \
from `run-facts.json` (which also holds the command and split of runs made before run files \
existed, read once from their text logs), and the real-world accuracy from each \
`realworld-<date>.json` evaluation of the run's checkpoint (several on one checkpoint are listed \
oldest first: predict.py changed between them). Commands are shown without the flags that only \
say where output goes (`--log-dir`, `--checkpoint-dir`, `--name`, `--no-save-model`, \
`--no-progress`). Only the questions, the candidates' names and the one-sentence conclusions are \
written by hand, and the conclusions state no numbers.

Recipes were chosen on the validation split (`--val 10000`: trained on the other training images, \
evaluated on the last 10,000), never on the test set; the `split` column says which one a run was \
evaluated on. Runs on the test split trained on the full training set: they were compared on the \
real-world set, or measured after a choice. A run id is `YYYYmmdd-HHMMSS-<name>`; one ending in \
`-trained` stands for the trained weights of an `--ema` run, whose log recorded their accuracy.

The raw files of the tuning runs (once in `logs/tuning/`) and of older runs and reports are in \
`logs/archive.tar.xz`, under their old paths inside `logs/`: `tar -tJf logs/archive.tar.xz` lists \
them and `tar -xJf logs/archive.tar.xz -C logs` puts them back. Where an experiment's code was \
removed, its section names the commit where that code last existed.

"""


def anchor(title: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def render(runs: dict[str, dict], reports: dict, questions: list[dict], sources: str,
           studies: dict[str, dict] | None = None) -> str:
    """The whole document; ``studies``: rendered studies' records by name."""
    # what the questions cite: a run of yours in logs/ that none names changes nothing here
    cited = {r for e in questions for _, *patterns in e["runs"] for pattern in patterns
             for r in matching(pattern, runs)}
    head = HEAD.format(sources=sources, runs=len(cited),
                       reports=sum(len(reports.get(r, [])) for r in cited))
    toc = [f"{i}. [{e['q']}](#{anchor(f'{i}. ' + e['q'])})" for i, e in enumerate(questions, 1)]
    return (head + studies_section(studies or {}) + "\n".join(toc) + "\n\n"
            + "\n".join(section(i, e, runs, reports) for i, e in enumerate(questions, 1)))


def studies_section(studies: dict[str, dict]) -> str:
    """The Optuna studies (``python -m tools.tune``), each cited by the summary of its record."""
    if not studies:
        return ""
    out = ["## Optuna studies", "",
           "Searches made with `python -m tools.tune` and rendered with `python -m tools.study "
           "<study>`; each page lists every trial with its settings, validation accuracy per seed "
           "and runs (the committed studies' in `logs/studies/<study>/`; yours land in "
           "`studies/<study>/`).", ""]
    for name, record in sorted(studies.items()):
        out.append(f"- [`{name}`](studies/{name}.md): {study.counts_line(record)} "
                   + "; ".join(study.summary_lines(record)))
    return "\n".join(out) + "\n\n"


def build(logs: str | Path = "logs", archive: str | Path | None = "logs/archive.tar.xz",
          questions: list[dict] | None = None, studies: str | Path | None = "docs/studies") -> str:
    """The markdown for ``questions`` (default: QUESTIONS) from the runs in ``logs`` and
    ``archive``, citing the studies rendered in ``studies`` (their <study>.json)."""
    files = read_files(Path(logs), Path(archive) if archive else None)
    sources = f"`{logs}/`" + (f" and `{archive}`" if archive and Path(archive).is_file() else "")
    records = {p.stem: json.loads(p.read_text()) for p in sorted(Path(studies).glob("*.json"))} \
        if studies else {}
    return render(read_runs(files), read_reports(files),
                  QUESTIONS if questions is None else questions, sources, records)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", default="logs",
                   help="folder of run files and reports, top level only (default: logs)")
    p.add_argument("--archive", default="logs/archive.tar.xz",
                   help="tar.xz of archived run files, read in memory; '' for none "
                        "(default: logs/archive.tar.xz)")
    p.add_argument("--out", default="docs/experiments.md",
                   help="markdown file to write (default: docs/experiments.md)")
    p.add_argument("--studies", default="docs/studies",
                   help="rendered Optuna studies to cite, <study>.json (default: docs/studies)")
    args = p.parse_args(argv)
    if not Path(args.logs).is_dir():
        p.error(f"--logs {args.logs}: no such folder")
    if args.archive and not Path(args.archive).is_file():
        p.error(f"--archive {args.archive}: no such file (--archive '' reads the logs folder "
                "alone)")
    atomic_write_text(Path(args.out), build(args.logs, args.archive, studies=args.studies))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
