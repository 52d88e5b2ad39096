"""The command line: parse options, call one verb, print its result. Nothing else.

Every error becomes one line on stderr and a sysexits code here, in `main`, and only
here. Heavy modules are imported inside the commands that need them: procmail starts
one process per mail, so start-up time matters.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Optional

import click

from wod_backend import __version__
from wod_backend.errors import (EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE, SwitchUser, UsageError,
                                WodError)

log = logging.getLogger(__name__)


class Ctx:
    """What every command shares: where the configuration is, loaded once on demand."""

    def __init__(self, config_path: Optional[str], verbose: int):
        self.config_path = config_path
        self.verbose = verbose
        self._cfg = None

    @property
    def cfg(self):  # type: ignore[no-untyped-def]
        if self._cfg is None:
            from wod_backend import config
            from wod_backend.cli import switchuser
            from wod_backend.logs import log_to_state_dir

            cfg = config.load(self.config_path)
            command = tuple(click.get_current_context().command_path.split()[1:])
            # Root hands the command to state_dir's owner before touching state_dir.
            switchuser.check(cfg, command)
            if os.geteuid() != 0 or switchuser.state_owner(cfg) is None:
                log_to_state_dir(cfg.state_dir)
            self._cfg = cfg
        return self._cfg


pass_ctx = click.make_pass_decorator(Ctx)


def emit(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wod-backend")
@click.option("--config", "config_path", metavar="FILE", envvar="WOD_BACKEND_CONFIG",
              help="Configuration file (default: $WOD_BACKEND_CONFIG, "
                   "then /etc/wod-backend/config.yml).")
@click.option("-v", "--verbose", count=True, help="More log lines on stderr.")
@click.pass_context
def cli(ctx: click.Context, config_path: Optional[str], verbose: int) -> None:
    """Backend of a Workshops-on-Demand platform: turns orders into ready students."""
    from wod_backend.logs import log_to_stderr

    log_to_stderr(verbose)
    ctx.obj = Ctx(config_path, verbose)


# -- orders -----------------------------------------------------------------------------

@cli.command()
@click.option("--dry-run", is_flag=True, help="Parse, validate and print the plan only.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@pass_ctx
def mail(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    """Run the order in one mail read on stdin (as procmail pipes it)."""
    from wod_backend.intake import pipeline as intake

    result = intake.from_mail(ctx.cfg, sys.stdin.buffer, dry_run=dry_run)
    emit(result.as_dict(), as_json, result.text())
    sys.exit(result.exit_code)


def _order_command(action: str):  # type: ignore[no-untyped-def]
    @click.argument("workshop")
    @click.argument("students")
    @click.option("--customer", default="0", show_default=True,
                  help="Frontend customer id (admin orders use 0).")
    @click.option("--dry-run", is_flag=True, help="Validate and print the plan only.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
    @pass_ctx
    def command(ctx: Ctx, workshop: str, students: str, customer: str, dry_run: bool,
                as_json: bool) -> None:
        from wod_backend.intake import pipeline as intake

        result = intake.from_cli(ctx.cfg, action, workshop, students, customer,
                                 dry_run=dry_run)
        emit(result.as_dict(), as_json, result.text())
        sys.exit(result.exit_code)

    command.__doc__ = (f"{action} for STUDENTS (N, N-M or N,M) of WORKSHOP "
                       f"(WKSHP-X or CHLG-X).")
    return cli.command(action.lower())(command)


for _action in ("CREATE", "CLEANUP", "RESET", "PURGE"):
    _order_command(_action)


@cli.command()
@click.argument("order_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@pass_ctx
def retry(ctx: Ctx, order_id: int, yes: bool, as_json: bool) -> None:
    """Run journaled order ORDER_ID again (once its cause is fixed).

    It shows the order as parsed from the stored mail (what will run, whatever the
    journal's summary says) and asks on a terminal; --yes skips the question."""
    from wod_backend.intake import pipeline as intake

    what = intake.retry_preview(ctx.cfg, order_id)
    click.echo(f"order {order_id} will run: {what}", err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("retry: not on a terminal; confirm with --yes")
        if not click.confirm("run it?", err=True):
            raise UsageError("retry: not confirmed")
    result = intake.retry(ctx.cfg, order_id)
    emit(result.as_dict(), as_json, result.text())
    sys.exit(result.exit_code)


def _range(ctx: Ctx, students: Optional[str]) -> tuple[int, ...]:
    from wod_backend.order import parse_students

    cfg = ctx.cfg
    if not students:
        return tuple(range(cfg.students.min, cfg.students.max + 1))
    return parse_students(students, cfg.students.min, cfg.students.max)[0]


@cli.command()
@click.argument("students", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Ctx, students: Optional[str], as_json: bool) -> None:
    """Per student: assigned or free, workshop, last order, reports pending, hub server."""
    from wod_backend.ops import status as st

    rows = st.rows(ctx.cfg, _range(ctx, students))
    emit(rows, as_json, st.table(rows))


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
    from wod_backend.intake import pipeline as intake
    from wod_backend.ops import sendtest

    cfg = ctx.cfg
    order = intake.order_from_args(cfg, action, workshop, students, customer)
    mails = sendtest.messages(cfg, order)
    if dry_run:
        click.echo("\n".join(m.decode() for m in mails))
        return
    count = sendtest.send(cfg, mails)
    click.echo(f"sent {count} mail(s) to {cfg.mail.backend_address} via "
               f"{cfg.mail.smtp_host}:{cfg.mail.smtp_port}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def doctor(ctx: Ctx, as_json: bool) -> None:
    """Check configuration, content, services, procmail, state and accounts."""
    from wod_backend.ops.doctor import run_checks

    checks = run_checks(ctx.cfg)
    emit([c.as_dict() for c in checks], as_json, "\n".join(str(c) for c in checks))
    sys.exit(1 if any(c.status == "FAIL" for c in checks) else 0)


@cli.group("students")
def students_group() -> None:
    """Student Linux accounts (root)."""


def _accounts(ctx: Ctx, verb: str, students: Optional[str], as_json: bool) -> None:
    from wod_backend.system import accounts

    accounts.require_root(f"students {verb}")
    run = accounts.ensure if verb == "ensure" else accounts.remove
    report = run(ctx.cfg, _range(ctx, students))
    counts = ", ".join(f"{k} {len(v)}" for k, v in report.as_dict().items()
                       if k != "conflicts" and v)
    emit(report.as_dict(), as_json, f"{counts or 'nothing to do'}, conflicts "
         f"{len(report.conflicts)}" + "".join(f"\n  {c}" for c in report.conflicts))
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
    from wod_backend.ops import reports

    entries = reports.history(ctx.cfg, limit)
    emit([e.as_dict() for e in entries], as_json, reports.history_text(entries))


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
    from wod_backend.ops import reports

    items = reports.outbox_items(ctx.cfg, show_all, limit)
    emit(items, as_json, reports.outbox_table(items))


@outbox_group.command("flush")
@click.option("--retry-dead", is_flag=True, help="Send refused (dead) items again too.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def outbox_flush(ctx: Ctx, retry_dead: bool, as_json: bool) -> None:
    """Send what is queued, in order per student and customer (run it from cron)."""
    from wod_backend.ops import reports

    report = reports.flush_outbox(ctx.cfg, retry_dead)
    emit(report.as_dict(), as_json, f"sent {len(report.sent)}, still queued "
         f"{len(report.failed)} key(s), refused {len(report.dead)}")
    sys.exit(0 if not report.failed else 75)


# -- configuration ----------------------------------------------------------------------

@cli.group("config")
def config_group() -> None:
    """Write or check the configuration."""


@config_group.command("init")
@click.option("--demo", "demo_dir", metavar="DIR", required=True,
              help="Write a self-contained demo configuration rooted in DIR.")
def config_init(demo_dir: str) -> None:
    """Write a complete configuration that needs no root and no server."""
    from wod_backend.ops import demo

    path = demo.write_demo_config(demo_dir)
    click.echo(f"wrote {path}\ntry: wod-backend --config {path} create WKSHP-Python101 1")


@config_group.command("check")
@pass_ctx
def config_check(ctx: Ctx) -> None:
    """Load and validate the configuration."""
    cfg = ctx.cfg
    click.echo(f"{cfg.path}: valid")


# -- workshops --------------------------------------------------------------------------

@cli.group("workshops")
def workshops_group() -> None:
    """The workshop catalog."""


@workshops_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def workshops_list(ctx: Ctx, as_json: bool) -> None:
    """Workshops of the public and private content roots (public wins)."""
    from wod_backend.ops import reports

    rows = reports.workshop_rows(ctx.cfg)
    emit(rows, as_json, reports.workshop_table(rows))


@workshops_group.command("check")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def workshops_check(ctx: Ctx, name: Optional[str], as_json: bool) -> None:
    """Find content defects before a participant does; exit 1 if any."""
    from wod_backend.ops import contentcheck

    problems = contentcheck.check(ctx.cfg, name)
    emit([p.as_dict() for p in problems], as_json,
         "\n".join(str(p) for p in problems) or "no problems found")
    sys.exit(1 if any(p.severity == "error" for p in problems) else 0)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the CLI and map every failure to one line and a sysexits code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="wod-backend", standalone_mode=False)
    except SwitchUser as switch:
        from wod_backend.cli.switchuser import run_as

        sys.exit(run_as(switch, args))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("wod-backend: aborted", err=True)
        sys.exit(EX_USAGE)
    except click.ClickException as exc:
        click.echo(f"wod-backend: usage: {exc.format_message()}", err=True)
        sys.exit(EX_USAGE)
    except WodError as exc:
        click.echo(f"wod-backend: {exc.reason}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except (OSError, MemoryError) as exc:
        # The state directory (journal, outbox, locks, log) full, gone or unusable, or
        # the machine short of something: temporary, so that postfix keeps the mail.
        log.error("temporary failure", exc_info=True)
        click.echo(f"wod-backend: temporary failure: {type(exc).__name__}: "
                   f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}",
                   err=True)
        sys.exit(EX_TEMPFAIL)
    except BaseException as exc:  # the one place that turns a bug into exit 70
        if type(exc).__module__ == "sqlite3":  # the journal's database: full, locked
            log.error("temporary failure", exc_info=True)
            click.echo(f"wod-backend: temporary failure: state database: {exc}", err=True)
            sys.exit(EX_TEMPFAIL)
        log.critical("internal error", exc_info=True)
        click.echo(f"wod-backend: internal error: {type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:200] if str(exc) else ''} "
                   f"(traceback in the log)", err=True)
        sys.exit(EX_SOFTWARE)
