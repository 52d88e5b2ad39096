"""LDAP: replace a student's password with the server-side Password Modify operation.

The server hashes the new password with its own policy (RFC 3062), so no hash scheme is
guessed here. A server that cannot be reached is a temporary failure (the MTA retries);
a student entry that does not exist is a clear, permanent error.
"""

from __future__ import annotations

from typing import Any

from wod_backend.config import Ldap, read_secret
from wod_backend.errors import StepFailed, TemporaryFailure


def student_dn(cfg: Ldap, user: str) -> str:
    from ldap.dn import escape_dn_chars

    return cfg.dn_template.format(user=escape_dn_chars(user), people_dn=cfg.people_dn)


class LdapConnection:
    """One bound connection, opened on first use, for the whole order."""

    def __init__(self, cfg: Ldap):
        self.cfg = cfg
        self._conn: Any = None

    def _connect(self) -> Any:
        import ldap

        if self._conn is None:
            conn = ldap.initialize(self.cfg.uri)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, self.cfg.timeout)
            conn.set_option(ldap.OPT_TIMEOUT, self.cfg.timeout)
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.protocol_version = 3
            try:
                conn.simple_bind_s(self.cfg.bind_dn, read_secret(self.cfg.password_file))
            except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR) as exc:
                raise TemporaryFailure(f"LDAP server {self.cfg.uri} unreachable: "
                                       f"{_desc(exc)}")
            except ldap.INVALID_CREDENTIALS:
                raise StepFailed(f"LDAP bind as {self.cfg.bind_dn} refused: wrong "
                                 f"credentials in {self.cfg.password_file}")
            self._conn = conn
        return self._conn

    def set_password(self, user: str, password: str) -> None:
        import ldap

        dn = student_dn(self.cfg, user)
        conn = self._connect()
        try:
            conn.passwd_s(dn, None, password)
        except ldap.NO_SUCH_OBJECT:
            raise StepFailed(f"LDAP entry {dn} does not exist")
        except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR) as exc:
            self._conn = None
            raise TemporaryFailure(f"LDAP server {self.cfg.uri} unreachable: {_desc(exc)}")
        except ldap.LDAPError as exc:
            raise StepFailed(f"LDAP password change for {dn} failed: {_desc(exc)}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.unbind_s()
            except Exception:
                pass
            self._conn = None


def _desc(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else {}
    if isinstance(arg, dict):
        return str(arg.get("desc", "")) + (f" ({arg['info']})" if arg.get("info") else "")
    return str(exc)
