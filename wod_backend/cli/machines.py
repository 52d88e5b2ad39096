"""The host's resident parts and second hosts: the appliances (their recorded host keys)
and the resident privileged side (privd). Each command calls one host/ or privileged/
verb and prints its value."""

from __future__ import annotations

import sys

import click

from wod_backend.cli.admin import status_exit
from wod_backend.cli.app import Ctx, cli, emit, pass_ctx


@cli.group("appliances")
def appliances_group() -> None:
    """The appliances the backend sets students up on (docs/appliances.md)."""


@appliances_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def appliances_list(ctx: Ctx, as_json: bool) -> None:
    """Each appliance address by workshop: port, account, students, recorded host key."""
    from wod_backend.cli import render
    from wod_backend.host import appliance_keys
    from wod_backend.system import appliance_link

    known = appliance_link.recorded(ctx.cfg)
    rows = []
    for h in appliance_keys.hosts(ctx.cfg):
        keys = known.get(h.pattern, [])
        t = appliance_link.target(ctx.cfg, h.app, h.address, h.folder)
        rows.append({"workshop": h.folder, "address": h.address, "port": h.app.port,
                     "account": t.account,
                     "students": f"{h.students[0]}-{h.students[-1]}" if h.students else "-",
                     "host_key": keys[0].split(None, 1)[1][:40] + "..." if keys
                     else "not recorded (setup)"})
    emit(rows, as_json, render.appliances(rows))


@appliances_group.command("forget")
@click.argument("address")
@pass_ctx
def appliances_forget(ctx: Ctx, address: str) -> None:
    """Remove an appliance's recorded host key (root), after checking that it was
    rebuilt: the next setup records the key it offers then."""
    import ipaddress

    from wod_backend.cli import render
    from wod_backend.errors import UsageError
    from wod_backend.host import appliance_keys
    from wod_backend.system import accounts

    accounts.require_root("appliances forget")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise UsageError(f"appliances forget: {address!r:.40} is not an IPv4 address")
    click.echo(render.say("forgot", count=appliance_keys.forget(ctx.cfg, address),
                          address=address))


@cli.group("privd")
def privd_group() -> None:
    """The resident privileged side (privileged.resident; root): the sudo helper started
    once, serving the backend user's root steps over a root-owned socket."""


@privd_group.command("run")
@pass_ctx
def privd_run(ctx: Ctx) -> None:
    """Serve in the foreground until SIGTERM (systemd's unit runs this)."""
    from wod_backend.privileged import resident

    assert ctx.cfg.path is not None
    sys.exit(resident.serve(ctx.cfg.path.resolve()))


@privd_group.command("start")
@pass_ctx
def privd_start(ctx: Ctx) -> None:
    """Start it in the background, unless it runs (the schedule runs this every minute)."""
    from wod_backend.cli import render
    from wod_backend.host import privd

    click.echo(render.say("service_running", what="privd running",
                          pid=privd.start(ctx.cfg)))


@privd_group.command("stop")
@pass_ctx
def privd_stop(ctx: Ctx) -> None:
    """Stop it (running orders finish; new ones go through sudo)."""
    from wod_backend.host import privd

    click.echo("privd stopped" if privd.stop(ctx.cfg) else "privd was not running")


@privd_group.command("status")
@pass_ctx
def privd_status(ctx: Ctx) -> None:
    """Whether it runs (exit 0) or not (exit 3)."""
    from wod_backend.host import privd

    status_exit(privd.running(ctx.cfg), "privd running", "privd stopped")
