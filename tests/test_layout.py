"""The floor plan a reader relies on: scripts at the top, the library in s5/, the command programs
in tools/; the library never imports a script or a tool, the card's modules import only leaf
modules, nothing edits sys.path."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

SCRIPTS = {"train", "predict", "hubconf"}  # the top-level entry points
LIBRARY = [ROOT / "model.py", ROOT / "utils.py", *sorted((ROOT / "s5").glob("*.py"))]
LEAVES = {"s5.constants", "s5.files", "s5.cli"}  # all of ours the card's model.py, utils.py import
STANDARD_LIBRARY = set(sys.stdlib_module_names)


def imported_modules(path, depth: int = 1) -> set[str]:
    """The modules ``path`` imports anywhere in it, cut to their first ``depth`` dotted parts."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {".".join(alias.name.split(".")[:depth]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if depth > 1 and node.module == "s5":  # from s5 import training
                names |= {f"s5.{alias.name}" for alias in node.names}
            else:
                names.add(".".join(node.module.split(".")[:depth]))
    return names


def project_python_files() -> list:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    return [ROOT / name for name in tracked] or [*ROOT.glob("*.py"), *ROOT.glob("s5/*.py"),
                                                 *ROOT.glob("tools/*.py"), *ROOT.glob("tests/*.py")]


def test_no_library_module_imports_a_script_or_a_tool() -> None:
    offenders = {path.name: imported_modules(path) & (SCRIPTS | {"tools"}) for path in LIBRARY}
    assert not {name: found for name, found in offenders.items() if found}


def test_the_library_holds_no_command_program() -> None:
    """Only train.py's command-line layer and the shared command-line parts parse flags in s5/."""
    for path in (ROOT / "s5").glob("*.py"):
        text = path.read_text()
        assert "__main__" not in text, path.name
        if path.name not in ("train_cli.py", "cli.py"):
            assert "argparse" not in imported_modules(path), path.name
    assert all("__main__" in p.read_text() for p in (ROOT / "tools").glob("*.py")
               if p.name != "__init__.py" and "def main(" in p.read_text())


def test_the_card_modules_import_only_leaf_modules_and_the_leaves_import_nothing_of_ours() -> None:
    for name in ("model.py", "utils.py"):
        ours = {m for m in imported_modules(ROOT / name, depth=2)
                if m.split(".")[0] in ("s5", "utils", "model")}
        assert ours <= LEAVES, (name, ours - LEAVES)
    assert imported_modules(ROOT / "s5" / "constants.py") == set()
    for leaf in ("files.py", "cli.py"):
        assert imported_modules(ROOT / "s5" / leaf) - {"__future__"} <= STANDARD_LIBRARY, leaf
    assert "s5.image" not in imported_modules(ROOT / "s5" / "mnist.py", depth=2)


def test_nothing_edits_sys_path() -> None:
    edits = [path.name for path in project_python_files() if "sys.path" in path.read_text()
             and path.name != "test_layout.py"]
    assert not edits


def test_the_scripts_are_thin_and_the_sizes_stay_readable() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    # the design card's module has its own limit
    assert len((ROOT / "utils.py").read_text().splitlines()) <= 650
    long = {p.name: n for p in project_python_files() if p.name != "utils.py"
            and (n := len(p.read_text().splitlines())) > 600}
    assert not long


def test_the_library_imports_without_the_scripts_or_a_display() -> None:
    code = ("import sys, utils, model, s5.training, s5.report, s5.explain, s5.digits; "
            "print(sorted({'train', 'predict', 'tools', '__main__'} & set(sys.modules) "
            "- {'__main__'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_train_help_lists_what_the_recipes_use_and_no_retired_experiment() -> None:
    from s5 import recipes, train_cli

    flags = {option for action in train_cli.build_parser()._actions
             for option in action.option_strings}
    retired = {"--stroke", "--elastic", "--shear", "--flag-ones", "--plain-epochs", "--ema",
               "--lowres-min", "--warmup", "--nesterov"}
    assert not flags & retired
    # each setting has its flag
    assert {f"--{key.replace('_', '-')}" for key in recipes.TRAINING_KEYS} <= flags
    assert len(recipes.RECIPE_KEYS) == 17 and "seed" not in recipes.RECIPE_KEYS
    assert all(isinstance(r, recipes.Settings) and r.recipe == name
               for name, r in recipes.RECIPES.items())
