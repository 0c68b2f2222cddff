"""What every command line shares: bounded number types, run names, and one rule for how an error
names its program (the command the user typed: ``train.py``, ``python -m tools.bench``)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path


class UsageError(ValueError):
    """A command was given something it cannot use: one line, exit status 2."""

    exit_status = 2


def program(name: str) -> str:
    """How messages name a command: a script by its file (``train.py``), a tool as it is run
    (``tools.bench`` -> ``python -m tools.bench``)."""
    return name if name.endswith(".py") else f"python -m {name}"


def fail(prog: str, message: object, status: int = 1) -> int:
    """Print ``<prog>: error: <message>`` on stderr and return ``status``: every command's one-line
    error."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def quiet_ctrl_c() -> None:
    """Ctrl-C before a command handles it itself (while torch loads, say) ends in one line instead
    of a traceback; Python still exits as interrupted (status 130)."""
    default = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: object) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            return default(kind, value, traceback)
        script = Path(sys.argv[0])
        name = f"tools.{script.stem}" if script.parent.name == "tools" else script.name
        fail(program(name), "interrupted (Ctrl-C)")

    sys.excepthook = hook


def bounded(cast: type, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: ``cast`` the text, then require a finite value in [low, high] (open where
    asked)."""

    def shown(limit: float) -> str:
        return str(cast(limit)) if cast is int else f"{limit:g}"  # "> 0", not "> 0.0"

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"{kind} is needed, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"a finite number is needed, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            sign = ">" if low_open else ">="
            raise argparse.ArgumentTypeError(f"must be {sign} {shown(low)}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            sign = "<" if high_open else "<="
            raise argparse.ArgumentTypeError(f"must be {sign} {shown(high)}, got {text}")
        return value

    return parse


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --no-verify, as every command that reads MNIST takes them."""
    parser.add_argument("--data-dir", default="data",
                        help="MNIST is in <data-dir>/MNIST/raw, fetched if missing [default: data]")
    parser.add_argument("--no-verify", action="store_true",
                        help="use the MNIST files as they are, without the standard md5 check")


RUN_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def run_name(text: str) -> str:
    """A short label that is safe in a file name (a run's ``--name``, a study's name)."""
    if not RUN_NAME.fullmatch(text) or text.startswith("."):
        raise argparse.ArgumentTypeError("use 1-64 letters, digits, '.', '_' or '-' (not first "
                                         f"'.'), got {text!r}")
    return text
