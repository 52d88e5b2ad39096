"""The students' lifecycle enforced by the backend: sweep, expire, reconcile (the
schedule runs the first two every minute). Each calls one ops/ verb and prints it."""

from __future__ import annotations

import sys
from typing import Optional

import click

from wod_backend.cli.app import Ctx, cli, emit, pass_ctx, students_range


@cli.command()
@click.option("--dry-run", is_flag=True, help="Say what would be ended; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def sweep(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    """End students' abuse now: miners by name, processes over the CPU budget."""
    from wod_backend.cli import render
    from wod_backend.lifecycle import sweep as sw

    report = sw.sweep(ctx.cfg, dry_run=dry_run)
    data = {"processes": report.processes, "students": report.students,
            "seconds": report.seconds,
            "offences": [{"student": o.proc.student, "pid": o.proc.pid, "why": o.why,
                          "command": o.proc.command, "cpu_seconds": o.proc.cpu}
                         for o in report.offences],
            "evicted": report.evicted, "confined": report.confined, "disk": report.disk}
    emit(data, as_json, render.sweep(report))


@cli.command()
@click.option("--dry-run", is_flag=True, help="List who is due; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def expire(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    """CLEANUP the students past their workshop's duration plus students.expiry_grace."""
    from wod_backend.cli import render
    from wod_backend.lifecycle import expire as ex

    if ctx.cfg.students.expiry_grace is None:
        emit([], as_json, render.say("no_expiry"))
        return
    done = ex.expire(ctx.cfg, dry_run=dry_run)
    emit([x.__dict__ for x in done], as_json, render.expired(done))


@cli.command()
@click.argument("students", required=False)
@click.option("--fix", is_flag=True, help="Apply the backend's side of each finding.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def reconcile(ctx: Ctx, students: Optional[str], fix: bool, as_json: bool) -> None:
    """Compare journal, accounts, hub, outbox and frontend per student; exit 1 while
    anything disagrees (after --fix: anything it could not fix)."""
    from wod_backend.cli import render
    from wod_backend.lifecycle import reconcile as rc

    findings = rc.find(ctx.cfg, list(students_range(ctx, students)))
    if fix:
        rc.fix(ctx.cfg, findings)
    emit([f.as_dict() for f in findings], as_json, render.findings(findings))
    left = [f for f in findings if f.fixed != "done"]
    sys.exit(1 if left else 0)
