"""Real accounts for the tests that run as root: the shipped sudo rule, student cleanup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    """scripts/sudoers.example with only its paths and user changed, checked by visudo."""
    rule = (REPO / "scripts" / "sudoers.example").read_text()
    rule = rule.replace("/etc/wod-backend/config.yml", str(config))
    rule = rule.replace("/opt/wod-backend/venv/bin", str(BIN))
    rule = rule.replace(":wod ", f":{user} ").replace("\nwod ALL", f"\n{user} ALL")
    path.write_text(rule)
    path.chmod(0o440)
    subprocess.run(["visudo", "-cf", str(path)], check=True, capture_output=True)
    return path


def remove_students(config: Path, low: int, high: int) -> None:
    """`students remove`, then whatever a failed test left behind."""
    if config.exists():
        invoke(["--config", str(config), "students", "remove", f"{low}-{high}"])
    for n in range(low, high + 1):
        subprocess.run(["userdel", f"student{n}"], capture_output=True)
        subprocess.run(["groupdel", f"student{n}"], capture_output=True)
