"""The caller's side of the sudo helper: groups of root steps, one sudo run each.

The backend user (procmail's) runs unprivileged; the steps that need root on a student
(StepKind specs with root=True) go through `sudo -n wod-backend-priv`, allowed by one
sudoers rule that pins the program and the configuration (scripts/sudoers.example).
The request travels on stdin (the password never touches argv); only what the frontend
may narrow travels with it: root takes everything else that steers it (range,
appliances, what to compile) from wod.yml itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from wod_backend.config import Config
from wod_backend.errors import EX_SOFTWARE, StepFailed, WodError
from wod_backend.planning.steps import StepKind
from wod_backend.system.run import run
from wod_backend.system.student import Student


def use_sudo(cfg: Config) -> bool:
    """auto: in-process when running as root (or without accounts), else through sudo."""
    mode = cfg.privileged.mode
    if mode == "auto":
        return os.geteuid() != 0 and cfg.students.manage_accounts
    return mode == "sudo"


def helper_path(cfg: Config) -> str:
    return str(cfg.privileged.helper or Path(sys.executable).parent / "wod-backend-priv")


class SudoSystem:
    """Runs groups of root steps through `sudo -n wod-backend-priv`."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def run(self, st: Student, kinds: list[StepKind], compile_names: tuple[str, ...],
            log: Callable[[str], None]) -> dict[str, Any]:
        request = {"action": st.action, "student": st.number, "workshop": st.workshop,
                   "customer": st.customer, "password": st.password,
                   "steps": [k.value for k in kinds], "compile": list(compile_names)}
        argv = ["sudo", "-n", helper_path(self.cfg), "--config", str(self.cfg.path)]
        result = run(argv, input=json.dumps(request).encode(),
                     timeout=self.cfg.privileged.timeout)
        try:
            answer = json.loads(result.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StepFailed(f"privileged helper {result.describe()}: {result.tail(3)}")
        for line in answer.get("log", []):
            log(str(line))
        if not answer.get("ok"):
            error = WodError(str(answer.get("error", "privileged helper failed")))
            error.exit_code = int(answer.get("exit_code", EX_SOFTWARE))
            raise error
        results = answer.get("results", {})
        return results if isinstance(results, dict) else {}
