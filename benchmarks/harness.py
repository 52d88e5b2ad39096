"""Timing, summary tables and the JSON record of a benchmark run. Figures only: no
benchmark asserts anything, targets are printed beside the figures."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the loopback servers of tests/support


@dataclass
class Row:
    case: str
    unit: str
    samples: list[float]
    target: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(median=self.median, min=min(self.samples, default=None),
                 max=max(self.samples, default=None), n=len(self.samples))
        return d


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.started = time.time()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(self.line(row), flush=True)
        return row

    @staticmethod
    def line(r: Row) -> str:
        if not r.samples:
            return f"  {r.case:58} {'-':>9} {'-':>9} {'-':>9} {r.unit:5} {r.target:14} {r.note}"
        return (f"  {r.case:58} {r.median:9.3f} {min(r.samples):9.3f} {max(r.samples):9.3f} "
                f"{r.unit:5} {r.target:14} {r.note}")

    def header(self, title: str) -> None:
        print(f"\n{title}\n  {'case':58} {'median':>9} {'min':>9} {'max':>9} {'unit':5} "
              f"{'target':14} note", flush=True)

    def machine(self) -> dict:
        cpu = ""
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in
                       Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
                "python": platform.python_version(), "kernel": platform.release(),
                "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": self.machine(),
                                    "rows": [r.as_dict() for r in self.rows]}, indent=1))
        print(f"\nwrote {path}")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def repeat(fn: Callable[[int], object], times: int) -> list[float]:
    out = []
    for i in range(times):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def wod(args: list[str], input: Optional[bytes] = None, check: bool = True
        ) -> subprocess.CompletedProcess:
    p = subprocess.run([str(Path(sys.executable).parent / "wod-backend"), *args],
                       input=input, capture_output=True, timeout=1800)
    if check and p.returncode != 0:
        raise RuntimeError(f"wod-backend {' '.join(args)}: exit {p.returncode}: "
                           f"{p.stderr.decode()[-500:]} {p.stdout.decode()[-500:]}")
    return p


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else float("nan")
