"""The CLI run in this process: every failure becomes one line on stderr and a
sysexits code here, and only here (procmail hands the code to postfix: only 75 makes it
retry). cli/main.py calls it unless a resident worker takes the mail."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

from wod_backend.cli import (admin, configuration, data, lifecycle, machines,  # noqa: F401
                             orders)
from wod_backend.cli.app import cli
from wod_backend.errors import EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE, SwitchUser, WodError

log = logging.getLogger(__name__)


def dispatch(args: list[str]) -> None:
    """Run the CLI and map every failure to one line and a sysexits code."""
    try:
        # `worker run` serves mails through this very function (its children's CLI).
        cli.main(args=args, prog_name="wod-backend", standalone_mode=False, obj=dispatch)
    except SwitchUser as switch:
        from wod_backend.privileged.switchuser import run_as

        sys.exit(run_as(switch, args))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail(EX_USAGE, "aborted")
    except click.ClickException as exc:
        _fail(EX_USAGE, "usage", text=exc.format_message())
    except WodError as exc:
        _fail(exc.exit_code, "refused", text=exc.reason)
    except SystemExit:
        raise
    except (OSError, MemoryError) as exc:
        # The state directory (journal, outbox, locks, log) full, gone or unusable, or
        # the machine short of something: temporary, so that postfix keeps the mail.
        log.error("temporary failure", exc_info=True)
        _fail(EX_TEMPFAIL, "temporary", kind=type(exc).__name__,
              text=exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    except BaseException as exc:  # the one place that turns a bug into exit 70
        if type(exc).__module__ == "sqlite3":  # the journal's database: full, locked
            log.error("temporary failure", exc_info=True)
            _fail(EX_TEMPFAIL, "database", text=exc)
        log.critical("internal error", exc_info=True)
        _fail(EX_SOFTWARE, "internal", kind=type(exc).__name__,
              text=str(exc).splitlines()[0][:200] if str(exc) else "")


def _fail(code: int, what: str, **values: object) -> NoReturn:
    """One line on stderr (cli/render.py's, imported only on this path), then the
    sysexits code."""
    try:
        from wod_backend.cli import render

        line = render.failure(what, **values)
    except Exception:  # the failure path must not fail itself (no memory left...)
        line = f"wod-backend: {what}: {values.get('text', '')}"
    click.echo(line, err=True)
    sys.exit(code)
