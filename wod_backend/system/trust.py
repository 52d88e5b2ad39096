"""What root may trust, and root's own scratch space.

The rule (docs/security.md, "Threat model"): no root process resolves a path inside a directory
that the backend user or a student can write, except relative to a directory descriptor
opened from a root-owned anchor with O_NOFOLLOW; root's scratch space is root's own.

- `root_scratch()`: a fresh 0700 directory inside a root-owned anchor (never
  `state_dir`, which the backend user owns). A hook run by root as another user gets
  its scratch given to that user inside the anchor, which that user can traverse but
  neither list nor change (0711).
- `check_root_only()`: a path whose every component is root's: owned by root and not
  writable by group or others (a root-owned sticky directory such as /tmp counts: no
  one else can move root's entries in it). The helper refuses to start otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError

ANCHORS = (Path("/run/wod-backend"), Path("/var/lib/wod-backend-root"))
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _root_owned_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not (
        st.st_mode & 0o022 and not (st.st_mode & stat.S_ISVTX))


def _ensure_anchor(anchor: Path) -> Path:
    """anchor (root-owned, 0711), created through descriptors of root-owned parents."""
    parent_fd = os.open("/", _DIR)
    try:
        for part in anchor.parts[1:]:
            st = os.fstat(parent_fd)
            if not _root_owned_dir(st):
                raise ConfigError(f"root scratch: a parent of {anchor} is not root's")
            try:
                os.mkdir(part, 0o711, dir_fd=parent_fd)
            except FileExistsError:
                pass
            fd = os.open(part, _DIR, dir_fd=parent_fd)
            os.close(parent_fd)
            parent_fd = fd
        st = os.fstat(parent_fd)
        if st.st_uid != 0:
            raise ConfigError(f"root scratch: {anchor} is not owned by root")
        if stat.S_IMODE(st.st_mode) != 0o711:
            os.fchmod(parent_fd, 0o711)
    finally:
        os.close(parent_fd)
    return anchor


def scratch_anchor() -> Path:
    last: Optional[Exception] = None
    for anchor in ANCHORS:
        try:
            return _ensure_anchor(anchor)
        except (OSError, ConfigError) as exc:
            last = exc
    raise ConfigError(f"no root-owned scratch directory could be made ({last})")


@contextmanager
def root_scratch(owner: Optional[tuple[int, int]] = None) -> Iterator[Path]:
    """A private scratch directory for a root process (0700, removed afterwards); with
    `owner`, handed to that (uid, gid) for a program root runs as that user."""
    if os.geteuid() != 0:
        raise ConfigError("internal: root_scratch outside a root process")
    path = Path(tempfile.mkdtemp(prefix="wod-", dir=scratch_anchor()))
    try:
        if owner is not None:
            os.chown(path, owner[0], owner[1])
        yield path
    finally:
        # fd-based rmtree: links a user planted inside are removed, never followed.
        shutil.rmtree(path, ignore_errors=True)


def writable_by_others(path: Path) -> Optional[str]:
    """Why `path` or one of its parents could be changed by someone but root, or None."""
    current = Path(os.path.abspath(path))
    for p in (current, *current.parents):
        try:
            st = os.lstat(p)
        except OSError as exc:
            return f"{p}: {exc.strerror}"
        if stat.S_ISLNK(st.st_mode):
            target = p.parent / os.readlink(p)
            why = writable_by_others(target)
            if why:
                return why
            continue
        if st.st_uid != 0:
            return f"{p} is owned by uid {st.st_uid}, not root"
        sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & 0o022 and not (sticky and p != current):
            return f"{p} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def tree_writable_by_others(root: Path, limit: int = 20000) -> Optional[str]:
    """Like writable_by_others, for a whole tree (content roots, hooks trees)."""
    why = writable_by_others(root)
    if why:
        return why
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            seen += 1
            if seen > limit:
                return None
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if st.st_uid != 0 and not stat.S_ISLNK(st.st_mode):
                return f"{p} is owned by uid {st.st_uid}, not root"
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
                return f"{p} is writable by group or others"
    return None


def code_paths() -> list[Path]:
    """What the helper's Python runs: its environment and the package it imports."""
    package = Path(__file__).resolve().parents[1]
    return [Path(sys.prefix), Path(os.path.realpath(sys.executable)), package]


def untrusted(paths: Iterable[tuple[str, Path, bool]]) -> Optional[str]:
    """The first (what, path, whole_tree) that someone but root could change."""
    for what, path, whole in paths:
        why = tree_writable_by_others(path) if whole else writable_by_others(path)
        if why:
            return f"{what} {path} is not root's alone: {why}"
    return None


def helper_trust_report(cfg: Config, folder: Optional[str] = None) -> Optional[str]:
    """Why root should not run the helper with this code and content, or None.

    With `folder` (what the helper is asked to serve), only that workshop's trees are
    walked, besides the roots, skeletons, variables and compile scripts: a few
    milliseconds per helper start. Without it (`doctor`), every tree."""
    assert isinstance(cfg, Config)
    checks: list[tuple[str, Path, bool]] = [("code", p, p.name == "wod_backend")
                                            for p in code_paths()]
    for root in (cfg.content.public, cfg.content.private):
        if root is None:
            continue
        if folder is None:
            checks.append(("content root", root, True))
            continue
        checks.append(("content root", root, False))
        for sub in (folder, "skeleton"):
            if (root / sub).exists():
                checks.append(("content root", root / sub, True))
        variables = root / f"variables_{folder}.yml"
        if variables.exists():
            checks.append(("content root", variables, False))
    for tree in (cfg.hooks.public, cfg.hooks.private):
        if tree is not None:
            checks += [("hooks tree", tree / "scripts", True)] \
                if (tree / "scripts").exists() else [("hooks tree", tree, False)]
    return untrusted(checks)


def code_stamp() -> str:
    """What identifies the package's code on disk: a hash of its modules' names, sizes
    and modification times. A resident process (the worker, the resident privileged
    side) keeps the code it imported at its start; setup restarts it when this differs
    (an upgrade, or an edited checkout), and the privileged side refuses to serve."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        st = path.stat()
        digest.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
