"""Appliances as real second hosts: the cached Debian root (scripts/appliance-root) as an
overlay per host, in its own network namespace (a veth on a bridge of this machine's,
10.211.0.0/24), with its own mount, PID and UTS namespaces and its own sshd. Its
/etc/passwd is its own: the students there have other uids than on the backend.
Everything is removed when the fixture ends; no traffic leaves this machine."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from support.cli import REPO
from support.content import published
from support.frontend import FrontendServer
from support.setuphost import LOW, USER, setup_host, wod

CACHE = Path(os.environ.get("WOD_APPLIANCE_ROOT",
                            "/var/cache/wod-backend-tests/appliance-root"))
BRIDGE, NET = "wodapbr0", "10.211.0"
PORT = 10025  # the location's mail port
ADMIN = "wodadmin"  # the operator's automation account on the appliance
UID_BASE = 50000  # the appliance's own student uids (the backend's differ)


def _sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


def cached_root() -> Path:
    if not (CACHE / ".wod-complete").exists():
        _sh(str(REPO / "scripts" / "appliance-root"), str(CACHE), timeout=900)
    return CACHE


class Appliance:
    """One appliance host: `address` on the bridge, sshd on port 22 in its namespace."""

    def __init__(self, index: int, work: Path):
        self.index, self.name = index, f"appliance{index}"
        self.address = f"{NET}.{10 + index}"
        self.netns, self.veth = f"wodap{index}", f"wodap{index}h"
        self.dir = work / self.name
        self.root = self.dir / "merged"
        self.sshd: Optional[subprocess.Popen] = None

    # -- the machine ------------------------------------------------------------------
    def build(self, students: range) -> None:
        for d in ("upper", "work", "merged"):
            (self.dir / d).mkdir(parents=True)
        _sh("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={cached_root()},upperdir={self.dir}/upper,workdir={self.dir}/work",
            str(self.root))
        (self.root / "etc/hostname").write_text(self.name + "\n")
        (self.root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")
        (self.root / "run/sshd").mkdir(parents=True, exist_ok=True)
        self.chroot("ssh-keygen", "-A")
        self.chroot("useradd", "-m", "-s", "/bin/bash", ADMIN)
        sudoers = self.root / "etc/sudoers.d" / ADMIN
        sudoers.write_text(f"{ADMIN} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        for n in students:
            self.chroot("useradd", "-m", "-s", "/bin/bash", "-u", str(UID_BASE + n),
                        f"student{n}")
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
            "netns", self.netns)
        _sh("ip", "link", "set", self.veth, "master", BRIDGE, "up")
        _sh("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")

    def chroot(self, *argv: str, input: Optional[str] = None) -> str:
        return _sh("chroot", str(self.root), *argv, input=input).stdout

    def authorize(self, public_key: str) -> None:
        """The backend user's key for the automation account (what an operator does)."""
        ssh = self.root / "home" / ADMIN / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        (ssh / "authorized_keys").write_text(public_key)
        self.chroot("chown", "-R", f"{ADMIN}:{ADMIN}", f"/home/{ADMIN}/.ssh")

    def start(self) -> None:
        """sshd as PID 1 of its own PID namespace, in its own mount and UTS namespaces."""
        root = str(self.root)
        script = (f"hostname {self.name} && mount -t devpts -o newinstance,ptmxmode=0666 "
                  f"devpts {root}/dev/pts && mount --bind {root}/dev/pts/ptmx {root}/dev/ptmx"
                  f" && exec chroot {root} /usr/sbin/sshd -D -e")
        self.sshd = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--pid", "--uts",
             "--fork", f"--mount-proc={root}/proc", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.listening():
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: sshd did not start: "
                                     f"{(self.dir / 'sshd.log').read_text()[-800:]}")
            time.sleep(0.1)

    def listening(self) -> bool:
        try:
            with socket.create_connection((self.address, 22), timeout=1) as conn:
                return conn.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def stop(self) -> None:
        """The host goes down: every process of its PID namespace ends with sshd."""
        if self.sshd is None:
            return
        children = _sh("pgrep", "-P", str(self.sshd.pid), check=False).stdout.split()
        for pid in children:
            _sh("kill", "-KILL", pid, check=False)
        self.sshd.kill()
        self.sshd.wait(10)
        self.sshd = None
        deadline = time.monotonic() + 10
        while self.listening() and time.monotonic() < deadline:
            time.sleep(0.05)

    def freeze(self, frozen: bool = True) -> None:
        """A hung host: its sshd stopped (SIGSTOP), connections accepted, never answered."""
        assert self.sshd is not None
        pid1 = _sh("pgrep", "-P", str(self.sshd.pid)).stdout.split()[0]
        _sh("kill", "-STOP" if frozen else "-CONT", pid1)

    def rekey(self) -> None:
        """A rebuilt appliance: new host keys."""
        for key in (self.root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        self.chroot("ssh-keygen", "-A")

    def destroy(self) -> None:
        self.stop()
        _sh("ip", "link", "del", self.veth, check=False)
        _sh("ip", "netns", "del", self.netns, check=False)
        for _ in range(50):
            if _sh("umount", str(self.root), check=False).returncode == 0 or \
                    not os.path.ismount(self.root):
                break
            time.sleep(0.1)

    # -- what is on it ------------------------------------------------------------------
    def home(self, user: str) -> Path:
        return self.root / "home" / user

    def file(self, user: str, name: str) -> Optional[str]:
        path = self.home(user) / name
        return path.read_text() if path.exists() else None

    def inside(self, *argv: str) -> str:
        """Run argv on the appliance: in its namespaces (its processes, its /proc)."""
        assert self.sshd is not None
        pid1 = _sh("pgrep", "-P", str(self.sshd.pid)).stdout.split()[0]
        return _sh("nsenter", "-t", pid1, "-m", "-p", "-u", "-n", "chroot", str(self.root),
                   *argv, check=False).stdout

    def processes(self, uid: int) -> list[str]:
        """The appliance's live processes of a uid (zombies left out)."""
        out = self.inside("ps", "-o", "stat=,comm=", "-u", str(uid))
        return [line.split()[1] for line in out.splitlines()
                if line.split() and not line.split()[0].startswith("Z")]


def _clear_leftovers(count: int) -> None:
    for i in range(1, count + 1):
        _sh("ip", "netns", "del", f"wodap{i}", check=False)
        _sh("ip", "link", "del", f"wodap{i}h", check=False)
    _sh("ip", "link", "del", BRIDGE, check=False)


@contextmanager
def appliances(count: int, students: range) -> Iterator[list[Appliance]]:
    """`count` appliance hosts at 10.211.0.11, .12...; this machine is 10.211.0.1."""
    cached_root()
    _clear_leftovers(count)
    work = Path(tempfile.mkdtemp(prefix="wod-appliances-", dir="/var/tmp"))
    _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    _sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    hosts = [Appliance(i, work) for i in range(1, count + 1)]
    try:
        for host in hosts:
            host.build(students)
            host.start()
        yield hosts
    finally:
        for host in hosts:
            host.destroy()
        _sh("ip", "link", "del", BRIDGE, check=False)
        shutil.rmtree(work, ignore_errors=True)


SSH = ({"display_name": "SSH", "language": "bash", "name": "ssh"},
       {"codemirror_mode": "shell", "file_extension": ".sh", "mimetype": "text/x-sh",
        "name": "ssh"})
MONO, MULTI, PLAIN = "WKSHP-Dock101", "WKSHP-Multi101", "WKSHP-Plain101"
BASH = ({"display_name": "Bash", "language": "bash", "name": "bash"},
        {"codemirror_mode": "shell", "file_extension": ".sh", "mimetype": "text/x-sh",
         "name": "bash"})


def content(root: Path) -> Path:
    """A mono-appliance workshop whose notebook logs in as the published ones do, a
    multi-appliance one for students LOW and LOW+1, and one without an appliance."""
    plain = root / "content" / PLAIN
    plain.mkdir(parents=True)
    (plain / "wod.yml").write_text(f"name: {PLAIN}\nduration: 2\nrange: [9601, 9604]\n")
    (plain / "0-ReadMeFirst.ipynb").write_text(published(*BASH, [
        ("markdown", "# Hello {{ STUDENT }}"), ("code", "echo $(id -un)")]))
    for folder, flags in ((MONO, "monoappliance: true\nrange: [9601, 9604]\n"),
                          (MULTI, "multiappliance: true\nrange: [9601, 9602]\n")):
        ws = root / "content" / folder
        ws.mkdir(parents=True)
        (ws / "wod.yml").write_text(f"name: {folder}\nduration: 2\nreset: false\n{flags}")
        (ws / "0-ReadMeFirst.ipynb").write_text(published(*SSH, [
            ("markdown", "# Your appliance"),
            ("code", "%login {{ hostvars[inventory_hostname]['IP-" + folder + "'] }}"),
            ("code", "echo on $(hostname) as $(id -un) uid $(id -u)")]))
    return root / "content"


@contextmanager
def appliance_location(count: int) -> Iterator[tuple[Path, Path, FrontendServer,
                                                     list[Appliance], str]]:
    """A host made by `setup` whose backend user reaches `count` appliances: MONO on the
    first, MULTI from the first on (students LOW and LOW+1). Yields (root, config,
    frontend, appliances, the first setup's output)."""
    students = range(LOW, LOW + 4)
    with appliances(count, students) as hosts:
        address = hosts[0].address
        extra = ("appliances: {{" + MONO + ": {{host: " + address + ", account: " + ADMIN +
                 ", key: {root}/appkey/id_ed25519, timeout: 5}}, " + MULTI + ": {{host: " +
                 address + ", account: " + ADMIN + ", timeout: 5}}}}\n")
        with setup_host(extra,
                        listen_port=PORT, relays=("127.0.0.1",), signed=False,
                        content=content) as (root, cfg, fe):
            fe.add_workshop(2, MONO, monoappliance=True)
            fe.add_workshop(3, MULTI, multiappliance=True)
            fe.add_workshop(4, PLAIN)
            first = wod(cfg, "setup", "--yes", timeout=900)  # makes the backend user
            assert "appliance host key: recorded" in first.stdout, first.stdout[-3000:]
            # What the operator does next (docs/appliances.md): the backend user's key
            # into the automation account's authorized_keys.
            public = backend_key(root)
            for host in hosts:
                host.authorize(public)
            p = wod(cfg, "setup", "--yes", timeout=900)
            assert p.returncode == 0, p.stdout[-3000:] + p.stderr
            yield root, cfg, fe, hosts, first.stdout


def backend_key(root: Path) -> str:
    """The backend user's key: `key:` for the mono workshop, ssh's default for the other."""
    pw = pwd.getpwnam(USER)
    keydir = root / "appkey"
    keydir.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(keydir / "id_ed25519")], check=True)
    default = Path(pw.pw_dir) / ".ssh"
    default.mkdir(mode=0o700, exist_ok=True)
    for name in ("id_ed25519", "id_ed25519.pub"):
        (default / name).write_bytes((keydir / name).read_bytes())
        (default / name).chmod(0o600)
    for path in (keydir, *keydir.iterdir(), default, *default.iterdir()):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return (keydir / "id_ed25519.pub").read_text()
