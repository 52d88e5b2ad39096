"""The CLI for tests and benchmarks: in-process (the real entry point) and as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from wod_backend.cli.main import main

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "tests" / "data"
WOD = str(Path(sys.executable).parent / "wod-backend")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def invoke(args: list[str], input: bytes | str | None = None,
           env: dict | None = None) -> CliResult:
    """The real CLI entry point, in-process: exit code, stdout, stderr."""
    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _mixed):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


def run_wod(args: list[str], input: bytes | None = None, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed `wod-backend` as a real process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([WOD, *args], input=input, capture_output=True, env=full_env,
                          timeout=timeout)
