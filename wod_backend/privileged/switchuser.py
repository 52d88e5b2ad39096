"""An admin runs wod-backend as root: it runs as the backend user instead.

`state_dir` (journal, outbox, locks, log, caches) belongs to the backend user, and
SQLite and logging open files by path: a root process there would follow any link that
user planted. So wod-backend started as root, for anything but the commands that are
root's by nature (`students ensure/remove`, `config init`), runs the same command again
as the owner of `state_dir`, without any supplementary group, and exits with its code;
its root steps then go through the sudo helper like any mail's, and its hooks run as
that user. The privileged helper is a separate program and never comes here.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import SwitchUser

ROOT_COMMANDS = {("students", "ensure"), ("students", "remove"), ("config", "init"),
                 ("setup",), ("hub", "run"), ("hub", "stop"), ("hub", "status"),
                 # backups.dir and the content trees are root's
                 ("backups", "list"), ("backups", "export"), ("backups", "prune"),
                 ("backups", "restore"), ("appliances", "forget"),
                 ("privd", "run"), ("privd", "start"), ("privd", "stop"), ("privd", "status"),
                 ("content", "update"), ("content", "rollback")}


def state_owner(cfg: Config) -> Optional[tuple[int, int]]:
    """(uid, gid) of state_dir's owner when it is not root; None when root owns it or it
    is not a directory yet (the journal then fails with a temporary error). state_dir is
    named by root's configuration and lives in a root-owned parent: a link there is the
    operator's (state kept on another disk), so its target's owner counts."""
    try:
        st = os.stat(cfg.state_dir)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid == 0:
        return None
    return st.st_uid, st.st_gid


def check(cfg: Config, command: tuple[str, ...]) -> None:
    """Raise SwitchUser if this root process must hand the command to state_dir's owner."""
    if os.geteuid() != 0 or command[:2] in ROOT_COMMANDS:
        return
    owner = state_owner(cfg)
    if owner is not None:
        assert cfg.path is not None
        raise SwitchUser(owner[0], owner[1], cfg.path.resolve())


def _argv(args: list[str], config: Path) -> list[str]:
    """The same arguments, the configuration named by its absolute path."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--config":
            skip = True
            continue
        if arg.startswith("--config="):
            continue
        out.append(arg)
    return ["--config", str(config), *out]


def run_as(switch: SwitchUser, args: list[str]) -> int:
    """Run `wod-backend ARGS` as switch.uid; stdio passed through (captured and copied
    when they are not real files, as under click's test runner)."""
    import io
    import pwd

    from wod_backend.system.run import PIPE, start

    assert isinstance(switch.config, Path)
    try:
        name = pwd.getpwuid(switch.uid)
        home, user = name.pw_dir, name.pw_name
    except KeyError:
        home, user = "/", str(switch.uid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HOME=home, USER=user, LOGNAME=user)
    argv = [sys.executable, "-m", "wod_backend", *_argv(args, switch.config)]
    try:
        fds = (sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno())
    except (io.UnsupportedOperation, AttributeError, ValueError):
        fds = None
    if fds is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        return start(argv, stdin=None, stdout=None, stderr=None, user=(switch.uid, switch.gid),
                     env=env, detach=False).wait()
    data = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    proc = start(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, user=(switch.uid, switch.gid),
                 env=env, detach=False)
    out, err = proc.communicate(data)
    for stream, text in ((sys.stdout, out), (sys.stderr, err)):
        stream.write(text.decode("utf-8", "replace"))
        stream.flush()
    return proc.returncode
