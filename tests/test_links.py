"""The repository's name lives in one place, the Makefile's REPOSITORY: README.md and S5.ipynb
agree with it, and `make links` (tools/links.py) rewrites them for another name and back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from tools import links

REPOSITORY = links.makefile_repository(ROOT / "Makefile")
FORK = "octocat/s5.fork_2"


def setup_cell(notebook: Path) -> str:
    """The source of the notebook's set-up cell (the one that sets REPO_URL)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    (source,) = ["".join(c["source"]) for c in cells if "REPO_URL = " in "".join(c["source"])]
    return source


def copies(tmp_path: Path) -> tuple[Path, Path]:
    readme, notebook = tmp_path / "README.md", tmp_path / "S5.ipynb"
    shutil.copy(ROOT / "README.md", readme)
    shutil.copy(ROOT / "S5.ipynb", notebook)
    return readme, notebook


def run_setup_cell(notebook: Path, folder: Path) -> subprocess.CompletedProcess:
    """The set-up cell run where the modules are missing, with a `git` that only records its
    arguments: what the cell would clone, offline."""
    (folder / "bin").mkdir()
    git = folder / "bin" / "git"
    git.write_text('#!/bin/sh\necho "$@" > git-args\nexit 1\n')
    git.chmod(0o755)
    return subprocess.run([sys.executable, "-c", setup_cell(notebook)], cwd=folder, text=True,
                          capture_output=True, timeout=60, env={"PATH": f"{folder / 'bin'}:/bin"})


def test_the_makefile_names_the_repository_and_every_place_agrees() -> None:
    assert links.check_name(REPOSITORY) == REPOSITORY
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    notebook = (ROOT / "S5.ipynb").read_text(encoding="utf-8")
    # a fork that edits one place by hand and not the others fails here: `make links` writes all
    assert links.rewrite_readme(readme, REPOSITORY) == readme
    assert links.rewrite_notebook(notebook, REPOSITORY) == notebook
    assert readme.count(f'torch.hub.load("{REPOSITORY}", "net"') == 2
    assert readme.count(f"colab.research.google.com/github/{REPOSITORY}/blob/main/S5.ipynb") == 1
    url = "" if REPOSITORY == links.PLACEHOLDER else f"https://github.com/{REPOSITORY}.git"
    assert f'REPO_URL = "{url}"' in setup_cell(ROOT / "S5.ipynb")


def test_links_rewrites_a_copy_for_a_fork_and_back(tmp_path: Path) -> None:
    readme, notebook = copies(tmp_path)
    assert links.main(["--repository", FORK, "--readme", str(readme),
                       "--notebook", str(notebook)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.count(f'torch.hub.load("{FORK}", "net"') == 2
    assert f"https://colab.research.google.com/github/{FORK}/blob/main/S5.ipynb)" in text
    assert f'REPO_URL = "https://github.com/{FORK}.git"' in setup_cell(notebook)
    # only those spots: every other line of both files is as it was
    for path in (readme, notebook):
        old = (ROOT / path.name).read_text(encoding="utf-8").splitlines()
        new = path.read_text(encoding="utf-8").splitlines()
        assert all(FORK in b for a, b in zip(old, new, strict=True) if a != b)
    written = readme.read_bytes(), notebook.read_bytes()
    assert links.main(["--repository", FORK, "--readme", str(readme),
                       "--notebook", str(notebook)]) == 0
    assert (readme.read_bytes(), notebook.read_bytes()) == written  # idempotent
    assert links.main(["--repository", REPOSITORY, "--readme", str(readme),
                       "--notebook", str(notebook)]) == 0
    assert readme.read_bytes() == (ROOT / "README.md").read_bytes()
    assert notebook.read_bytes() == (ROOT / "S5.ipynb").read_bytes()


def test_the_set_up_cell_clones_a_named_fork_and_asks_for_one_under_the_placeholder(
        tmp_path: Path) -> None:
    readme, notebook = copies(tmp_path)
    links.main(["--repository", links.PLACEHOLDER, "--readme", str(readme),
                "--notebook", str(notebook)])
    (tmp_path / "placeholder").mkdir()
    proc = run_setup_cell(notebook, tmp_path / "placeholder")
    assert proc.returncode == 1 and "FileNotFoundError" in proc.stderr
    assert "set REPO_URL above" in proc.stderr
    assert not (tmp_path / "placeholder" / "git-args").exists()
    links.main(["--repository", FORK, "--readme", str(readme), "--notebook", str(notebook)])
    (tmp_path / "fork").mkdir()
    proc = run_setup_cell(notebook, tmp_path / "fork")
    assert proc.returncode == 1 and "CalledProcessError" in proc.stderr
    args = (tmp_path / "fork" / "git-args").read_text().split()
    assert args == ["clone", "--depth", "1", f"https://github.com/{FORK}.git", "repo"]


@pytest.mark.parametrize("name", ["octocat", "a/b/c", "own er/s5", "o/n;rm", "", "<you>/<fork>"])
def test_links_refuses_a_name_that_is_not_owner_slash_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    readme, notebook = copies(tmp_path)
    assert links.main(["--repository", name, "--readme", str(readme),
                       "--notebook", str(notebook)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m tools.links: error: --repository takes a GitHub owner/name")
    assert err.count("\n") == 1
    assert readme.read_bytes() == (ROOT / "README.md").read_bytes()
    assert notebook.read_bytes() == (ROOT / "S5.ipynb").read_bytes()


def test_make_links_passes_the_makefile_repository() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\n\t$(PYTHON) -m tools.links --repository '$(REPOSITORY)'\n" in makefile
    assert "set it to your fork's owner/name, then `make links`" in makefile
