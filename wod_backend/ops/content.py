"""`content update` and `content rollback`: a content root switched atomically.

The configured root (`content.public`, or `content.private` with --private) becomes a
symbolic link to one release, a full tree under `ROOT.releases/` (root's, 0755). An
update copies a directory, or clones a git repository (`git clone --depth 1`), into a
new release, runs `workshops check` on it, and only when nothing is an error replaces
the link in one rename(2): an order sees the old tree or the new one, never a mix.
Each order resolves the root once (planning/catalog.py): an order running during the
swap keeps the tree it started with, and its helper is given that release
(`content` in its requests, checked to be this root's or one of its releases). The
last `KEEP` releases stay; `rollback` points the link at the one before.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError, UsageError
from wod_backend.planning.catalog import releases_dir
from wod_backend.system.run import run
from wod_backend.system.trust import helper_trust_report

KEEP = 5


def releases(root: Path) -> list[Path]:
    where = releases_dir(root)
    return sorted(p for p in where.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if where.is_dir() else []


def current(root: Path) -> Optional[Path]:
    return Path(os.path.realpath(root)) if root.is_symlink() else None


def _root(cfg: Config, private: bool) -> Path:
    root = cfg.content.private if private else cfg.content.public
    if root is None:
        raise UsageError("content.private is not configured")
    return root


def _adopt(root: Path) -> None:
    """A plain directory root becomes the first release, the root a link to it."""
    if root.is_symlink() or not root.exists():
        return
    where = releases_dir(root)
    where.mkdir(mode=0o755, exist_ok=True)
    first = where / time.strftime("%Y%m%dT%H%M%S-initial")
    os.rename(root, first)
    os.symlink(first, root)


def _fetch(source: str, into: Path) -> None:
    if Path(source).is_dir():
        shutil.copytree(source, into, symlinks=True)
        return
    p = run(["git", "clone", "--quiet", "--depth", "1", source, str(into)], timeout=600)
    if not p.ok:
        raise ConfigError(f"git clone {source}: {p.describe()}: {p.tail(3, 200)}")
    shutil.rmtree(into / ".git", ignore_errors=True)


def _root_only(tree: Path) -> None:
    """The new tree written by root alone: nobody else may change what root delivers
    (the sudo helper refuses content others can write)."""
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue
        if os.geteuid() == 0:
            os.chown(path, 0, 0, follow_symlinks=False)
        mode = path.stat().st_mode
        if mode & 0o022:
            path.chmod(mode & ~0o022 & 0o7777)


def _switch(root: Path, release: Path) -> None:
    tmp = root.parent / f".{root.name}.switch"
    tmp.unlink(missing_ok=True)
    os.symlink(release, tmp)
    os.replace(tmp, root)  # atomic: the old link or the new, never none


def update(cfg: Config, source: Optional[str], private: bool = False) -> tuple[Path, list]:
    """(the new release, the check's problems); raises when an error refuses it."""
    from wod_backend.ops import contentcheck

    root = _root(cfg, private)
    _adopt(root)
    now = current(root)
    source = source or (str(now) if now else None)
    if source is None:
        raise UsageError(f"{root} does not exist: give --from")
    where = releases_dir(root)
    where.mkdir(mode=0o755, exist_ok=True)
    release = where / time.strftime("%Y%m%dT%H%M%S")
    suffix = 0
    while release.exists():
        suffix += 1
        release = where / f"{time.strftime('%Y%m%dT%H%M%S')}-{suffix}"
    staging = where / f".{release.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _fetch(source, staging)
        _root_only(staging)
        field = "private" if private else "public"
        trial = dataclasses.replace(cfg, content=dataclasses.replace(cfg.content,
                                                                     **{field: staging}))
        problems = contentcheck.check(trial)
        errors = [p for p in problems if p.severity == "error"]
        why = helper_trust_report(trial) if cfg.students.manage_accounts else None
        if why:  # the helper would refuse to serve it: so does the update
            raise ConfigError(f"content update refused: {why}; {root} unchanged")
        if errors:
            e = errors[0]
            raise ConfigError(f"content update refused: {len(errors)} error(s), first "
                              f"{e.workshop}/{e.path}: {e.message}; {root} unchanged")
        os.rename(staging, release)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _switch(root, release)
    for old in releases(root)[:-KEEP]:
        if old != release:
            shutil.rmtree(old, ignore_errors=True)
    return release, problems


def rollback(cfg: Config, private: bool = False) -> Path:
    root = _root(cfg, private)
    now, known = current(root), releases(root)
    if now is None or now not in known or known.index(now) == 0:
        raise UsageError(f"{root}: no earlier release to go back to")
    previous = known[known.index(now) - 1]
    _switch(root, previous)
    return previous
