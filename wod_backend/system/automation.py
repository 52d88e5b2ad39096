"""Running workshop automation: hook scripts, Ansible playbooks, the shc compile step.

What a hook receives (docs/content.md, "Hooks"), never on its command line:
- scripts: `WOD_*` environment variables; the new password, when the order made one,
  in a 0600 file named by `WOD_PASSWORD_FILE`;
- playbooks: the same values as extra variables (lower case, plus the template variables
  of the workshop: STDID, STUDENT, WORKSHOP, MODEWS, PASSSTU...) from a 0600 JSON file
  given as `-e @file`.
Both files live in a private temporary directory removed when the hook ends. A hook
that fails or outlives its timeout fails the order with the tail of its output; the
whole output goes to the order's journal entry.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Iterator, Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError, StepFailed
from wod_backend.planning.hooks import Hook, hook_roots
from wod_backend.state.files import ensure_private_dir
from wod_backend.system.homes import open_home
from wod_backend.system.run import Run, run
from wod_backend.system.student import Host, Student
from wod_backend.system.templating import render
from wod_backend.system.trust import root_scratch

log = logging.getLogger(__name__)

SAFE_ENV_KEYS = ("LANG", "LC_ALL", "TZ")
DEFAULT_INVENTORY = "localhost ansible_connection=local\n"


@contextmanager
def private_dir(state_dir: Path, owner: Optional[tuple[int, int]] = None) -> Iterator[Path]:
    """A 0700 scratch directory, removed afterwards whatever happens.

    Unprivileged, it lives under state_dir (our own ground). As root it never does:
    state_dir is the backend user's, so root's scratch is root's own (trust.py), handed
    to `owner` when a hook runs as that user."""
    if os.geteuid() == 0:
        with root_scratch(owner) as path:
            yield path
        return
    base = state_dir / "tmp"
    ensure_private_dir(base)
    path = Path(tempfile.mkdtemp(prefix="hook-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, data: str, owner: Optional[tuple[int, int]] = None) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    if owner is not None:
        os.fchown(fd, owner[0], owner[1])
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)
    return path


def hook_identity(cfg: Config) -> Optional[tuple[int, int]]:
    """Who runs hooks: the backend user, whoever started the order. None: ourselves.

    Unprivileged we are the backend user. As root: `mail.backend_user`, else the owner
    of state_dir; only a set-up where both are root (nothing to protect) runs them as root."""
    if os.geteuid() != 0:
        return None
    if cfg.mail.backend_user:
        try:
            pw = pwd.getpwnam(cfg.mail.backend_user)
        except KeyError:
            raise ConfigError(f"config key mail.backend_user: no user {cfg.mail.backend_user}")
        return None if pw.pw_uid == 0 else (pw.pw_uid, pw.pw_gid)
    try:
        st = os.lstat(cfg.state_dir)
    except OSError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def ansible_playbook() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        raise ConfigError("ansible-playbook not found: install ansible-core")
    return found


def hook_env(host: Host, st: Student, hook: Hook) -> dict[str, str]:
    return st.hook_env(hook.phase.value, host.cfg.state_dir, host.workshop.path, hook.root)


def run_script(host: Host, st: Student, hook: Hook, scratch: Path,
               who: Optional[tuple[int, int]]) -> Run:
    env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
    # ansible-vault and ansible-playbook last: the original's create scripts call them.
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" + \
        str(Path(sys.executable).parent)
    env["HOME"] = str(scratch)
    env.update(hook_env(host, st, hook))
    if host.cfg.hooks.vault_password_file is not None:  # encrypt_string, as the original
        env["WOD_VAULT_PASSWORD_FILE"] = str(host.cfg.hooks.vault_password_file)
    if st.password is not None:
        env["WOD_PASSWORD_FILE"] = str(write_private(scratch / "password", st.password, who))
    return run(["/bin/bash", str(hook.path)], env=env, timeout=host.cfg.hooks.timeout,
               cwd=str(hook.root), user=who)


def run_playbook(host: Host, st: Student, hook: Hook, scratch: Path,
                 who: Optional[tuple[int, int]]) -> Run:
    cfg = host.cfg
    values = st.playbook_vars(hook_env(host, st, hook), host.variables(), cfg.ansible.python)
    varsfile = write_private(scratch / "vars.json", json.dumps(values), who)
    inventory = cfg.ansible.inventory or write_private(scratch / "inventory",
                                                       DEFAULT_INVENTORY, who)
    env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
    env.update({
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(scratch),
        "ANSIBLE_HOME": str(scratch / "ansible"),
        "ANSIBLE_LOCAL_TEMP": str(scratch / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return run([ansible_playbook(), "-i", str(inventory), "-e", f"@{varsfile}",
                str(hook.path)], env=env, timeout=cfg.ansible.timeout,
               cwd=str(hook.path.parent), user=who)


def run_hook(host: Host, st: Student, hook: Hook) -> None:
    who = hook_identity(host.cfg)
    with private_dir(host.cfg.state_dir, who) as scratch:
        runner = run_script if hook.kind == "script" else run_playbook
        result = runner(host, st, hook, scratch, who)
    host.log(f"--- {hook.origin} {hook.kind} {hook.path} ({result.describe()})\n"
             f"{result.output.rstrip()}\n--- end of {hook.path.name}")
    if not result.ok:
        raise StepFailed(f"{hook.origin} {hook.kind} {hook.path.name} {result.describe()}: "
                         f"{result.tail(4)}")


def binary_name(script: str) -> str:
    """What `compile` names a tool in the home: the script's name less its extension."""
    return script.rsplit(".", 1)[0] if "." in script else script + ".x"


def compile_sources(host: Host) -> list[tuple[str, Path]]:
    """(name, source) of each script the workshop asks to compile, public tree first."""
    found = []
    for name in host.meta.compile:
        for _origin, root in hook_roots(host.cfg):
            path = root / "scripts" / name
            if path.is_file():
                found.append((name, path))
                break
        else:
            raise ConfigError(f"workshop {host.workshop.folder}: script {name} to "
                              f"compile is in no hooks tree's scripts/")
    return found


def compile_scripts(host: Host, st: Student) -> None:
    """Render each script with the student's variables, compile it with shc into the
    home (owned by the student, mode 0755), and remove the sources."""
    shc = shutil.which("shc")
    if shc is None:
        raise ConfigError(f"workshop {host.workshop.folder} compiles scripts but "
                          f"shc is not installed (apt-get install shc)")
    context = host.context(st)
    with private_dir(host.cfg.state_dir) as scratch:
        for name, source in compile_sources(host):
            src = write_private(scratch / name, render(source.read_text(), context,
                                                       f"scripts/{name}"))
            binary = scratch / binary_name(name)
            result = run([shc, "-r", "-f", str(src), "-o", str(binary)], timeout=120,
                         cwd=str(scratch))
            if not result.ok:
                raise StepFailed(f"shc {name} {result.describe()}: {result.tail(3)}")
            with open_home(st.home, *host.ids(st), host.cfg.students.home_mode) as home:
                home.copy_file(binary.name, binary, 0o755)
            host.log(f"{st.user}: compiled {name} -> ~/{binary.name}")
