"""The sweep's disk budget (`students.limits.disk_mb`): root measures the homes and
warns a student over the budget in their home at once (system/disk.py); a student
still over at the next sweep is evicted as a miner is (EVICT: the hub server stopped, a
new password, the processes ended, the home kept for the archive until the CLEANUP).
Who was over at the last sweep is kept in `state_dir/disk.json`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from wod_backend.config import Config

STATE = "disk.json"


def _load(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def measure(cfg: Config, numbers: list[int]) -> dict[int, dict]:
    """Root's measure of each student's home (through the sudo helper when we are not root)."""
    from wod_backend.privileged.request import MAX_BATCH, DiskRequest
    from wod_backend.privileged.root_side import root_side

    out: dict[int, dict] = {}
    side = root_side(cfg)
    try:
        for i in range(0, len(numbers), MAX_BATCH):
            answer = side.ask(DiskRequest(tuple(numbers[i:i + MAX_BATCH]))).raise_for_error()
            out.update({int(n): v for n, v in answer.results.get("disk", {}).items()})
    finally:
        side.close()
    return out


def check(cfg: Config, evict: Callable[[Config, int, list[str]], str]) -> dict[int, str]:
    """Warn or evict (the sweep's `evict`) the students over the budget; what was done,
    by student."""
    budget = cfg.students.limits.disk_mb
    if budget is None:
        return {}
    numbers = [n for n in range(cfg.students.min, cfg.students.max + 1)]
    measured = measure(cfg, numbers)
    path = cfg.state_dir / STATE
    over_before = _load(path)
    now_over: dict[str, float] = {}
    done = {}
    for n, m in sorted(measured.items()):
        if not m.get("over"):
            continue
        size = f"{m['mb']:.0f} MB{' or more' if m.get('bounded') else ''}"
        if str(n) in over_before:
            done[n] = "evicted: " + evict(cfg, n, [
                f"disk: the home uses {size}, over the budget of {budget} MB since the "
                f"last sweep (warned by {cfg.students.home_root}/student{n}/"
                f"DISK-BUDGET-WARNING.txt)"])
        else:
            now_over[str(n)] = time.time()
            done[n] = f"warned: {size} over the budget of {budget} MB"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(now_over))
    os.replace(tmp, path)
    return done
