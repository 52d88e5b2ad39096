"""The click group and what every command shares: the configuration, loaded once.

The CLI only parses options and prints results. Modules past click are imported inside
the commands that need them: procmail starts one process per mail, `--version` costs
about 50 ms with click alone and about 150 ms with every module of the package and
Jinja2 loaded (measured as whole processes), so each command pays only for its own path.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import click

from wod_backend import __version__
from wod_backend.config import Config


class Ctx:
    """What every command shares: where the configuration is, loaded once on demand."""

    def __init__(self, config_path: Optional[str], verbose: int,
                 runner: Optional[Callable[[list[str]], None]] = None):
        self.config_path = config_path
        self.verbose = verbose
        # What runs a command line in this process (cli/dispatch.py): `worker run`'s
        # children run their mails through it.
        self.runner = runner
        self._cfg: Optional[Config] = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            from wod_backend import config
            from wod_backend.privileged import switchuser
            from wod_backend.logs import log_to_state_dir

            command = tuple(click.get_current_context().command_path.split()[1:])
            # setup makes the backend user and the secrets that every other command
            # needs to exist already.
            cfg = config.load(self.config_path, host=command != ("setup",))
            # Root hands the command to state_dir's owner before touching state_dir.
            switchuser.check(cfg, command)
            # setup's own output is its log; it makes state_dir for the backend user.
            if command != ("setup",) and (os.geteuid() != 0
                                          or switchuser.state_owner(cfg) is None):
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
    ctx.obj = Ctx(config_path, verbose, ctx.obj if callable(ctx.obj) else None)


def students_range(ctx: Ctx, students: Optional[str]) -> tuple[int, ...]:
    from wod_backend.order import parse_students

    cfg = ctx.cfg
    if not students:
        return tuple(range(cfg.students.min, cfg.students.max + 1))
    return parse_students(students, cfg.students.min, cfg.students.max)[0]
