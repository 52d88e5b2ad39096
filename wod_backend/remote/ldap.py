"""LDAP: replace a student's password with the server-side Password Modify operation.

The server hashes the new password with its own policy (RFC 3062), so no hash scheme is
guessed here. A server that cannot be reached is a temporary failure (the MTA retries);
a student entry that does not exist is a clear, permanent error.

This talks to python-ldap's C core (`_ldap`) directly: the `ldap` package's Python
layer imports urllib and its schema modules, 100 ms per process, ten times the cost of
the whole LDAP exchange; the two calls needed here (bind, password modify) are the
same C calls that layer makes.
"""

from __future__ import annotations

from typing import Any

from wod_backend.config import Ldap, read_secret
from wod_backend.errors import StepFailed, TemporaryFailure

_DN_SPECIAL = {",": "\\,", "+": "\\+", '"': '\\"', "\\": "\\\\", "<": "\\<", ">": "\\>",
               ";": "\\;", "=": "\\="}


def escape_dn_value(value: str) -> str:
    """Escape an attribute value for a DN (RFC 4514, section 2.4)."""
    out = "".join(_DN_SPECIAL.get(c, c) for c in value).replace("\x00", "\\00")
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def student_dn(cfg: Ldap, user: str) -> str:
    return cfg.dn_template.format(user=escape_dn_value(user), people_dn=cfg.people_dn)


def _desc(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else {}
    if isinstance(arg, dict):
        return str(arg.get("desc", "")) + (f" ({arg['info']})" if arg.get("info") else "")
    return str(exc)


def preload() -> None:
    """Load the C library now: the resident worker does it once for every order."""
    try:
        import _ldap  # noqa: F401
    except ImportError:
        pass


class LdapConnection:
    """One bound connection, opened on first use, for the whole order."""

    def __init__(self, cfg: Ldap):
        self.cfg = cfg
        self._conn: Any = None

    def _wait(self, msgid: int) -> Any:
        return self._conn.result4(msgid, 1, self.cfg.timeout, 0, 0, 0)

    def _connect(self) -> Any:
        import _ldap

        if self._conn is None:
            conn = _ldap.initialize(self.cfg.uri)
            conn.set_option(_ldap.OPT_PROTOCOL_VERSION, _ldap.VERSION3)
            conn.set_option(_ldap.OPT_NETWORK_TIMEOUT, self.cfg.timeout)
            conn.set_option(_ldap.OPT_TIMEOUT, self.cfg.timeout)
            conn.set_option(_ldap.OPT_REFERRALS, 0)
            self._conn = conn
            try:
                self._wait(conn.simple_bind(self.cfg.bind_dn,
                                            read_secret(self.cfg.password_file), None, None))
            except (_ldap.SERVER_DOWN, _ldap.TIMEOUT, _ldap.CONNECT_ERROR) as exc:
                self._conn = None
                raise TemporaryFailure(f"LDAP server {self.cfg.uri} unreachable: "
                                       f"{_desc(exc)}")
            except _ldap.INVALID_CREDENTIALS:
                self._conn = None
                raise StepFailed(f"LDAP bind as {self.cfg.bind_dn} refused: wrong "
                                 f"credentials in {self.cfg.password_file}")
            except _ldap.LDAPError as exc:
                self._conn = None
                raise StepFailed(f"LDAP bind as {self.cfg.bind_dn} failed: {_desc(exc)}")
        return self._conn

    def set_password(self, user: str, password: str) -> None:
        import _ldap

        dn = student_dn(self.cfg, user)
        conn = self._connect()
        try:
            self._wait(conn.passwd(dn, None, password, None, None))
        except _ldap.NO_SUCH_OBJECT:
            raise StepFailed(f"LDAP entry {dn} does not exist")
        except (_ldap.SERVER_DOWN, _ldap.TIMEOUT, _ldap.CONNECT_ERROR) as exc:
            self._conn = None
            raise TemporaryFailure(f"LDAP server {self.cfg.uri} unreachable: {_desc(exc)}")
        except _ldap.LDAPError as exc:
            raise StepFailed(f"LDAP password change for {dn} failed: {_desc(exc)}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.unbind_ext(None, None)
            except Exception:
                pass
            self._conn = None
