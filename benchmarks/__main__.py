"""Run the benchmarks: `python -m benchmarks [--repeat N] [--only CASES] [--out FILE]`.

Sets up what it needs on loopback (the frontend contract server, JupyterHub with the
mocksu single-user stand-in, slapd, postfix + procmail), runs each case several
times, prints median / min / max beside the targets, writes a JSON record and a
cProfile of a 100-student batch. Needs root: real accounts, real postfix.

--only takes groups (startup, accounts, create, growth, journal, single, burst, reset,
sweep, backup, first_cell, create_appliance)
or the issue's case ids (time_to_password, create_total, server_ready, cleanup_total,
burst_50, burst_200, reset_1000, reset_10000). reset_10000 makes 10,000 accounts
(minutes to create and remove): only when asked for by name.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from benchmarks import appliances, cases, journal, lifecycle, location, production
from benchmarks.harness import REPO, Report

ALL = ("startup", "accounts", "create", "growth", "journal", "single", "cleanup",
       "parallel", "root_side", "order_programs", "burst", "reset",
       "sweep", "backup", "first_cell", "create_appliance")
PRODUCTION = {"single", "burst", "reset", "cleanup", "parallel", "root_side",
              "order_programs", "cleanup_report",
              "cleanup_whole", "parallel5_password", "time_to_password", "create_total",
              "server_ready", "cleanup_total", "burst_50", "burst_200", "reset_1000",
              "reset_10000"}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "latest.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("benchmarks need root (real accounts, postfix)", file=sys.stderr)
        return 77
    only = set(args.only.split(","))
    report = Report()
    print(f"machine: {report.machine()}")

    def guarded(name: str, fn, *a) -> object:  # type: ignore[no-untyped-def]
        try:
            return fn(*a)
        except Exception:
            print(f"  !! case {name} failed:\n{traceback.format_exc()}", flush=True)
            return None

    if "startup" in only:
        guarded("startup", cases.startup, report, args.repeat * 2)
    profile = None
    if only & {"accounts", "create", "growth"}:
        with cases.bench_site(report) as site:
            try:
                guarded("accounts", cases.accounts_ensure, report, site)
                if "create" in only:
                    guarded("create", cases.create_latency, report, site, args.repeat)
                if "growth" in only:
                    guarded("growth", cases.growth, report, site, args.repeat)
                    profile = guarded("profile", cases.profile_batch, report, site)
            finally:
                guarded("remove", cases.accounts_remove, report, site)
    if "journal" in only:
        guarded("journal", journal.journal_growth, report, args.repeat * 2)
    if only & {"sweep", "sweep_200"}:
        guarded("sweep", lifecycle.sweep_200, report, args.repeat)
    if only & {"backup", "cleanup_backup"}:
        guarded("backup", lifecycle.cleanup_backup, report, args.repeat)
    if "first_cell" in only:
        guarded("first_cell", location.first_cell, report, args.repeat)
    if "create_appliance" in only:
        guarded("create_appliance", appliances.create_appliance, report, args.repeat)
    if only & PRODUCTION:
        guarded("production", production.run, report, args.repeat, only)
    if profile:
        print("\nwhere the time of a 100-student RESET goes (cProfile, cumulative):")
        print(profile)
    report.save(__import__("pathlib").Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
