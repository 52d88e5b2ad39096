"""The operators' commands: status, history, outbox, doctor, send-test, students,
config, workshops. Each calls one ops/ verb and prints its value."""

from __future__ import annotations

import sys
from typing import Optional

import click

from wod_backend.cli.app import Ctx, cli, emit, pass_ctx, students_range


@cli.command()
@click.argument("students", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Ctx, students: Optional[str], as_json: bool) -> None:
    """Per student: assigned or free, workshop, last order, reports pending, hub server."""
    from wod_backend.cli import render
    from wod_backend.ops import status as st

    import time

    from wod_backend.host.location import refusals
    from wod_backend.ops import bans

    rows = st.rows(ctx.cfg, students_range(ctx, students))
    emit([r.as_dict() for r in rows], as_json, render.status(
        rows, refusals(ctx.cfg), bans.current(ctx.cfg, time.time())))


@cli.command("report")
@click.option("--daily", is_flag=True, help="The daily report (once a day).")
@click.option("--dry-run", is_flag=True, help="Print the report that would be mailed.")
@pass_ctx
def report_cmd(ctx: Ctx, daily: bool, dry_run: bool) -> None:
    """Mail schedule.report the operator's report when the checks turn red, or daily
    (the schedule runs both); never twice for the same state."""
    from wod_backend.cli import render
    from wod_backend.host import report

    msg = report.report(ctx.cfg, daily=daily, dry_run=dry_run)
    subject = None if msg is None else msg["Subject"]
    click.echo(render.say("report_sent" if msg is not None and not dry_run else
                          "report_due" if msg is not None else "report_not_due",
                          subject=subject, to=ctx.cfg.schedule.report))
    if msg is not None and dry_run:
        click.echo(msg.get_content(), nl=False)


@cli.command("send-test")
@click.argument("action")
@click.argument("workshop")
@click.argument("students")
@click.option("--customer", default="0", show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the mails instead of sending them.")
@pass_ctx
def send_test(ctx: Ctx, action: str, workshop: str, students: str, customer: str,
              dry_run: bool) -> None:
    """Send order mails like the frontend's to mail.backend_address by SMTP."""
    from wod_backend.cli import render
    from wod_backend.intake import pipeline as intake
    from wod_backend.ops import sendtest

    cfg = ctx.cfg
    order = intake.order_from_args(cfg, action, workshop, students, customer)
    mails = sendtest.messages(cfg, order)
    if dry_run:
        click.echo(render.mails(mails))
        return
    count = sendtest.send(cfg, mails)
    click.echo(render.say("sent_test", count=count, to=cfg.mail.backend_address,
                          via=f"{cfg.mail.smtp_host}:{cfg.mail.smtp_port}"))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def doctor(ctx: Ctx, as_json: bool) -> None:
    """Check configuration, content, services, procmail, state and accounts."""
    from wod_backend.cli import render
    from wod_backend.host.doctor import run_checks

    checks = run_checks(ctx.cfg)
    emit([c.as_dict() for c in checks], as_json, "\n".join(render.check(c) for c in checks))
    sys.exit(1 if any(c.status == "FAIL" for c in checks) else 0)


@cli.group("students")
def students_group() -> None:
    """Student Linux accounts (root)."""


def _accounts(ctx: Ctx, verb: str, students: Optional[str], as_json: bool) -> None:
    from wod_backend.cli import render
    from wod_backend.system import accounts

    accounts.require_root(f"students {verb}")
    run = accounts.ensure if verb == "ensure" else accounts.remove
    report = run(ctx.cfg, students_range(ctx, students))
    emit(report.as_dict(), as_json, render.accounts(report))
    sys.exit(1 if report.conflicts else 0)


@students_group.command("ensure")
@click.argument("students", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def students_ensure(ctx: Ctx, students: Optional[str], as_json: bool) -> None:
    """Create the missing accounts of STUDENTS (default: the configured range)."""
    _accounts(ctx, "ensure", students, as_json)


@students_group.command("remove")
@click.argument("students")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def students_remove(ctx: Ctx, students: str, as_json: bool) -> None:
    """Remove the accounts and homes of STUDENTS."""
    _accounts(ctx, "remove", students, as_json)


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many orders.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history(ctx: Ctx, limit: int, as_json: bool) -> None:
    """The latest orders received, newest first."""
    from wod_backend.cli import render
    from wod_backend.ops import views

    entries = views.history(ctx.cfg, limit)
    emit([e.as_dict() for e in entries], as_json, render.history(entries))


# -- outbox -----------------------------------------------------------------------------

@cli.group("outbox")
def outbox_group() -> None:
    """Reports to the frontend and hub calls waiting to be sent."""


@outbox_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Sent and dead items too.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def outbox_list(ctx: Ctx, show_all: bool, limit: int, as_json: bool) -> None:
    """The queue, oldest first (passwords masked)."""
    from wod_backend.cli import render
    from wod_backend.ops import outbox_admin as outbox

    items = outbox.items(ctx.cfg, show_all, limit)
    emit(items, as_json, render.outbox(items))


@outbox_group.command("flush")
@click.option("--retry-dead", is_flag=True, help="Send refused (dead) items again too.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def outbox_flush(ctx: Ctx, retry_dead: bool, as_json: bool) -> None:
    """Send what is queued, in order per student and customer (run it from cron)."""
    from wod_backend.cli import render
    from wod_backend.ops import outbox_admin as outbox

    report = outbox.flush(ctx.cfg, retry_dead)
    emit(report.as_dict(), as_json, render.flushed(report))
    sys.exit(0 if not report.failed else 75)


@cli.group("hub")
def hub_group() -> None:
    """The managed JupyterHub (jupyterhub.manage: true), where systemd does not run it."""


@hub_group.command("run")
@pass_ctx
def hub_run(ctx: Ctx) -> None:
    """Start the hub in the background (pid file and log in jupyterhub.data_dir)."""
    from wod_backend.cli import render
    from wod_backend.host import managed_hub as hub

    click.echo(render.say("hub_running", pid=hub.start(ctx.cfg)))


@hub_group.command("stop")
@pass_ctx
def hub_stop(ctx: Ctx) -> None:
    """Stop the hub and its proxy."""
    from wod_backend.cli import render
    from wod_backend.host import managed_hub as hub

    click.echo(render.say("hub_stopped" if hub.stop(ctx.cfg) else "hub_not_running"))


@hub_group.command("status")
@pass_ctx
def hub_status(ctx: Ctx) -> None:
    """Whether the hub runs (exit 0) or not (exit 3)."""
    from wod_backend.host import managed_hub as hub

    status_exit(hub.pid(ctx.cfg), "jupyterhub running", "jupyterhub stopped")


def status_exit(pid: Optional[int], running: str, stopped: str) -> None:
    """A service's status line; exit 0 when it runs, 3 (LSB: not running) when not."""
    from wod_backend.cli import render

    click.echo(render.say("service_running", what=running, pid=pid) if pid else stopped)
    sys.exit(0 if pid else 3)


@cli.group("worker")
def worker_group() -> None:
    """The resident worker that runs order mails without a new process each."""


@worker_group.command("run")
@pass_ctx
def worker_run(ctx: Ctx) -> None:
    """Serve mails in the foreground (what the systemd service runs)."""
    from wod_backend.errors import UsageError
    from wod_backend.worker import server

    if ctx.runner is None:
        raise UsageError("worker run: only from the wod-backend command")
    sys.exit(server.serve(ctx.cfg, ctx.runner))


@worker_group.command("start")
@pass_ctx
def worker_start(ctx: Ctx) -> None:
    """Start the worker in the background, unless it runs."""
    from wod_backend.cli import render
    from wod_backend.worker import service as worker

    click.echo(render.say("worker_running", pid=worker.start(ctx.cfg)))


@worker_group.command("stop")
@pass_ctx
def worker_stop(ctx: Ctx) -> None:
    """Stop it: mails then run in their own processes again."""
    from wod_backend.cli import render
    from wod_backend.worker import service as worker

    click.echo(render.say("worker_stopped" if worker.stop(ctx.cfg) else "worker_not_running"))


@worker_group.command("status")
@pass_ctx
def worker_status(ctx: Ctx) -> None:
    """Whether the worker runs (exit 0) or not (exit 3)."""
    from wod_backend.worker import service as worker

    status_exit(worker.running(ctx.cfg), "worker running", "worker not running")
