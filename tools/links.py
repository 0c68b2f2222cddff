"""Write the repository's GitHub name (the Makefile's REPOSITORY) into every place that uses it:
README.md's torch.hub lines and its Open-in-Colab link, and S5.ipynb's REPO_URL.

    python -m tools.links --repository you/your-fork      # what `make links` runs
    python -m tools.links --repository '<owner>/<repo>'   # back to the placeholder

Only those spots change; running it twice changes nothing the second time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from s5.cli import UsageError, fail, program
from s5.files import atomic_write_text

PROG = program("tools.links")
PLACEHOLDER = "<owner>/<repo>"
NAME = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+")
HUB = re.compile(r'torch\.hub\.load\("[^"]*", "net"')
COLAB = re.compile(r"https://colab\.research\.google\.com/github/\S*?/blob/main/S5\.ipynb")
REPO_URL = re.compile(r"^REPO_URL = .*$")
REPO_URL_NOTE = "  # a clone URL; `make links` writes the Makefile's REPOSITORY here"


def check_name(name: str) -> str:
    """``name`` if it is a GitHub owner/name or the placeholder; ``UsageError`` otherwise."""
    if name != PLACEHOLDER and not NAME.fullmatch(name):
        raise UsageError(f"--repository takes a GitHub owner/name such as octocat/s5, got {name!r}")
    return name


def makefile_repository(makefile: str | Path) -> str:
    """The value of the Makefile's ``REPOSITORY :=`` line."""
    for line in Path(makefile).read_text(encoding="utf-8").splitlines():
        if line.startswith("REPOSITORY"):
            return line.split(":=", 1)[1].strip()
    raise ValueError(f"{makefile} has no REPOSITORY := line")


def substitute(pattern: re.Pattern, new: str, text: str, what: str) -> str:
    """Every match of ``pattern`` in ``text`` replaced by ``new``; ``ValueError`` if none."""
    text, count = pattern.subn(lambda _: new, text)
    if not count:
        raise ValueError(f"README.md has no {what} to rewrite")
    return text


def rewrite_readme(text: str, name: str) -> str:
    """README.md's text with ``name`` in its torch.hub lines and its Colab link."""
    text = substitute(HUB, f'torch.hub.load("{name}", "net"', text, 'torch.hub.load("...", "net"')
    colab = f"https://colab.research.google.com/github/{name}/blob/main/S5.ipynb"
    return substitute(COLAB, colab, text, "Colab link")


def repo_url_line(name: str) -> str:
    """The notebook's REPO_URL line: empty for the placeholder, so the set-up cell asks for one."""
    url = "" if name == PLACEHOLDER else f"https://github.com/{name}.git"
    return f'REPO_URL = "{url}"{REPO_URL_NOTE}'


def rewrite_notebook(text: str, name: str) -> str:
    """S5.ipynb's JSON text with ``name``'s clone URL in its REPO_URL line, cell sources alone."""
    notebook = json.loads(text)
    count = 0
    for cell in notebook["cells"]:
        for i, line in enumerate(cell["source"]):
            if REPO_URL.match(line):
                cell["source"][i] = repo_url_line(name) + ("\n" if line.endswith("\n") else "")
                count += 1
    if not count:
        raise ValueError("S5.ipynb has no REPO_URL = line to rewrite")
    # nbformat's own layout: the committed file round-trips byte for byte
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def write_links(name: str, readme: Path, notebook: Path) -> list[Path]:
    """Rewrite the files that differ (atomically) and return them."""
    changed = []
    for path, rewrite in ((readme, rewrite_readme), (notebook, rewrite_notebook)):
        old = path.read_text(encoding="utf-8")
        new = rewrite(old, name)
        if new != old:
            atomic_write_text(path, new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", required=True,
                   help=f"GitHub owner/name of your fork, or {PLACEHOLDER!r}")
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--notebook", type=Path, default=Path("S5.ipynb"))
    args = p.parse_args(argv)
    try:
        changed = write_links(check_name(args.repository), args.readme, args.notebook)
    except UsageError as exc:
        return fail(PROG, exc, exc.exit_status)
    except (OSError, ValueError) as exc:
        return fail(PROG, exc)
    done = (", ".join(map(str, changed)) + " rewritten" if changed
            else f"{args.readme} and {args.notebook} already name it")
    print(f"{args.repository}: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
