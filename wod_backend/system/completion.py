"""Completion %: executed code cells over code cells, across the workshop's notebooks.

The list of notebooks and their code cells comes from the workshop's own content; the
student's copies say which cells ran. A notebook the student deleted or broke counts as
not executed; a cell the student added counts on both sides as the student's copy has
it. Never raises on student files: they are untrusted input.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Optional


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_inside(base: Path, rel: str) -> Optional[int]:
    """A descriptor of `base/rel` opened one component at a time without following any
    link: `base`'s parent is trusted (the homes' root), everything below is not."""
    parts = [p for p in Path(rel).parts if p not in ("", ".")]
    if ".." in parts:
        return None
    try:
        fd = os.open(base.parent, _DIR & ~os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        for i, part in enumerate([base.name, *parts]):
            last = i == len(parts)
            nfd = os.open(part, _FILE if last else _DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except OSError:
        os.close(fd)
        return None


def _code_cells(where: "Path | tuple[Path, str]",
                max_bytes: int = 50 << 20) -> Optional[tuple[int, int]]:
    """(code cells, executed code cells) of a notebook, None if it cannot be read.
    `where` is a trusted path (the content) or (home, relpath) in a student's home."""
    if isinstance(where, tuple):
        fd = open_inside(*where)
        if fd is None:
            return None
    else:
        try:
            fd = os.open(where, _FILE)
        except OSError:
            return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            return None
        nb = json.loads(data)
        cells = nb.get("cells") if isinstance(nb, dict) else None
        if not isinstance(cells, list):
            return None
        code = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
        executed = [c for c in code if isinstance(c.get("execution_count"), int)]
        return len(code), len(executed)
    except (ValueError, UnicodeDecodeError, OSError, RecursionError):
        return None
    finally:
        os.close(fd)


def workshop_notebooks(src: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d != ".ipynb_checkpoints"]
        out += [str(Path(dirpath, f).relative_to(src)) for f in filenames
                if f.endswith(".ipynb") and not f.endswith("-checkpoint.ipynb")]
    return sorted(out)


def completion(src: Path, home: Path, folder: str) -> int:
    """Whole-number percentage of the workshop's code cells the student executed, from
    the copies in `home/folder` (read without following any link the student made)."""
    total = executed = 0
    for rel in workshop_notebooks(src):
        student = _code_cells((home, f"{folder}/{rel}"))
        if student is None or student[0] == 0:
            original = _code_cells(src / rel)
            total += original[0] if original else 0
            continue
        total += student[0]
        executed += student[1]
    return round(100 * executed / total) if total else 0
