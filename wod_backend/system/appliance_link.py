"""A student's side of an appliance (docs/appliances.md), reached by SSH as the backend
user: never root on this host, sudo on the appliance for a few fixed scripts.

One connection per appliance per order: a master (`ssh -M`) that every call of the order
multiplexes over (about 5 ms a call where a new connection costs 100 ms and an Ansible
play over a second: docs/benchmarks.md), stopped when the order ends. Host keys are
those `setup` recorded in root's known_hosts file, checked strictly: a changed key
fails with its reason and is never replaced here. Every call is bounded by the
appliance's timeout; a connection that fails or hangs is a temporary failure (postfix
retries the mail). Passwords and keys go on stdin, never into argv.
"""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.config import Appliance, Config
from wod_backend.errors import ConfigError, StepFailed, TemporaryFailure
from wod_backend.system.run import Process, Run, run, start

# -- the recorded host keys (root's file) -----------------------------------------------


def pattern(address: str, port: int) -> str:
    """How known_hosts names a host and port."""
    return address if port == 22 else f"[{address}]:{port}"


def _trusted(path: Path) -> None:
    """Root reads only a file that root alone can change (nor its folder)."""
    for p in (path, path.parent):
        st = os.stat(p, follow_symlinks=False)
        if st.st_uid != 0 or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
            raise ConfigError(f"{p}: the appliances' host keys must be root's alone "
                              f"(owner root, not writable by others, not a link)")


def recorded(cfg: Config) -> dict[str, list[str]]:
    """known_hosts lines by host pattern; {} before setup recorded any."""
    path = cfg.known_hosts
    if os.geteuid() == 0 and path.exists():
        _trusted(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the appliances' host keys {path}: {exc}")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            out.setdefault(fields[0], []).append(" ".join(fields[:3]))
    return out


def pinned(cfg: Config, address: str, port: int, folder: str) -> list[str]:
    lines = recorded(cfg).get(pattern(address, port))
    if not lines:
        raise ConfigError(f"appliance {address}:{port} ({folder}): its host key is not "
                          f"recorded: run `wod-backend setup` once it is up")
    return lines


def scan(address: str, port: int, timeout: float) -> list[str]:
    """The host keys an appliance offers now (setup's first contact), as known_hosts
    lines; [] when it does not answer."""
    r = run(["ssh-keyscan", "-T", str(max(1, int(timeout))), "-p", str(port), address],
            timeout=timeout + 5)
    return sorted(" ".join(line.split()[:3]) for line in r.output.splitlines()
                  if len(line.split()) >= 3 and not line.startswith("#"))


# -- the remote side: fixed scripts, run with sudo by the automation account ---------------

_HOME = 'h=$(getent passwd "$1" | cut -d: -f6); [ -n "$h" ] || exit 3; '
_QUIET = 'pkill -KILL -u "$1" 2>/dev/null; i=0; while pgrep -u "$1" >/dev/null && ' \
         '[ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; '
SCRIPTS = {
    # The account exists: its home.
    "account": _HOME + 'printf "WODHOME=%s\\n" "$h"',
    # Its password, read from stdin (user:password).
    "password": 'exec chpasswd',
    # Its processes ended, its home emptied (not following links) and the skeleton
    # copied back as the student.
    "home": _HOME + _QUIET + '[ -d "$h" ] || install -d -m 0750 -o "$1" -g "$(id -g "$1")" '
            '"$h"; find "$h" -xdev -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system '
            '-- {} + ; chown "$1:$(id -g "$1")" "$h"; chmod go-w "$h"; '
            'runuser -u "$1" -- cp -R --preserve=mode,timestamps /etc/skel/. "$h"/',
    # ~/.ssh/authorized_keys holds the key on stdin, written as the student.
    "key": _HOME + 'runuser -u "$1" -- /bin/sh -c \'umask 077; mkdir -p "$1/.ssh" && '
           'chmod 700 "$1/.ssh" && cat > "$1/.ssh/authorized_keys.wod" && '
           'mv -f "$1/.ssh/authorized_keys.wod" "$1/.ssh/authorized_keys"\' sh "$h"',
    # ~/.ssh gone, and the student's processes with it.
    "revoke": _HOME + _QUIET + 'rm -rf --one-file-system -- "$h/.ssh"',
    # Which of the named accounts are missing (doctor).
    "missing": 'for u; do getent passwd "$u" >/dev/null || echo "WODMISSING $u"; done',
}
NO_ACCOUNT = 3


@dataclass(frozen=True)
class Target:
    """One appliance host as the backend user reaches it."""

    address: str
    app: Appliance
    folder: str
    account: str  # the automation account there

    @property
    def name(self) -> str:
        return f"appliance {self.address}:{self.app.port} ({self.folder})"


def target(cfg: Config, app: Appliance, address: str, folder: str) -> Target:
    return Target(address, app, folder, app.account or cfg.mail.backend_user or
                  _whoami())


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


class Link:
    """One order's connection to one appliance: opened at its first call, multiplexed,
    closed by `close` (the order's end)."""

    def __init__(self, cfg: Config, t: Target, user: Optional[tuple[int, int]] = None):
        """`user` (uid, gid): root's callers (setup's doctor) reach it as the backend user."""
        self.cfg, self.t, self.user = cfg, t, user
        self._dir: Optional[str] = None
        self._master: Optional[Process] = None

    def _options(self) -> list[str]:
        app = self.t.app
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.cfg.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "CheckHostIP=no",
                "-o", "UpdateHostKeys=no", "-o", f"ConnectTimeout={max(1, int(app.timeout))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "LogLevel=ERROR", "-p", str(app.port), "-l", self.t.account]
        if app.key is not None:
            opts += ["-i", str(app.key), "-o", "IdentitiesOnly=yes"]
        if self._dir is not None:
            opts += ["-S", os.path.join(self._dir, "m")]
        return opts

    def _check_key_file(self) -> None:
        key = self.t.app.key
        if key is None:
            return
        try:
            st = key.stat()
        except OSError as exc:
            raise ConfigError(f"{self.t.name}: key {key}: {exc.strerror}")
        if st.st_mode & 0o077 or st.st_uid != (self.user[0] if self.user else os.geteuid()):
            raise ConfigError(f"{self.t.name}: key {key} must be the backend user's, "
                              f"mode 0600")

    def open(self) -> None:
        if self._master is not None:
            return
        self._check_key_file()
        pinned(self.cfg, self.t.address, self.t.app.port, self.t.folder)
        self._dir = tempfile.mkdtemp(prefix="wod-ssh-")
        if self.user is not None:
            os.chown(self._dir, *self.user)
        errors = os.path.join(self._dir, "errors")
        with open(errors, "wb") as err:
            self._master = start(["ssh", *self._options(), "-M", "-N", "-o",
                                  "ControlPersist=no", self.t.address], stderr=err,
                                 user=self.user)
        sock = os.path.join(self._dir, "m")
        deadline = time.monotonic() + self.t.app.timeout
        while not os.path.exists(sock):
            if self._master.poll() is not None or time.monotonic() > deadline:
                timed_out = self._master.poll() is None
                with open(errors, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                self.close()
                self._fail(Run(("ssh",), 255, text, timed_out))
            time.sleep(0.005)

    def _fail(self, r: Run) -> None:
        text = r.output
        if "IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
            raise ConfigError(
                f"{self.t.name}: its host key changed since setup recorded it; if it was "
                f"rebuilt, check it, then `wod-backend appliances forget "
                f"{self.t.address}` and `setup`")
        if "Permission denied" in text:
            raise ConfigError(f"{self.t.name}: {self.t.account} was refused: its "
                              f"authorized_keys must hold the backend user's key")
        if r.timed_out:
            raise TemporaryFailure(f"{self.t.name} did not answer within "
                                   f"{self.t.app.timeout:g}s")
        last = text.strip().splitlines()[-1:] or ["connection closed"]
        raise TemporaryFailure(f"{self.t.name} is unreachable: {last[0][:160]}")

    def call(self, script: str, *args: str, stdin: Optional[bytes] = None) -> str:
        """One fixed script with sudo there; its output, or the reason it failed."""
        self.open()
        remote = " ".join(shlex.quote(a) for a in
                          ("sudo", "-n", "/bin/sh", "-c", SCRIPTS[script], "wod", *args))
        r = run(["ssh", *self._options(), "-o", "ControlMaster=no", self.t.address, "--",
                 remote], input=stdin, timeout=self.t.app.timeout, user=self.user)
        if r.timed_out or r.rc == 255:
            self._fail(r)
        if r.rc == NO_ACCOUNT:
            raise StepFailed(f"{self.t.name}: no account {args[0]} there (create the "
                             f"students' accounts on the appliance: docs/appliances.md)")
        if r.rc != 0:
            if "password is required" in r.output or "not in the sudoers" in r.output or \
                    "not allowed" in r.output:
                raise ConfigError(f"{self.t.name}: {self.t.account} cannot sudo without a "
                                  f"password there")
            raise StepFailed(f"{self.t.name}: {script} exited {r.rc}: {r.tail(2, 200)}")
        return r.output

    def home(self, user: str) -> str:
        for line in self.call("account", user).splitlines():
            if line.startswith("WODHOME="):
                return line[len("WODHOME="):]
        raise StepFailed(f"{self.t.name}: no home for {user}")

    def set_password(self, user: str, password: str) -> None:
        self.call("password", stdin=f"{user}:{password}\n".encode())

    def missing(self, users: list[str]) -> list[str]:
        return [line.split()[1] for line in self.call("missing", *users).splitlines()
                if line.startswith("WODMISSING ")]

    def close(self) -> None:
        if self._master is not None:
            self._master.terminate()
            try:
                self._master.wait(5)
            except Exception:
                self._master.kill()
                self._master.wait()
            self._master = None
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
