"""Students' work kept past the wipe: what changed in the workshop folder, archived.

When the notebooks are delivered, a manifest of the workshop folder (each file's size
and modification time) is written to `backups.dir/manifests/USER.json`. Before a
CLEANUP, RESET or PURGE wipes the home, the folder is walked again and every file that
is new or differs from its manifest entry is written to a gzip'd tar in
`backups.dir/archives/` (at most `backups.max_mb` of files each; a JSON record beside
it says whose, which order, which files, what was left out). A home left as delivered
costs one walk and no archive. `backups.dir` is root's (0700, outside state_dir): the
backend user can neither read the archives nor swap the folder.

The home is the student's: everything is opened below the homes' root one component
at a time with O_NOFOLLOW (a link is never followed, a fifo never blocks), with bounds
on depth and entries, and only regular files are read.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional

from wod_backend.errors import StepFailed
from wod_backend.system.completion import open_inside

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 32
MAX_ENTRIES = 20000


@dataclass(frozen=True)
class Archived:
    id: str
    files: int
    bytes: int
    skipped: int  # changed files left out: over the size cap


def ensure_dirs(root: Path) -> None:
    """backups.dir and its two folders, this process's (root's) and 0700; refused when
    it or its parent is anyone else's or writable by others (it could be swapped)."""
    me = os.geteuid()
    for path in (root.parent, root):
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, me) or \
                st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX or \
                path == root and st.st_mode & 0o077:
            raise StepFailed(f"backups.dir: {path} must be a directory of root's that "
                             f"nobody else can write (0700 for backups.dir itself)")
    root.mkdir(mode=0o700, exist_ok=True)
    for path in (root / "manifests", root / "archives"):
        path.mkdir(mode=0o700, exist_ok=True)


def _walk(fd: int, prefix: str = "", depth: int = 0,
          seen: Optional[list[int]] = None) -> Iterator[tuple[str, os.stat_result, int]]:
    """(relative path, stat, parent dir fd) of every regular file below `fd`."""
    seen = seen if seen is not None else [0]
    if depth > MAX_DEPTH:
        return
    for name in sorted(os.listdir(fd)):
        seen[0] += 1
        if seen[0] > MAX_ENTRIES:
            return
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        rel = f"{prefix}{name}"
        if stat.S_ISREG(st.st_mode):
            yield rel, st, fd
        elif stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, _DIR, dir_fd=fd)
            except OSError:
                continue
            try:
                yield from _walk(sub, rel + "/", depth + 1, seen)
            finally:
                os.close(sub)


def _open_folder(home: Path, folder: str) -> Optional[int]:
    """The workshop folder of the home, opened without following a link; None if it
    is not a directory."""
    fd = open_inside(home, folder)
    if fd is not None and not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def manifest(home: Path, folder: str) -> dict[str, list[int]]:
    fd = _open_folder(home, folder)
    if fd is None:
        return {}
    try:
        return {rel: [st.st_size, st.st_mtime_ns] for rel, st, _ in _walk(fd)}
    finally:
        os.close(fd)


def record_delivery(root: Path, user: str, home: Path, folder: str) -> int:
    """The manifest of what was just delivered; how many files it lists."""
    ensure_dirs(root)
    files = manifest(home, folder)
    tmp = root / "manifests" / f".{user}.tmp"
    tmp.write_text(json.dumps({"folder": folder, "files": files}))
    os.replace(tmp, root / "manifests" / f"{user}.json")
    return len(files)


def archive(root: Path, user: str, home: Path, folder: str, max_bytes: int,
            meta: dict) -> Optional[Archived]:
    """The changed and new files of the workshop folder into one archive; None when
    nothing changed (or there is no folder)."""
    import tarfile  # only a wipe that archives needs it (not every helper start)

    ensure_dirs(root)
    try:
        delivered = json.loads((root / "manifests" / f"{user}.json").read_text())
        known = delivered["files"] if delivered.get("folder") == folder else {}
    except (OSError, ValueError, KeyError):
        known = {}
    fd = _open_folder(home, folder)
    if fd is None:
        return None
    buf = io.BytesIO()
    names: list[str] = []
    total = skipped = 0
    try:
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for rel, st, parent in _walk(fd):
                if known.get(rel) == [st.st_size, st.st_mtime_ns]:
                    continue
                if total + st.st_size > max_bytes:
                    skipped += 1
                    continue
                data = _read(parent, rel.rsplit("/", 1)[-1], st.st_size)
                if data is None:
                    continue
                info = tarfile.TarInfo(f"{folder}/{rel}")
                info.size, info.mtime, info.mode = len(data), int(st.st_mtime), 0o644
                tar.addfile(info, io.BytesIO(data))
                names.append(rel)
                total += len(data)
    finally:
        os.close(fd)
    if not names and not skipped:
        return None
    ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{user}-{os.getpid()}"
    (root / "archives" / f"{ident}.tar.gz").write_bytes(buf.getvalue())
    record = {**meta, "id": ident, "user": user, "folder": folder, "created": time.time(),
              "files": names, "bytes": total, "skipped": skipped,
              "archive_bytes": len(buf.getvalue())}
    (root / "archives" / f"{ident}.json").write_text(json.dumps(record))
    return Archived(ident, len(names), total, skipped)


def _read(parent: int, name: str, size: int) -> Optional[bytes]:
    try:
        fd = os.open(name, _FILE, dir_fd=parent)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def records(root: Path) -> list[dict]:
    """Every archive's record, newest first."""
    out = []
    for path in (root / "archives").glob("*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: r.get("created", 0), reverse=True)


def export(root: Path, ident: str, target: Path) -> list[Path]:
    """The archive's files as they were, under `target` (made, root's); their paths."""
    if "/" in ident or ident.startswith("."):
        raise ValueError(f"no backup {ident!r}")
    import tarfile

    path = root / "archives" / f"{ident}.tar.gz"
    target.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            parts = Path(member.name).parts
            if not parts or member.name.startswith("/") or ".." in parts:
                continue  # never outside target (our archives never hold such names)
            dest = target.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            with source, open(dest, "xb") as fh:
                shutil.copyfileobj(source, fh)
            os.utime(dest, (member.mtime, member.mtime))
            out.append(dest)
    return out


def convert(notebooks: list[Path], fmt: str) -> tuple[list[Path], list[str]]:
    """Each exported notebook as HTML or PDF beside it (system/pdf.py: Chromium as
    `nobody`); (what was written, why each other one was not)."""
    from wod_backend.errors import WodError
    from wod_backend.system import pdf

    made, failed = [], []
    nobody = _nobody()
    for nb in notebooks:
        out = nb.with_suffix("." + fmt)
        try:
            if fmt == "html":
                out.write_text(pdf.html(nb), encoding="utf-8")
            else:
                pdf.to_pdf(nb, out, user=nobody)
            made.append(out)
        except (WodError, ValueError, OSError) as exc:
            failed.append(f"{nb.name}: {getattr(exc, 'reason', None) or exc}"[:200])
    return made, failed


def _nobody() -> Optional[tuple[int, int]]:
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def restore(root: Path, ident: str, home: Path, uid: Optional[int], gid: Optional[int],
            day: str) -> tuple[str, int]:
    """The archive's regular files put back into the student's home as
    `restored-<day>/` (another name when that exists), owned by the student, through
    descriptors opened without following links (homes.SafeDir, as delivery writes): a
    member that is a link, a device, a fifo, absolute or with `..` is left out. Returns
    (the folder's name, the files restored)."""
    if "/" in ident or ident.startswith("."):
        raise ValueError(f"no backup {ident!r}")
    import tarfile

    from wod_backend.system.homes import SafeDir, open_home

    path = root / "archives" / f"{ident}.tar.gz"
    count = 0
    with tarfile.open(path, "r:gz") as tar, open_home(home, uid, gid) as home_dir:
        existing = set(home_dir.entries())
        folder = next(name for name in (f"restored-{day}", *(f"restored-{day}-{i}"
                                                               for i in range(2, 1000)))
                      if name not in existing)
        with home_dir.subdir(folder, 0o755) as dest:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or not parts or member.name.startswith("/") or \
                        any(p in ("..", ".", "") for p in parts):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source:
                    data = source.read(member.size + 1)[:member.size]
                opened: list[SafeDir] = []
                here = dest
                try:
                    for part in parts[:-1]:
                        here = here.subdir(part, 0o755)
                        opened.append(here)
                    here.write(parts[-1], data, 0o755 if member.mode & 0o111 else 0o644)
                finally:
                    for d in reversed(opened):
                        d.close()
                count += 1
    return folder, count


def prune(root: Path, keep_days: float, now: float) -> int:
    """Archives older than keep_days removed; how many."""
    removed = 0
    for rec in records(root):
        if now - rec.get("created", now) > keep_days * 86400:
            for suffix in (".tar.gz", ".json"):
                (root / "archives" / f"{rec['id']}{suffix}").unlink(missing_ok=True)
            removed += 1
    return removed
