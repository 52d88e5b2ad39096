"""`doctor`: what is wrong with this backend, and how to fix it.

Each check answers ok / warn / FAIL with what it saw and, when not ok, the fix. The
configuration itself was validated on load (secret file modes included): a broken one
never gets here, it exits 78 with the key named.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Callable, Optional

from wod_backend.config import Config, read_secret
from wod_backend.errors import WodError
from wod_backend.ops import contentcheck
from wod_backend.host import location
from wod_backend.host.check import Check
from wod_backend.host import managed_hub as managed
from wod_backend.order import Seat, user_name
from wod_backend.privileged.client import helper_path, use_sudo
from wod_backend.remote.frontend import Frontend
from wod_backend.remote.hub import Hub
from wod_backend.system.run import run
from wod_backend.system.trust import helper_trust_report
from wod_backend.remote.http import HttpError


def check_content(cfg: Config) -> Check:
    problems = [p for p in contentcheck.check(cfg) if p.severity == "error"]
    if problems:
        first = problems[0]
        return Check("content", "FAIL", f"{len(problems)} defect(s), first: {first.workshop}: "
                     f"{first.path}: {first.message}", "wod-backend workshops check")
    return Check("content", "ok", "every workshop passes workshops check")


def check_state_dir(cfg: Config) -> Check:
    d = cfg.state_dir
    if not d.is_dir():
        return Check("state_dir", "FAIL", f"{d} does not exist",
                     f"mkdir -m 700 {d} && chown <backend user> {d}")
    st = d.stat()
    if st.st_mode & 0o077:
        return Check("state_dir", "FAIL", f"{d} is mode {stat.S_IMODE(st.st_mode):04o}",
                     f"chmod 700 {d}")
    if not os.access(d, os.W_OK):
        return Check("state_dir", "FAIL", f"{d} is not writable by this user",
                     f"chown {pwd.getpwuid(os.geteuid()).pw_name} {d}")
    return Check("state_dir", "ok", f"{d} private and writable")


def check_frontend(cfg: Config) -> Check:
    if cfg.frontend is None:
        return Check("frontend", "warn", "not configured: nothing is reported to a portal")
    try:
        fe = Frontend(cfg.frontend, retry_delays=())
        fe.login()
        count = len(fe.workshops())
    except HttpError as exc:
        return Check("frontend", "FAIL", str(exc),
                     "check frontend.url, the moderator account and its password file")
    return Check("frontend", "ok", f"logged in as {cfg.frontend.username}, "
                                   f"{count} workshops listed")


def check_hub(cfg: Config) -> Check:
    if cfg.jupyterhub is None:
        return Check("jupyterhub", "warn", "not configured: no server is started")
    try:
        users = Hub(cfg.jupyterhub).users()
    except HttpError as exc:
        fix = ("give the token's service the admin:users and admin:servers scopes"
               if exc.status else "is the hub running at jupyterhub.url?")
        return Check("jupyterhub", "FAIL", str(exc), fix)
    return Check("jupyterhub", "ok", f"{len(users)} users visible with the token")


def check_ldap(cfg: Config) -> Check:
    if cfg.ldap is None:
        return Check("ldap", "ok", "not configured (only workshops flagged ldap need it)")
    import ldap

    try:
        conn = ldap.initialize(cfg.ldap.uri)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, cfg.ldap.timeout)
        conn.simple_bind_s(cfg.ldap.bind_dn, read_secret(cfg.ldap.password_file))
        conn.search_s(cfg.ldap.people_dn, ldap.SCOPE_BASE)
        conn.unbind_s()
    except ldap.LDAPError as exc:
        desc = exc.args[0].get("desc") if exc.args and isinstance(exc.args[0], dict) else exc
        return Check("ldap", "FAIL", f"{cfg.ldap.uri}: {desc}",
                     "check ldap.uri, bind_dn, the password file and people_dn")
    return Check("ldap", "ok", f"bound as {cfg.ldap.bind_dn}, {cfg.ldap.people_dn} exists")


def check_procmail(cfg: Config) -> Check:
    user = cfg.mail.backend_user
    if not user:
        return Check("procmail", "warn", "mail.backend_user not set: not checked")
    try:
        home = Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return Check("procmail", "FAIL", f"no user {user}", f"useradd -m {user}")
    rc = home / ".procmailrc"
    try:
        text = rc.read_text()
    except OSError:
        return Check("procmail", "FAIL", f"{rc} missing or unreadable",
                     f"install procmailrc.example as {rc}")
    problems = []
    if "wod-backend" not in text or " mail" not in text:
        problems.append("does not pipe into `wod-backend mail`")
    if ":0 w" not in text:
        problems.append("the recipe lacks the w flag (no exit code reaches the MTA)")
    if "EXITCODE" not in text:
        problems.append("no e recipe setting EXITCODE (75 would not make postfix retry)")
    if problems:
        return Check("procmail", "FAIL", f"{rc}: " + "; ".join(problems),
                     "start again from procmailrc.example")
    return Check("procmail", "ok", f"{rc} pipes into wod-backend and passes its exit code")


def check_accounts(cfg: Config) -> Check:
    if not cfg.students.manage_accounts:
        return Check("accounts", "ok", "not managed (students.manage_accounts: false)")
    missing, wrong = [], []
    for n in range(cfg.students.min, cfg.students.max + 1):
        try:
            pw = pwd.getpwnam(user_name(n))
        except KeyError:
            missing.append(n)
            continue
        if pw.pw_uid != Seat.of(cfg.students, n).uid:
            wrong.append(n)
    if missing or wrong:
        return Check("accounts", "FAIL", f"{len(missing)} missing, {len(wrong)} with another "
                     f"uid", f"wod-backend students ensure {cfg.students.min}-"
                     f"{cfg.students.max}")
    return Check("accounts", "ok", f"all {cfg.students.max - cfg.students.min + 1} student "
                                   f"accounts present")


def check_privileges(cfg: Config) -> Check:
    if not use_sudo(cfg):
        who = "root" if os.geteuid() == 0 else "this user"
        return Check("privileges", "ok", f"system steps run in-process as {who}")
    result = run(["sudo", "-n", "-l", helper_path(cfg), "--config", str(cfg.path)],
                 timeout=30)
    if not result.ok:
        return Check("privileges", "FAIL", "sudo does not allow the privileged helper",
                     "install scripts/sudoers.example as /etc/sudoers.d/wod-backend")
    from wod_backend.host import privd

    if privd.wanted(cfg) and privd.running(cfg) is None:
        return Check("privileges", "warn", "sudo allows wod-backend-priv; the resident "
                     "privileged side is not running: each order pays sudo and a start",
                     "wod-backend privd start (root; the schedule starts it every minute)")
    extra = f"; resident side pid {privd.running(cfg)}" if privd.wanted(cfg) else ""
    return Check("privileges", "ok", f"sudo allows wod-backend-priv with this "
                 f"configuration{extra}")


def check_root_trust(cfg: Config) -> Check:
    """What root runs and renders must be root's alone (the helper refuses otherwise)."""
    if not cfg.students.manage_accounts:
        return Check("root trust", "ok", "no root steps (students.manage_accounts: false)")
    why = helper_trust_report(cfg)
    if why:
        return Check("root trust", "FAIL", why, "chown -R root: and chmod go-w the path "
                     "named; the privileged helper refuses to start until then")
    return Check("root trust", "ok", "code, content roots and hooks trees are root's alone")


def check_managed_hub(cfg: Config) -> Check:
    """The hub setup runs: running, its token scoped to students, students known, PAM."""
    if cfg.jupyterhub is None or not cfg.jupyterhub.manage:
        return Check("managed hub", "ok", "not managed here (jupyterhub.manage: false)")
    # Its pid file is in root's data_dir: the backend user asks the hub's API instead.
    if managed.pid(cfg) is None and (os.geteuid() == 0 or not managed.answers(cfg, 0)):
        return Check("managed hub", "FAIL", "not running", "wod-backend hub run, or setup")
    client = Hub(cfg.jupyterhub)
    try:
        scopes = set(client.token_scopes())
        known = client.server_state(user_name(cfg.students.min)) is not None or \
            user_name(cfg.students.min) in {u.get("name") for u in client.users()}
    except HttpError as exc:
        return Check("managed hub", "FAIL", str(exc), "see jupyterhub.data_dir's log")
    too_wide = sorted(s for s in scopes if s.startswith(("admin", "users", "servers",
                                                          "tokens")) and "!" not in s)
    if too_wide or "servers!group=students" not in scopes:
        return Check("managed hub", "FAIL", f"the backend's token has scopes {sorted(scopes)}",
                     "rerun setup: it writes the hub's roles")
    if not known or not Path("/etc/pam.d/login").exists():
        return Check("managed hub", "FAIL", "students unknown to the hub or no PAM 'login'",
                     "rerun setup")
    return Check("managed hub", "ok", f"running, token limited to students "
                                      f"({', '.join(sorted(scopes))})")


def check_limits(cfg: Config) -> Check:
    """students.limits in force: the slices' drop-ins, else the students' cgroups."""
    from wod_backend.system.systemd import is_init as systemd_is_init
    from wod_backend.system import limits

    if not cfg.students.limits.any or not cfg.students.manage_accounts:
        return Check("limits", "ok", "no per-student limits (students.limits unset)")
    uids = [Seat.of(cfg.students, n).uid for n in range(cfg.students.min, cfg.students.max + 1)]
    if systemd_is_init():
        want = limits.dropin(cfg.students.limits)
        bad = [u for u in uids if not _same_file(limits.dropin_path(cfg.setup.systemd_dir,
                                                                      u), want)]
        where = "user-slice drop-ins"
    else:
        bad = [u for u in uids if limits.ensure_groups(u, cfg.students.limits, apply=False)]
        where = "cgroups (v1, best effort: processes join at the next sweep)"
    if bad:
        return Check("limits", "FAIL", f"{len(bad)} student(s) without their {where}, "
                     f"uid {bad[0]} first", "wod-backend setup")
    return Check("limits", "ok", f"{len(uids)} students limited by {where}")


def check_logins(cfg: Config) -> Check:
    import time

    from wod_backend.ops import bans

    hub = cfg.jupyterhub
    if hub is None or not hub.manage:
        return Check("logins", "ok", "not checked (the hub is not managed here)")
    if not hub.login_failures:
        return Check("logins", "warn", "password guessing is not limited "
                     "(jupyterhub.login_failures: 0)")
    banned = bans.current(cfg, time.time())
    if banned:
        return Check("logins", "warn", f"{len(banned)} address(es) refused after repeated "
                     f"failed logins: " + ", ".join(f"{ip} ({left / 60:.0f} min left)"
                                                    for ip, left in sorted(banned.items())))
    return Check("logins", "ok", f"no address banned ({hub.login_failures} failures in "
                 f"{hub.login_window_minutes:g} min ban one for {hub.ban_minutes:g} min)")


def check_disk_budget(cfg: Config) -> Check:
    from wod_backend.system import disk

    mb = cfg.students.limits.disk_mb
    if mb is None:
        return Check("disk budget", "ok", "no budget (students.limits.disk_mb unset)")
    m = disk.mount_of(cfg.students.home_root)
    why = disk.quota_on(m)
    if why is None:
        return Check("disk budget", "ok", f"{mb} MB per student: user quotas on {m.point}")
    return Check("disk budget", "ok", f"{mb} MB per student: the sweep measures the homes "
                 f"({why})")


def _same_file(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def check_worker(cfg: Config) -> Check:
    """The resident worker (mail.worker): down, every mail pays a whole start-up."""
    from wod_backend.state.files import worker_pid

    if not cfg.mail.worker or not cfg.mail.backend_user:
        return Check("worker", "ok", "not used (mail.worker false or no backend user)")
    pid = worker_pid(cfg.state_dir)
    if pid is None:
        return Check("worker", "warn", "not running: each mail starts Python and its "
                     "imports; the schedule starts it again within a minute",
                     "wod-backend worker start (as the backend user)")
    return Check("worker", "ok", f"running, pid {pid}")


def check_appliances(cfg: Config) -> list[Check]:
    """Each appliance workshop: every host reachable with its recorded key, the backend
    user's key accepted, sudo without a password, the students' accounts there."""
    from concurrent.futures import ThreadPoolExecutor

    from wod_backend.host import appliance_keys

    hosts = appliance_keys.hosts(cfg)
    user = None  # root (setup's doctor) reaches them as the backend user, as orders do
    if os.geteuid() == 0 and cfg.mail.backend_user:
        pw = pwd.getpwnam(cfg.mail.backend_user)
        user = (pw.pw_uid, pw.pw_gid)
    with ThreadPoolExecutor(max_workers=8) as pool:
        probes = list(pool.map(lambda h: appliance_keys.probe(cfg, h, user), hosts))
    out = []
    for folder in sorted({h.folder for h in hosts}):
        mine = [p for p in probes if p.host.folder == folder]
        bad = [p for p in mine if p.problem]
        students = sum(len(p.host.students) for p in mine)
        if bad:
            out.append(Check(f"appliance {folder}", "FAIL",
                             f"{len(bad)} of {len(mine)} host(s) not ready, first: "
                             f"{bad[0].problem}", "docs/appliances.md"))
        else:
            out.append(Check(f"appliance {folder}", "ok",
                             f"{len(mine)} host(s): reachable, host key as recorded, key "
                             f"accepted, sudo, {students} student account(s)"))
    return out


CHECKS: list[Callable[[Config], "Check | list[Check]"]] = [
    check_state_dir, check_content, check_accounts, check_limits, check_disk_budget,
    check_privileges,
    check_root_trust, check_procmail, check_worker, location.check_mail_path, location.check_probe,
    location.check_refusals, check_frontend, location.check_location, check_hub,
    check_managed_hub, check_logins, location.check_kernels, check_ldap, check_appliances]


def run_checks(cfg: Config, checks: Optional[list[Callable]] = None) -> list[Check]:
    """Every check (or `checks`, a part of CHECKS), each failure its own FAIL line."""
    out = [Check("configuration", "ok", f"{cfg.path} valid, secret files private")]
    for check in CHECKS if checks is None else checks:
        try:
            result = check(cfg)
            out.extend(result if isinstance(result, list) else [result])
        except WodError as exc:
            out.append(Check(check.__name__.replace("check_", ""), "FAIL", exc.reason))
    return out
