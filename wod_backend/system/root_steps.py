"""The steps that need root on a student, one handler each.

Called by the executor when the order runs as root (or without managed accounts), and
by the sudo helper when it does not: the same code either way, so the helper never
needs the executor. Each handler takes the order's `Host` and the `Student` value and
returns what it measured (completion %, processes ended), if anything.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from wod_backend.config import Config
from wod_backend.errors import StepFailed, WodError
from wod_backend.order import Action
from wod_backend.planning.appliances import managed
from wod_backend.planning.catalog import Catalog
from wod_backend.planning.step_kinds import StepKind
from wod_backend.system import (accounts, appliance_link, automation, backups, completion, delivery, homes,
                                limits, passwords, pdf)
from wod_backend.system.kill import kill_user_processes, pids_by_uid, pids_of
from wod_backend.system.student import Host, Student

Result = Optional[dict[str, Any]]


def ensure_account(host: Host, st: Student) -> Result:
    report = accounts.ensure(host.cfg, [st.number])
    if report.conflicts:
        raise StepFailed(report.conflicts[0])
    return None


def set_linux_password(host: Host, st: Student) -> Result:
    host.ids(st)  # the account must exist and be ours
    passwords.set_linux_passwords([(st.user, st.need_password())])
    return None


def kill_processes(host: Host, st: Student) -> Result:
    uid, _gid = host.ids(st)
    if uid is None:
        return None
    if host.processes is not None and uid not in host.processes:
        return {"killed": 0}  # the batch's pass over /proc found none
    return {"killed": kill_user_processes(uid, host.cfg.students.kill_grace_seconds)}


def wipe_home(host: Host, st: Student) -> Result:
    kept = _archive(host, st)
    homes.wipe_home(st.home, *host.ids(st), host.cfg.students.home_mode)
    return kept


def restore_skeleton(host: Host, st: Student) -> Result:
    homes.restore_skeleton(st.home, Catalog(host.cfg).skeletons(), *host.ids(st),
                           host.cfg.students.home_mode)
    return None


def ssh_key(host: Host, st: Student) -> Result:
    public = homes.install_ssh_key(st.home, st.user, *host.ids(st),
                                   host.cfg.students.home_mode)
    return {"public_key": public}


def appliance_host_key(host: Host, st: Student) -> Result:
    """The student's known_hosts: the host key setup recorded for the appliance that
    root derives from wod.yml and the configuration (not from the request)."""
    app = managed(host.cfg, host.meta, st.folder)
    if app is None or st.appliance is None:
        raise StepFailed(f"workshop {st.folder} has no appliance set up by the backend")
    lines = appliance_link.pinned(host.cfg, st.appliance, app.port, st.folder)
    config = "" if app.port == 22 else f"Host {st.appliance}\n  Port {app.port}\n"
    homes.install_known_host(st.home, *host.ids(st), host.cfg.students.home_mode, lines,
                             config)
    return None


def render(host: Host, st: Student) -> dict[str, bytes]:
    """The workshop's templates rendered for this student (in memory, before anything
    changes: a content defect stops the order with the home untouched)."""
    key = (st.number, repr(sorted(st.private.items())))  # a create hook may add some
    if key not in host.rendered:
        host.rendered[key] = delivery.render_templates(host.workshop.path, host.context(st))
    return host.rendered[key]


def deliver_notebooks(host: Host, st: Student) -> Result:
    tools = {pdf.SCRIPT_NAME: pdf.student_script()} if host.cfg.students.pdf_export else {}
    delivery.deliver(host.workshop.path, render(host, st), st.home, st.workshop,
                     *host.ids(st), host.cfg.students.home_mode, tools)
    if host.cfg.backups.dir is not None:  # what the wipe will compare the folder with
        backups.record_delivery(host.cfg.backups.dir, st.user, st.home, st.workshop)
    return None


ARCHIVED_BEFORE_WIPE = (Action.CLEANUP.value, Action.RESET.value, Action.PURGE.value)


def _archive(host: Host, st: Student) -> Result:
    """The student's changes to the workshop folder, kept before the wipe."""
    cfg = host.cfg
    if cfg.backups.dir is None or st.action not in ARCHIVED_BEFORE_WIPE:
        return None
    done = backups.archive(cfg.backups.dir, st.user, st.home, st.workshop,
                           cfg.backups.max_mb << 20,
                           {"student": st.number, "customer": st.customer,
                            "workshop": st.workshop, "action": st.action})
    if done is None:
        return None
    host.log(f"{st.user}: backup {done.id}: {done.files} changed file(s), "
             f"{done.bytes / 2**20:.1f} MB" + (f", {done.skipped} left out (over "
                                               f"backups.max_mb)" if done.skipped else ""))
    return {"backup": done.id}


def compile_tools(host: Host, st: Student) -> Result:
    automation.compile_scripts(host, st)
    return None


def measure_completion(host: Host, st: Student) -> Result:
    return {"completion": completion.completion(host.workshop.path, st.home, st.workshop)}


def expected_entries(host: Host, st: Student) -> set[str]:
    """The top-level names a home holds after this action: none after an eviction;
    after a CREATE the skeleton's, the SSH key's, JupyterLab's, the workshop folder
    and the compiled tools (hooks run as the backend user: they cannot add any)."""
    if st.action != Action.CREATE.value:
        return set()
    names = {".ssh", ".jupyter", st.workshop}
    for skeleton in Catalog(host.cfg).skeletons():
        names.update(os.listdir(skeleton))
    names.update(automation.binary_name(script) for script in host.meta.compile)
    return names


def verify_home(host: Host, st: Student) -> Result:
    """No process of the student is left, and the home holds only what the action
    delivered: anything else (written by a process that outlived the wipe) goes."""
    uid, _gid = host.ids(st)
    if uid is not None and (uid in host.processes if host.processes is not None
                            else pids_of(uid)):
        came_back = kill_user_processes(uid, 0)
        host.log(f"{st.user}: {came_back} process(es) came back: ended")
    with homes.open_home(st.home, *host.ids(st), host.cfg.students.home_mode) as home:
        extra = sorted(set(home.entries()) - expected_entries(host, st))
        for name in extra:
            home.remove(name)
    if extra:
        host.log(f"{st.user}: removed what the action did not deliver: "
                 f"{', '.join(extra[:10])}")
    return None


HANDLERS: dict[StepKind, Callable[[Host, Student], Result]] = {
    StepKind.ENSURE_ACCOUNT: ensure_account,
    StepKind.SET_LINUX_PASSWORD: set_linux_password,
    StepKind.KILL_PROCESSES: kill_processes,
    StepKind.WIPE_HOME: wipe_home,
    StepKind.RESTORE_SKELETON: restore_skeleton,
    StepKind.SSH_KEY: ssh_key,
    StepKind.APPLIANCE_HOST_KEY: appliance_host_key,
    StepKind.COMPILE: compile_tools,
    StepKind.DELIVER_NOTEBOOKS: deliver_notebooks,
    StepKind.VERIFY_HOME: verify_home,
    StepKind.MEASURE_COMPLETION: measure_completion,
}


def run(host: Host, st: Student, kind: StepKind) -> dict[str, Any]:
    return HANDLERS[kind](host, st) or {}


def run_batch(host: Host, students: list[Student], kinds: list[StepKind]
              ) -> dict[int, Optional[str]]:
    """Steps for several students: per number, None when done, else why not. A batch
    of passwords is one `chpasswd` for all the accounts checked to be ours; if it fails,
    each is set alone so that one bad account fails only its student. An eviction's
    steps go step by step over all the students, each step with one pass over /proc."""
    failures: dict[int, Optional[str]] = {}
    if kinds != [StepKind.SET_LINUX_PASSWORD]:
        for kind in kinds:
            going = [st for st in students if failures.get(st.number) is None]
            host.processes = pids_by_uid({uid for st in going
                                          if (uid := host.ids_or_none(st)) is not None})
            try:
                for st in going:
                    try:
                        run(host, st, kind)
                        failures[st.number] = None
                    except WodError as exc:
                        failures[st.number] = exc.reason
            finally:
                host.processes = None
        return failures
    kind = kinds[0]
    ready = []
    for st in students:
        try:
            host.ids(st)
            ready.append(st)
        except WodError as exc:
            failures[st.number] = exc.reason
    try:
        passwords.set_linux_passwords([(st.user, st.need_password()) for st in ready])
        failures.update({st.number: None for st in ready})
    except WodError as exc:
        if len(ready) == 1:
            failures[ready[0].number] = exc.reason
            return failures
        failures.update(run_batch(host, ready[:len(ready) // 2], [kind]))
        failures.update(run_batch(host, ready[len(ready) // 2:], [kind]))
    return failures


def disk(cfg: Config, numbers: list[int]) -> dict[int, dict]:
    """Root's side of the sweep's disk budget: usage, over or not (system/disk.py)."""
    from wod_backend.system import disk as budget

    return budget.measure(cfg, [n for n in numbers if cfg.student_in_range(n)])


def confine(cfg: Config, numbers: list[int]) -> dict[int, int]:
    """Root's side of `sweep` without systemd: each student's groups ensured with the
    configured limits and the student's processes moved in; per student, how many.
    A number whose account is not ours (system/accounts.py) is skipped."""
    moved: dict[int, int] = {}
    if not cfg.students.limits.any or not limits.v1_controllers():
        return moved
    ours: dict[int, int] = {}
    for n in numbers:
        try:
            ours[n] = accounts.account_ids(cfg, n)[0]
        except WodError:
            continue
    running = pids_by_uid(set(ours.values()))  # one pass over /proc for all of them
    for n, uid in ours.items():
        limits.ensure_groups(uid, cfg.students.limits)
        pids = running.get(uid, [])
        moved[n] = limits.place(uid, pids) if pids else 0
    return moved
