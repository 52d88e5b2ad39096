"""Student homes: wipe, restore the skeleton, a fresh SSH key, all without following links.

A home is student-controlled ground: anything in it may be a symbolic link to /etc, a
FIFO, or a tree of 10,000 files. Every operation here works on directory file
descriptors opened with O_NOFOLLOW and creates files with O_EXCL|O_NOFOLLOW, so a link
the student planted is removed, never followed, and nothing is written through it.
Only the parent of the homes (`students.home_root`, root's ground) is trusted by path.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from wod_backend.errors import StepFailed

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# Directory descriptors kept open while descending a tree; deeper levels are reopened
# through ".." (checked by device and inode) on the way back up.
FD_WINDOW = 256


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove an entry of any kind, never following a link.

    Iterative, through descriptors: a student's 5,000-level tree needs neither recursion
    nor a path longer than one name, and holds at most FD_WINDOW descriptors."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    # (name in parent, (dev, ino), fd or None once closed to stay within the window)
    stack: list[list] = [[name, (st.st_dev, st.st_ino), _open_dir(dir_fd, name, st)]]
    while stack:
        top = stack[-1]
        child = _first_entry_removing_files(top[2])
        if child is not None:
            cst, cname = child
            stack.append([cname, (cst.st_dev, cst.st_ino), _open_dir(top[2], cname, cst)])
            if len(stack) > FD_WINDOW and stack[-FD_WINDOW - 1][2] is not None:
                os.close(stack[-FD_WINDOW - 1][2])
                stack[-FD_WINDOW - 1][2] = None
            continue
        stack.pop()
        parent_fd = dir_fd if not stack else stack[-1][2]
        if stack and parent_fd is None:
            parent_fd = os.open("..", _DIR_FLAGS, dir_fd=top[2])
            pst = os.fstat(parent_fd)
            if (pst.st_dev, pst.st_ino) != stack[-1][1]:
                os.close(parent_fd)
                os.close(top[2])
                raise OSError(errno.EBUSY, "a folder was moved during the wipe")
            stack[-1][2] = parent_fd
        os.close(top[2])
        try:
            os.rmdir(top[0], dir_fd=parent_fd)
        except FileNotFoundError:
            pass


def _open_dir(parent_fd: int, name: str, st: os.stat_result) -> int:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    fst = os.fstat(fd)
    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise OSError(errno.EBUSY, f"{name} was replaced during the wipe")
    return fd


def _first_entry_removing_files(fd: int) -> Optional[tuple[os.stat_result, str]]:
    """Unlink the non-directories of `fd`; return its first subdirectory, if any."""
    with os.scandir(fd) as it:
        for entry in it:
            try:
                st = os.lstat(entry.name, dir_fd=fd)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                return st, entry.name
            try:
                os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                pass
    return None


@dataclass
class SafeDir:
    """A directory opened without following links; what it creates belongs to uid/gid."""

    fd: int
    uid: Optional[int] = None
    gid: Optional[int] = None

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "SafeDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _own(self, fd: int) -> None:
        if self.uid is not None:
            os.fchown(fd, self.uid, self.gid if self.gid is not None else -1)

    def entries(self) -> list[str]:
        return os.listdir(self.fd)

    def remove(self, name: str) -> None:
        remove_entry(self.fd, name)

    def wipe(self) -> None:
        """Empty the directory, dotfiles included."""
        for name in self.entries():
            remove_entry(self.fd, name)

    def subdir(self, name: str, mode: int = 0o755) -> "SafeDir":
        """Open (creating) a real subdirectory; anything else in its place is removed."""
        try:
            st = os.lstat(name, dir_fd=self.fd)
            if not stat.S_ISDIR(st.st_mode):
                remove_entry(self.fd, name)
                raise FileNotFoundError
        except FileNotFoundError:
            os.mkdir(name, mode, dir_fd=self.fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        self._own(fd)
        os.fchmod(fd, mode)
        return SafeDir(fd, self.uid, self.gid)

    def open_new(self, name: str, mode: int = 0o644) -> int:
        """A new file descriptor for writing `name`, replacing whatever was there."""
        remove_entry(self.fd, name)
        fd = os.open(name, _NEW_FILE, mode, dir_fd=self.fd)
        self._own(fd)
        os.fchmod(fd, mode)
        return fd

    def write(self, name: str, data: bytes, mode: int = 0o644) -> None:
        fd = self.open_new(name, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def copy_file(self, name: str, src: Path, mode: int = 0o644) -> None:
        with open(src, "rb") as fin:
            size = os.fstat(fin.fileno()).st_size
            fd = self.open_new(name, mode)
            try:
                offset = 0
                while offset < size:
                    sent = os.sendfile(fd, fin.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent
            finally:
                os.close(fd)


Transform = Callable[[str, Path], Optional[bytes]]


def copy_tree(src: Path, dst: SafeDir, transform: Optional[Transform] = None,
              exclude: frozenset[str] = frozenset(), rel: str = "") -> int:
    """Copy the trusted tree `src` into `dst`; `transform(relpath, path)` may return the
    bytes to write instead (rendered templates); relpaths in `exclude` are left out.
    Links in the source are skipped. Returns the number of files written."""
    count = 0
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        relpath = f"{rel}{entry.name}"
        if entry.is_symlink() or relpath in exclude:
            continue
        if entry.is_dir():
            with dst.subdir(entry.name) as sub:
                count += copy_tree(Path(entry.path), sub, transform, exclude,
                                   relpath + "/")
        elif entry.is_file():
            mode = 0o755 if entry.stat().st_mode & 0o111 else 0o644
            data = transform(relpath, Path(entry.path)) if transform else None
            if data is None:
                dst.copy_file(entry.name, Path(entry.path), mode)
            else:
                dst.write(entry.name, data, mode)
            count += 1
    return count


def open_home(home: Path, uid: Optional[int], gid: Optional[int],
              mode: int = 0o700) -> SafeDir:
    """Open a student's home (creating it); a link or a file in its place is removed."""
    parent_fd = os.open(home.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        parent = SafeDir(parent_fd)
        home_dir = parent.subdir(home.name, mode)
    except OSError as exc:
        raise StepFailed(f"cannot open home {home}: {exc.strerror}")
    finally:
        os.close(parent_fd)
    home_dir.uid, home_dir.gid = uid, gid
    if uid is not None:
        os.fchown(home_dir.fd, uid, gid if gid is not None else -1)
    return home_dir


def wipe_home(home: Path, uid: Optional[int], gid: Optional[int], mode: int = 0o700) -> None:
    try:
        with open_home(home, uid, gid, mode) as d:
            d.wipe()
    except OSError as exc:
        raise StepFailed(f"cannot wipe {home}: {exc.strerror}")


def restore_skeleton(home: Path, skeletons: list[Path], uid: Optional[int],
                     gid: Optional[int], mode: int = 0o700) -> int:
    try:
        with open_home(home, uid, gid, mode) as d:
            return sum(copy_tree(sk, d) for sk in skeletons)
    except OSError as exc:
        raise StepFailed(f"cannot restore the skeleton into {home}: {exc.strerror}")


def ssh_keypair(comment: str) -> tuple[bytes, bytes]:
    """A fresh ed25519 key pair (private in OpenSSH format, public line), in memory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return private, public + b" " + comment.encode() + b"\n"


def install_ssh_key(home: Path, user: str, uid: Optional[int], gid: Optional[int],
                    mode: int = 0o700) -> str:
    """A fresh key pair in ~/.ssh; its public line (for the appliance)."""
    private, public = ssh_keypair(user)
    try:
        with open_home(home, uid, gid, mode) as d, d.subdir(".ssh", 0o700) as ssh:
            ssh.write("id_ed25519", private, 0o600)
            ssh.write("id_ed25519.pub", public, 0o644)
            ssh.write("authorized_keys", public, 0o600)
    except OSError as exc:
        raise StepFailed(f"cannot install the SSH key in {home}: {exc.strerror}")
    return public.decode()


def install_known_host(home: Path, uid: Optional[int], gid: Optional[int], mode: int,
                       lines: list[str], config: str = "") -> None:
    """~/.ssh/known_hosts with the appliance's recorded keys (and ~/.ssh/config when it
    listens elsewhere than 22), so that `ssh` and the ssh kernel's %login never ask."""
    try:
        with open_home(home, uid, gid, mode) as d, d.subdir(".ssh", 0o700) as ssh:
            ssh.write("known_hosts", "".join(line + "\n" for line in lines).encode(), 0o644)
            if config:
                ssh.write("config", config.encode(), 0o600)
    except OSError as exc:
        raise StepFailed(f"cannot write known_hosts in {home}: {exc.strerror}")
