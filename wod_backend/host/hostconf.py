"""The files and settings `setup` owns on a backend host, each compared before written.

Every `ensure_*` returns the changes it found (and made, unless `apply` is false), so
that `setup --check` and `setup` share one code path. Plain idempotent Python steps,
not shipped playbooks: each is a few lines of file and account work that must run before
Ansible could (the backend user, the sudo rule), a second run must say "nothing to do",
and an Ansible run would add 1-2 s and a second way of reporting changes.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.host.shipped import shipped_root
from wod_backend.privileged.client import helper_path
from wod_backend.system.run import run


@dataclass(frozen=True)
class Change:
    what: str
    detail: str


Owner = Optional[tuple[int, int]]


def ensure_file(path: Path, content: bytes, mode: int, owner: Owner, what: str,
                apply: bool) -> list[Change]:
    """`path` with exactly this content, mode and owner (written atomically)."""
    uid, gid = owner if owner is not None else (0, 0)
    try:
        st = os.lstat(path)
        same = (stat.S_ISREG(st.st_mode) and path.read_bytes() == content
                and stat.S_IMODE(st.st_mode) == mode and (st.st_uid, st.st_gid) == (uid, gid))
    except FileNotFoundError:
        same = False
    if same:
        return []
    if apply:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.write(fd, content)
            os.fchmod(fd, mode)
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return [Change(what, f"{path} (mode {mode:04o})")]


def ensure_mode(path: Path, mode: int, owner: Owner, what: str, apply: bool) -> list[Change]:
    """An existing file or directory's mode and owner (not followed if a link)."""
    uid, gid = owner if owner is not None else (0, 0)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{path} is a link: {what} must be a real file")
    if stat.S_IMODE(st.st_mode) == mode and (st.st_uid, st.st_gid) == (uid, gid):
        return []
    if apply:
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode)
    return [Change(what, f"{path}: mode {mode:04o}, owner uid {uid}")]


def ensure_dir(path: Path, mode: int, owner: Owner, what: str, apply: bool) -> list[Change]:
    if not path.exists():
        if apply:
            path.mkdir(parents=True, mode=mode)
            uid, gid = owner if owner is not None else (0, 0)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return [Change(what, f"{path} created (mode {mode:04o})")]
    return ensure_mode(path, mode, owner, what, apply)


def bin_dir() -> Path:
    """Where this installation's programs are (the venv's bin)."""
    return Path(sys.executable).parent


def sudoers_rule(cfg: Config, user: str) -> bytes:
    """The shipped rule, for this user, helper and configuration; checked by visudo."""
    text = (shipped_root() / "scripts" / "sudoers.example").read_text()
    assert cfg.path is not None
    text = text.replace("/etc/wod-backend/config.yml", str(cfg.path.resolve()))
    # The helper the backend will run (privileged.helper, else the venv's).
    text = text.replace("/opt/wod-backend/venv/bin/wod-backend-priv", helper_path(cfg))
    text = text.replace(":wod ", f":{user} ").replace("\nwod ALL", f"\n{user} ALL")
    with tempfile.NamedTemporaryFile("w", suffix=".sudoers") as fh:
        fh.write(text)
        fh.flush()
        check = run(["visudo", "-cf", fh.name], timeout=30)
    if not check.ok:
        raise ConfigError(f"the sudoers rule would not pass visudo: {check.tail(3, 300)}")
    return text.encode()


def procmail_recipe(cfg: Config) -> bytes:
    text = (shipped_root() / "procmailrc.example").read_text()
    assert cfg.path is not None
    text = text.replace("WOD_BACKEND=/opt/wod-backend/venv/bin/wod-backend",
                        f"WOD_BACKEND={bin_dir() / 'wod-backend'}")
    text = text.replace("WOD_CONFIG=/etc/wod-backend/config.yml",
                        f"WOD_CONFIG={cfg.path.resolve()}")
    return text.encode()


def backend_user(cfg: Config) -> Optional[pwd.struct_passwd]:
    try:
        return pwd.getpwnam(cfg.mail.backend_user)
    except KeyError:
        return None


def ensure_backend_user(cfg: Config, apply: bool) -> list[Change]:
    """A system account (uid below 1000: never a student's uid_base + N)."""
    pw = backend_user(cfg)
    s = cfg.students
    if pw is not None:
        if s.uid_base + s.min <= pw.pw_uid <= s.uid_base + s.max:
            raise ConfigError(f"config key mail.backend_user: {pw.pw_name} has uid "
                              f"{pw.pw_uid}, a student's uid")
        return []
    if apply:
        made = run(["useradd", "--system", "--home-dir", str(cfg.setup.backend_home),
                    "--create-home", "--shell", "/bin/sh", cfg.mail.backend_user], timeout=60)
        if not made.ok:
            raise ConfigError(f"useradd {cfg.mail.backend_user}: {made.tail(3, 200)}")
    return [Change("backend user", f"{cfg.mail.backend_user} (system account, home "
                                   f"{cfg.setup.backend_home})")]
