"""Real accounts for the tests that run as root: the shipped sudo rule, student cleanup."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from support.cli import REPO, invoke

BIN = Path(sys.executable).parent


def shadow_hash(user: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, hashed = line.split(":")[:2]
        if name == user:
            return hashed
    raise KeyError(user)


def password_works(user: str, password: str) -> bool:
    """What PAM's pam_unix does: crypt the password with the stored hash's salt."""
    from passlib.hash import sha512_crypt

    hashed = shadow_hash(user)
    return hashed.startswith("$6$") and sha512_crypt.verify(password, hashed)


def install_sudo_rule(path: Path, config: Path, user: str) -> Path:
    """The rule `setup` installs (scripts/sudoers.example for this user, helper and
    configuration, checked by visudo), at a test's own path."""
    from wod_backend import config as configmod
    from wod_backend.host.hostconf import sudoers_rule

    path.write_bytes(sudoers_rule(configmod.load(str(config), host=False), user))
    path.chmod(0o440)
    return path


def remove_students(config: Path, low: int, high: int) -> None:
    """`students remove`, then whatever a failed test left behind."""
    if config.exists():
        invoke(["--config", str(config), "students", "remove", f"{low}-{high}"])
    for n in range(low, high + 1):
        subprocess.run(["userdel", f"student{n}"], capture_output=True)
        subprocess.run(["groupdel", f"student{n}"], capture_output=True)


@contextmanager
def students_config(tmp_path: Path, low: int, high: int, uid_base: int,
                    extra: str = "") -> Iterator[tuple[Path, Path]]:
    """(config, homes) for real students low..high, homes under a root-owned folder of
    /var/tmp (tmp_path's parents are not traversable by students); all removed after."""
    homes = Path(tempfile.mkdtemp(prefix="wod-homes-", dir="/var/tmp"))
    homes.chmod(0o755)
    path = tmp_path / "config.yml"
    path.write_text(f"""
students: {{min: {low}, max: {high}, uid_base: {uid_base}, home_root: {homes},
           kill_grace_seconds: 1}}
content: {{public: {REPO}/workshops-public}}
state_dir: {tmp_path}/state
backups: {{dir: {tmp_path}/backups}}
{extra}""")
    try:
        yield path, homes
    finally:
        remove_students(path, low, high)
        shutil.rmtree(homes, ignore_errors=True)


def state_dir(root: Path, user: str) -> Path:
    """root/state: the backend user's own 0700 folder, as setup makes state_dir."""
    state = root / "state"
    state.mkdir(mode=0o700)
    pw = pwd.getpwnam(user)
    os.chown(state, pw.pw_uid, pw.pw_gid)
    return state


@contextmanager
def backend_user(user: str, prefix: str) -> Iterator[Path]:
    """A backend user (no home) and a root-owned 0755 folder of /var/tmp for its site;
    both removed afterwards, with whatever the user still runs."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    root.chmod(0o755)
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
    try:
        yield root
    finally:
        subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
