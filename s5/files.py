"""File helpers for everything that writes: the one atomic writer, generated blocks in a markdown
file, and whether the process that left a file behind is still alive. Standard library only."""

from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place: ``path`` is
    always either its old content or the new one, never half written. A failed write (full disk,
    no permission) leaves no temporary file behind and raises ``OSError`` with a one-line reason."""
    write_together({Path(path): data})
    return Path(path)


def write_together(contents: dict[Path, bytes]) -> None:
    """``atomic_write_bytes`` for several files, all or none: each is written to a temporary file
    beside it, and only once every one is there are they renamed into place (a rename takes no
    space)."""
    temps: dict[Path, Path] = {}
    path = None
    try:
        for path, data in contents.items():
            if Path(path).is_dir():  # found now: a rename onto it would fail after the others
                raise IsADirectoryError(21, "it is a folder")
            temps[path] = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(temps[path], "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # a crash after the rename must not leave an empty file
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except OSError as exc:
        error = OSError(f"could not write {path}: {exc.strerror or exc}")  # no "[Errno 28]"
        error.errno = exc.errno
        raise error from None
    finally:
        for tmp in temps.values():
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a read-only folder: there is no temporary file to remove
                pass


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_text(data: object) -> str:
    """``data`` as every record the project keeps is written: indented JSON."""
    return json.dumps(data, indent=1) + "\n"


def write_json(path: str | Path, data: object) -> Path:
    """``data`` as indented JSON (``json_text``), written atomically."""
    return atomic_write_text(path, json_text(data))


def replace_block(text: str, name: str, content: str, where: str = "the file") -> str:
    """``text`` with what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced
    by
    ``content``; ``ValueError`` if the markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"{where} has no {start} ... {end} block to regenerate; add the markers")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{content.rstrip()}\n{end}{rest.split(end, 1)[1]}"


def update_block(path: str | Path, name: str, content: str) -> None:
    """Regenerate the block ``name`` of the markdown file ``path`` in place, atomically."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    atomic_write_text(path, replace_block(text, name, content, str(path)))


def process_is_gone(pid: int) -> bool:
    """Whether no process of this id runs here (a file it left behind is nobody's now)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, under another user
        return False
    return False
