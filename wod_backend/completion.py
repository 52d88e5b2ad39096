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


def _code_cells(path: Path, max_bytes: int = 50 << 20) -> Optional[tuple[int, int]]:
    """(code cells, executed code cells) of a notebook, None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
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


def completion(src: Path, delivered: Path) -> int:
    """Whole-number percentage of the workshop's code cells the student executed."""
    total = executed = 0
    for rel in workshop_notebooks(src):
        student = _code_cells(delivered / rel)
        if student is None or student[0] == 0:
            original = _code_cells(src / rel)
            total += original[0] if original else 0
            continue
        total += student[0]
        executed += student[1]
    return round(100 * executed / total) if total else 0
