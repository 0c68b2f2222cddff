"""The layout rules a reader relies on: scripts at the top, a library that never imports them, no sys.path edits."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

SCRIPTS = {"train", "predict"}  # the two top-level command lines; everything else is library
LIBRARY = [ROOT / "model.py", ROOT / "utils.py", *sorted((ROOT / "s5").glob("*.py"))]


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def project_python_files() -> list:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return [ROOT / name for name in tracked] or [*ROOT.glob("*.py"), *ROOT.glob("s5/*.py"), *ROOT.glob("tests/*.py")]


def test_no_library_module_imports_a_script() -> None:
    offenders = {path.name: imported_modules(path) & SCRIPTS for path in LIBRARY}
    assert not {name: found for name, found in offenders.items() if found}


def test_nothing_edits_sys_path() -> None:
    edits = [path.name for path in project_python_files() if "sys.path" in path.read_text()
             and path.name != "test_layout.py"]
    assert not edits


def test_the_scripts_are_thin_and_the_sizes_stay_readable() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    assert len((ROOT / "utils.py").read_text().splitlines()) <= 650  # the design card's module has its own limit
    long = {p.name: n for p in project_python_files() if p.name != "utils.py"
            and (n := len(p.read_text().splitlines())) > 600}
    assert not long


def test_the_library_imports_without_the_scripts_or_a_display() -> None:
    code = ("import sys, utils, model, s5.training, s5.report, s5.explain, s5.digits; "
            "print(sorted({'train', 'predict', '__main__'} & set(sys.modules) - {'__main__'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_train_help_lists_what_the_recipes_use_and_no_retired_experiment() -> None:
    from s5 import training

    flags = {option for action in training.build_parser()._actions for option in action.option_strings}
    retired = {"--stroke", "--elastic", "--shear", "--flag-ones", "--plain-epochs", "--ema", "--lowres-min",
               "--warmup", "--nesterov"}
    assert not flags & retired
    recipe_settings = {key for recipe in training.RECIPES.values() for key in recipe}
    assert {f"--{key.replace('_', '-')}" for key in recipe_settings} <= flags  # each recipe setting has its flag
    assert all(set(recipe) == set(training.DEFAULT) for recipe in training.RECIPES.values())  # one settings shape
