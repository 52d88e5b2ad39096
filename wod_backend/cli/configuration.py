"""The configuration and content commands: `config init|check`, `workshops list|check`,
`setup` and `maintenance`."""

from __future__ import annotations

import sys
from typing import Optional

import click

from wod_backend.cli.app import Ctx, cli, emit, pass_ctx


# -- configuration ----------------------------------------------------------------------

@cli.group("config")
def config_group() -> None:
    """Write or check the configuration."""


@config_group.command("init")
@click.option("--demo", "demo_dir", metavar="DIR",
              help="Write a self-contained demo configuration rooted in DIR.")
@click.option("--example", "example_dir", metavar="DIR",
              help="Write a commented production configuration into DIR.")
@click.option("--from-wod", "wod_yml", metavar="WOD_YML", type=click.Path(exists=True),
              help="Migrate the original backend (its /etc/wod.yml); DIR follows.")
@click.option("--group-vars", multiple=True, type=click.Path(exists=True),
              help="With --from-wod: an Ansible group_vars/all.yml (default: WODUSER's).")
@click.option("--generated", type=click.Path(exists=True),
              help="With --from-wod: the private ansible/generated/<group> file.")
@click.option("--private-sh", type=click.Path(exists=True),
              help="With --from-wod: the private scripts/wod-private.sh (API account).")
@click.argument("directory", required=False)
def config_init(demo_dir: Optional[str], example_dir: Optional[str], wod_yml: Optional[str],
                group_vars: tuple[str, ...], generated: Optional[str],
                private_sh: Optional[str], directory: Optional[str]) -> None:
    """Write a demo configuration (no root, no server) or a production one to edit, or
    migrate the original backend: config init --from-wod /etc/wod.yml DIR."""
    from wod_backend.cli import render
    from pathlib import Path

    from wod_backend.errors import UsageError
    from wod_backend.host import demo

    if wod_yml:
        from wod_backend.host import migrate

        if not directory or demo_dir or example_dir:
            raise UsageError("config init --from-wod /etc/wod.yml DIR")
        found = migrate.discover(Path(wod_yml))
        m = migrate.migrate(Path(wod_yml), [Path(p) for p in group_vars] or found[0],
                            Path(generated) if generated else found[1],
                            Path(private_sh) if private_sh else found[2],
                            Path(directory).resolve())
        path = migrate.write(m, Path(directory).resolve())
        click.echo(render.migration(path, m.mapped, m.notes))
        return
    if bool(demo_dir) == bool(example_dir):
        raise UsageError("config init: give one of --demo DIR, --example DIR or "
                         "--from-wod WOD_YML DIR")
    if demo_dir:
        path = demo.write_demo_config(demo_dir)
        click.echo(render.say("wrote_demo", path=path))
        return
    path = demo.write_example_config(str(example_dir))
    click.echo(render.say("wrote_example", path=path))


@config_group.command("check")
@pass_ctx
def config_check(ctx: Ctx) -> None:
    """Load and validate the configuration."""
    from wod_backend.cli import render
    cfg = ctx.cfg
    click.echo(render.say("valid", path=cfg.path))


# -- workshops --------------------------------------------------------------------------

@cli.group("workshops")
def workshops_group() -> None:
    """The workshop catalog."""


@workshops_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def workshops_list(ctx: Ctx, as_json: bool) -> None:
    """Workshops of the public and private content roots (public wins)."""
    from wod_backend.cli import render
    from wod_backend.ops import views

    rows = views.workshop_rows(ctx.cfg)
    emit([r.as_dict() for r in rows], as_json, render.workshops(rows))


@workshops_group.command("check")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def workshops_check(ctx: Ctx, name: Optional[str], as_json: bool) -> None:
    """Find content defects before a participant does; exit 1 if any."""
    from wod_backend.cli import render
    from wod_backend.ops import contentcheck

    problems = contentcheck.check(ctx.cfg, name)
    emit([p.as_dict() for p in problems], as_json,
         "\n".join(render.problem(p) for p in problems) or "no problems found")
    sys.exit(1 if any(p.severity == "error" for p in problems) else 0)


@cli.command()
@click.option("--check", is_flag=True, help="Change nothing: exit 0 if the host matches, "
                                            "2 (listing what) if not.")
@click.option("--yes", is_flag=True, help="Do not ask before changing the host.")
@pass_ctx
def setup(ctx: Ctx, check: bool, yes: bool) -> None:
    """Converge this host to the configuration (root): backend user, state, secrets,
    sudo rule, procmail, postfix, student accounts, scheduled work; then doctor."""
    from wod_backend.cli import render
    from wod_backend.errors import UsageError
    from wod_backend.host import setup as host

    changes = host.plan(ctx.cfg)
    if check or not changes:
        click.echo(render.changes(changes))
        sys.exit(2 if changes else 0)
    click.echo(render.changes(changes))
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("setup: not on a terminal; confirm with --yes")
        if not click.confirm("apply these changes?"):
            raise UsageError("setup: not confirmed")
    done, checks = host.converge(ctx.cfg)
    click.echo(render.say("changed", count=len(done)))
    click.echo("\n".join(render.check(c) for c in checks))
    sys.exit(1 if any(c.status == "FAIL" for c in checks) else 0)


@cli.command()
@click.argument("state", type=click.Choice(["on", "off", "status"]))
@pass_ctx
def maintenance(ctx: Ctx, state: str) -> None:
    """Hold order mails (exit 75: postfix keeps them queued) during an upgrade."""
    from wod_backend.cli import render
    from wod_backend.host import upkeep
    from wod_backend.state.files import in_maintenance

    if state != "status":
        upkeep.set_maintenance(ctx.cfg, state == "on")
    held = in_maintenance(ctx.cfg.state_dir)
    click.echo(render.say("maintenance_on" if held else "maintenance_off"))
