"""Real accounts for the tests that run as root: the shipped sudo rule, student cleanup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.cli import REPO, invoke

BIN = Path(sys.executable).parent


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
