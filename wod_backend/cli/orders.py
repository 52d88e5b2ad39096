"""The order commands: `mail` (what procmail runs), create/cleanup/reset/purge, retry."""

from __future__ import annotations

import sys

import click

from wod_backend.cli.app import Ctx, cli, emit, pass_ctx
from wod_backend.errors import UsageError


@cli.command()
@click.option("--dry-run", is_flag=True, help="Parse, validate and print the plan only.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.option("--probe", is_flag=True, help="doctor's probe mail (the +probe address): "
              "journaled as a probe, nothing run.")
@pass_ctx
def mail(ctx: Ctx, dry_run: bool, as_json: bool, probe: bool) -> None:
    """Run the order in one mail read on stdin (as procmail pipes it)."""
    from wod_backend.cli import render
    from wod_backend.intake import pipeline as intake

    if probe:
        result = intake.probe(ctx.cfg, sys.stdin.buffer)
    else:
        result = intake.from_mail(ctx.cfg, sys.stdin.buffer, dry_run=dry_run)
    emit(result.as_dict(), as_json, render.result(result))
    sys.exit(result.exit_code)


def _order_command(action: str) -> click.Command:
    @click.argument("workshop")
    @click.argument("students")
    @click.option("--customer", default="0", show_default=True,
                  help="Frontend customer id (admin orders use 0).")
    @click.option("--dry-run", is_flag=True, help="Validate and print the plan only.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
    @pass_ctx
    def command(ctx: Ctx, workshop: str, students: str, customer: str, dry_run: bool,
                as_json: bool) -> None:
        from wod_backend.cli import render
        from wod_backend.intake import pipeline as intake

        bar = render.ProgressBar()
        try:
            result = intake.from_cli(ctx.cfg, action, workshop, students, customer,
                                     dry_run=dry_run, progress=bar)
        finally:
            bar.done()
        emit(result.as_dict(), as_json, render.result(result))
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
    from wod_backend.cli import render
    from wod_backend.intake import pipeline as intake

    what = intake.retry_preview(ctx.cfg, order_id)
    click.echo(render.say("will_run", order=order_id, what=what), err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("retry: not on a terminal; confirm with --yes")
        if not click.confirm("run it?", err=True):
            raise UsageError("retry: not confirmed")
    result = intake.retry(ctx.cfg, order_id)
    emit(result.as_dict(), as_json, render.result(result))
    sys.exit(result.exit_code)
