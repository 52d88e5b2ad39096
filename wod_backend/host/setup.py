"""`wod-backend setup`: converge this host to what the configuration says.

A flat list of ensure steps (docs/deploying.md): validate everything first, then the
backend user, state_dir, the configuration and secrets, the sudo rule, procmail,
postfix, the student accounts, the scheduled work; `doctor` at the end. Each step
compares before it writes: a second run changes nothing and says so, and `--check`
runs the same steps without applying them.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from wod_backend import config
from wod_backend.order import Seat
from wod_backend.config import Config, secret_fields
from wod_backend.errors import ConfigError
from wod_backend.host import appliance_keys
from wod_backend.host import dataconf
from wod_backend.host import doctor
from wod_backend.host import firewall
from wod_backend.host import hostconf
from wod_backend.host import managed_hub as hub
from wod_backend.host import mailconf
from wod_backend.host import privd
from wod_backend.worker import service as worker
from wod_backend.host.hostconf import Change, backend_user, ensure_dir, ensure_file, ensure_mode
from wod_backend.system import accounts, systemd
from wod_backend.system.trust import helper_trust_report

PROGRAMS = ("useradd", "visudo", "postconf", "postfix", "procmail", "newusers", "chpasswd")


def validate(cfg: Config) -> None:
    """Everything that must hold before anything changes; one line naming the problem."""
    if not cfg.mail.backend_user:
        raise ConfigError("config key mail.backend_user: setup needs the backend user's name")
    if not cfg.students.manage_accounts:
        raise ConfigError("config key students.manage_accounts: setup is for a real backend "
                          "(the demo configuration needs no setup)")
    for program in PROGRAMS + (("chromium",) if cfg.students.pdf_export else ()):
        if shutil.which(program) is None:
            raise ConfigError(f"{program} not found: install it first (scripts/install-deps)")
    made_here = {cfg.intake.secret_file}
    if cfg.jupyterhub is not None and cfg.jupyterhub.manage:
        made_here.add(cfg.jupyterhub.token_file)
    for key, path in secret_fields(cfg):
        if path in made_here and not path.exists():
            continue  # setup makes it
        if not path.is_file():
            raise ConfigError(f"config key {key}: secret file {path} is missing: the "
                              f"operator of that service must provide it")
    why = helper_trust_report(cfg)
    if why:
        raise ConfigError(f"root would run code or content others can write: {why}")
    if cfg.mail.students_cannot_mail:
        firewall.nft()
    hostconf.sudoers_rule(cfg, cfg.mail.backend_user)  # visudo -cf, before anything
    mailconf.client_map(cfg)
    assert cfg.path is not None
    parent = cfg.path.resolve().parent
    if parent.stat().st_uid != 0 or parent.stat().st_mode & 0o022:
        raise ConfigError(f"{parent} (the configuration's folder) must be root's alone")


def _owner(cfg: Config) -> hostconf.Owner:
    pw = backend_user(cfg)
    return (pw.pw_uid, pw.pw_gid) if pw is not None else None


def ensure_state_and_secrets(cfg: Config, apply: bool) -> list[Change]:
    owner = _owner(cfg)
    assert cfg.path is not None
    changes = ensure_dir(cfg.state_dir, 0o700, owner, "state_dir", apply)
    changes += ensure_mode(cfg.path.resolve(), 0o644, None, "configuration", apply)
    intake = cfg.intake.secret_file
    if intake is not None and not intake.exists():
        changes += ensure_file(intake, (secrets.token_hex(32) + "\n").encode(), 0o600, owner,
                               "intake secret (generated)", apply)
    for key, path in secret_fields(cfg):
        if path.exists():  # provided: readable by the backend user only
            changes += ensure_mode(path, 0o600, owner, f"secret {key}", apply)
    return changes


def ensure_sudo_and_procmail(cfg: Config, apply: bool) -> list[Change]:
    changes = ensure_file(cfg.setup.sudoers_file, hostconf.sudoers_rule(
        cfg, cfg.mail.backend_user), 0o440, None, "sudo rule", apply)
    pw = backend_user(cfg)
    home = Path(pw.pw_dir) if pw is not None else cfg.setup.backend_home
    changes += ensure_file(home / ".procmailrc", hostconf.procmail_recipe(cfg), 0o644,
                           _owner(cfg), "procmail recipe", apply)
    return changes


def ensure_students(cfg: Config, apply: bool) -> list[Change]:
    numbers = range(cfg.students.min, cfg.students.max + 1)
    if not apply:
        missing = accounts.missing(cfg, numbers)
        return [Change("student accounts", f"create {len(missing)}: student{missing[0]}...")
                ] if missing else []
    report = accounts.ensure(cfg, numbers)
    if report.conflicts:
        raise ConfigError(f"student accounts: {report.conflicts[0]}")
    return [Change("student accounts", f"created {len(report.created)}")] \
        if report.created else []


def ensure_limits(cfg: Config, apply: bool) -> list[Change]:
    """students.limits: user-slice drop-ins under systemd, else the students' cgroups
    (v1) with the limits written in (system/limits.py)."""
    from wod_backend.system import limits

    if not cfg.students.limits.any or not cfg.students.manage_accounts:
        return []
    uids = [Seat.of(cfg.students, n).uid for n in range(cfg.students.min, cfg.students.max + 1)]
    if systemd.is_init():
        changes = []
        for uid in uids:
            changes += ensure_file(limits.dropin_path(cfg.setup.systemd_dir, uid),
                                   limits.dropin(cfg.students.limits), 0o644, None,
                                   "student limits", apply)
        if changes and apply:
            systemd.reload()
        return changes[:1] + ([Change("student limits", f"{len(changes) - 1} more")]
                              if len(changes) > 1 else [])
    if not limits.v1_controllers():
        raise ConfigError("students.limits: no systemd and no cgroup v1 controllers "
                          "(pids, memory, cpu, freezer) under /sys/fs/cgroup")
    changed = [c for uid in uids for c in limits.ensure_groups(uid, cfg.students.limits, apply)]
    return [Change("student limits", f"{len(changed)} cgroup setting(s), e.g. {changed[0]}")
            ] if changed else []


def ensure_disk_budget(cfg: Config, apply: bool) -> list[Change]:
    """students.limits.disk_mb as user quotas where the homes' file system has them on
    (doctor says which: quotas, or the sweep's measure)."""
    from wod_backend.system import disk

    if cfg.students.limits.disk_mb is None:
        return []
    m = disk.mount_of(cfg.students.home_root)
    if disk.quota_on(m) is not None:
        return []
    count = disk.quotas_to_set(cfg, m)
    if not count:
        return []
    if apply:
        disk.set_quotas(cfg, m)
    mb = cfg.students.limits.disk_mb
    return [Change("disk budget", f"user quotas on {m.point} for {count} student(s): soft "
                   f"{mb} MB, hard {mb * disk.HARD_FACTOR:g} MB")]


def ensure_worker(cfg: Config, apply: bool) -> list[Change]:
    """The worker running the installed code as the backend user (mail.worker), as a
    systemd service where systemd is PID 1, else started now (and by cron at boot)."""
    if not cfg.mail.worker or not cfg.mail.backend_user:
        if worker.running(cfg) is None:
            return []
        if apply:
            worker.stop(cfg)
        return [Change("worker", "stopped (mail.worker is false)")]
    if systemd.is_init():
        changes = ensure_file(cfg.setup.systemd_dir / worker.UNIT, worker.unit(cfg), 0o644, None,
                              "worker", apply)
        if worker.running(cfg) is not None and worker.version(cfg) != worker.code_stamp():
            changes.append(Change("worker", "restarted on the installed code"))
        if apply:
            systemd.activate([worker.UNIT], restart=bool(changes))
        return changes
    pid = worker.running(cfg)
    if pid is not None and worker.version(cfg) == worker.code_stamp():
        return []
    what = "started" if pid is None else "restarted on the installed code"
    if apply:
        if pid is not None:
            worker.stop(cfg)
        worker.start_as_backend_user(cfg)
        if worker.running(cfg) is None:
            raise ConfigError(f"the worker did not start: see {cfg.state_dir}/wod-backend.log")
    return [Change("worker", f"{what} as {cfg.mail.backend_user}")]


STEPS = (hostconf.ensure_backend_user, ensure_state_and_secrets, ensure_sudo_and_procmail,
         mailconf.ensure_postfix, firewall.ensure_firewall, ensure_students, ensure_limits,
         ensure_disk_budget,
         appliance_keys.ensure_keys, hub.ensure_hub,
         dataconf.ensure_data, mailconf.ensure_schedule, privd.ensure, ensure_worker)


def plan(cfg: Config) -> list[Change]:
    """What `setup` would change (nothing is changed)."""
    validate(cfg)
    return [c for step in STEPS for c in step(cfg, False)]


def converge(cfg: Config) -> tuple[list[Change], list[doctor.Check]]:
    """Apply every step, then run doctor; (what changed, doctor's checks)."""
    if os.geteuid() != 0:
        raise ConfigError("setup needs root")
    validate(cfg)
    changes = []
    for step in STEPS:
        changes += step(cfg, True)
    assert cfg.path is not None
    # Loaded again as every command loads it: the backend user and the secrets now exist.
    return changes, doctor.run_checks(config.load(str(cfg.path)))
