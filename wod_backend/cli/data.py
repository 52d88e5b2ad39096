"""The operator's data: backups of students' work, retention, metrics, content updates.
Each command calls one ops/ or system/ verb and prints it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import click

from wod_backend.cli.app import Ctx, cli, emit, pass_ctx, students_range
from wod_backend.errors import ConfigError, UsageError


@cli.group("backups")
def backups_group() -> None:
    """Students' work archived before CLEANUP, RESET or PURGE wiped it (root)."""


def _backups_dir(ctx: Ctx) -> Path:
    where = ctx.cfg.backups.dir
    if where is None:
        raise ConfigError("backups.dir is not set: no backups are kept")
    return where


@backups_group.command("list")
@click.argument("students", required=False)
@click.option("--customer", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def backups_list(ctx: Ctx, students: Optional[str], customer: Optional[str],
                 as_json: bool) -> None:
    """The archives, newest first."""
    from wod_backend.cli import render
    from wod_backend.system import backups

    wanted = set(students_range(ctx, students)) if students else None
    rows = [r for r in backups.records(_backups_dir(ctx))
            if (wanted is None or r.get("student") in wanted)
            and (customer is None or str(r.get("customer")) == customer)]
    emit(rows, as_json, render.backups(rows))


@backups_group.command("export")
@click.argument("ident", metavar="ID")
@click.argument("target", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["ipynb", "html", "pdf"]),
              default="ipynb", show_default=True,
              help="The archive's files as they were (ipynb), plus each notebook as "
                   "HTML or as PDF beside it.")
@pass_ctx
def backups_export(ctx: Ctx, ident: str, target: Path, fmt: str) -> None:
    """The archive's files as they were into DIR; with --format html or pdf, each
    notebook also as a page or a PDF a person can open (root)."""
    from wod_backend.cli import render
    from wod_backend.system import backups

    try:
        files = backups.export(_backups_dir(ctx), ident, target)
    except (OSError, ValueError) as exc:
        raise UsageError(f"no backup {ident}: {exc}")
    click.echo(render.say("exported", count=len(files), target=target))
    notebooks = [f for f in files if f.suffix == ".ipynb"]
    if fmt == "ipynb" or not notebooks:
        return
    made, failed = backups.convert(notebooks, fmt)
    click.echo(render.say("converted", count=len(made), fmt=fmt.upper()))
    for why in failed:
        click.echo(render.say("convert_failed", why=why))
    if failed:
        sys.exit(1)


@backups_group.command("restore")
@click.argument("ident", metavar="ID")
@click.argument("student")
@pass_ctx
def backups_restore(ctx: Ctx, ident: str, student: str) -> None:
    """Put an archive's work back into STUDENT's home as restored-<date>/ (root): a
    participant whose seat expired mid-event comes back."""
    import time

    from wod_backend.cli import render
    from wod_backend.order import Seat, parse_students
    from wod_backend.system import accounts, backups

    if ctx.cfg.students.manage_accounts:
        accounts.require_root("backups restore")
    numbers, is_range = parse_students(student, ctx.cfg.students.min, ctx.cfg.students.max)
    if is_range:
        raise UsageError("backups restore: one student")
    uid, gid = accounts.account_ids(ctx.cfg, numbers[0]) \
        if ctx.cfg.students.manage_accounts else (None, None)
    try:
        folder, count = backups.restore(_backups_dir(ctx), ident,
                                        Seat.of(ctx.cfg.students, numbers[0]).home, uid, gid,
                                        time.strftime("%Y%m%d"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"no backup {ident}: {exc}")
    click.echo(render.say("restored", count=count, folder=folder))


@backups_group.command("prune")
@pass_ctx
def backups_prune(ctx: Ctx) -> None:
    """Remove archives older than backups.keep_days (the schedule runs it hourly)."""
    from wod_backend.cli import render
    from wod_backend.system import backups

    removed = backups.prune(_backups_dir(ctx), ctx.cfg.backups.keep_days, time.time())
    click.echo(render.say("pruned", count=removed, days=ctx.cfg.backups.keep_days))


@cli.command()
@click.option("--textfile", "directory", metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Write DIR/wod_backend.prom atomically (node_exporter's textfile "
                   "collector) instead of printing.")
@pass_ctx
def metrics(ctx: Ctx, directory: Optional[Path]) -> None:
    """The backend's figures in Prometheus' text format."""
    from wod_backend.ops import metrics as m

    if directory is None:
        click.echo(m.collect(ctx.cfg, time.time()), nl=False)
    else:
        m.write_textfile(ctx.cfg, directory)


@cli.group("journal")
def journal_group() -> None:
    """The journal's retention of participants' data."""


@journal_group.command("prune")
@pass_ctx
def journal_prune(ctx: Ctx) -> None:
    """Apply journal.keep_days now (`outbox flush` does it every minute)."""
    from wod_backend.cli import render
    from wod_backend.state.journal import Journal

    days = ctx.cfg.journal.keep_days
    if days is None:
        click.echo(render.say("journal_kept"))
        return
    n = Journal(ctx.cfg.state_dir).forget_personal(time.time() - days * 86400)
    click.echo(render.say("journal_pruned", count=n, days=days))


@cli.group("content")
def content_group() -> None:
    """Update a content root atomically, or go back one release (root)."""


@content_group.command("update")
@click.option("--from", "source", metavar="GIT_URL_OR_DIR",
              help="Where the new tree comes from (default: the current release).")
@click.option("--private", is_flag=True, help="content.private instead of content.public.")
@pass_ctx
def content_update(ctx: Ctx, source: Optional[str], private: bool) -> None:
    """Fetch a new tree, check it (`workshops check`), switch to it if it passes."""
    from wod_backend.cli import render
    from wod_backend.ops import content

    release, problems = content.update(ctx.cfg, source, private)
    warnings = [p for p in problems if p.severity != "error"]
    click.echo(render.say("switched", release=release) + (
        render.say("warnings", count=len(warnings)) if warnings else ""))


@content_group.command("rollback")
@click.option("--private", is_flag=True)
@pass_ctx
def content_rollback(ctx: Ctx, private: bool) -> None:
    """Point the content root at the release before the current one."""
    from wod_backend.cli import render
    from wod_backend.ops import content

    click.echo(render.say("switched_back", release=content.rollback(ctx.cfg, private)))
