"""A real slapd for tests: unprivileged, from a slapd.conf in a temporary directory."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = "dc=wod,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
PEOPLE_DN = f"ou=people,{SUFFIX}"

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{admin}"
rootpw {rootpw}
directory {dir}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Slapd:
    uri: str
    proc: subprocess.Popen
    admin_password: str

    def connect(self, dn: str = ADMIN_DN, password: str | None = None):  # type: ignore
        import ldap

        conn = ldap.initialize(self.uri)
        conn.simple_bind_s(dn, self.admin_password if password is None else password)
        return conn

    def add_person(self, uid: str, password: str = "initial-Pw1") -> str:
        import ldap.modlist

        dn = f"uid={uid},{PEOPLE_DN}"
        conn = self.connect()
        conn.add_s(dn, ldap.modlist.addModlist({
            "objectClass": [b"inetOrgPerson"], "uid": [uid.encode()],
            "cn": [uid.encode()], "sn": [uid.encode()],
            "userPassword": [password.encode()]}))
        conn.unbind_s()
        return dn

    def can_bind(self, dn: str, password: str) -> bool:
        import ldap

        try:
            self.connect(dn, password).unbind_s()
            return True
        except ldap.INVALID_CREDENTIALS:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(workdir: Path, admin_password: str = "admin-secret") -> Slapd:
    import ldap
    import ldap.modlist

    (workdir / "db").mkdir(parents=True)
    conf = workdir / "slapd.conf"
    conf.write_text(CONF.format(dir=workdir, suffix=SUFFIX, admin=ADMIN_DN,
                                rootpw=admin_password))
    port = free_port()
    uri = f"ldap://127.0.0.1:{port}/"
    # -d 0: stay in the foreground, so the test owns the process.
    proc = subprocess.Popen(["slapd", "-d", "0", "-f", str(conf), "-h", uri],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Slapd(uri, proc, admin_password)
    deadline = time.monotonic() + 20
    while True:
        try:
            conn = server.connect()
            break
        except ldap.SERVER_DOWN:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"slapd did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    conn.add_s(SUFFIX, ldap.modlist.addModlist({
        "objectClass": [b"dcObject", b"organization"], "dc": [b"wod"], "o": [b"wod"]}))
    conn.add_s(PEOPLE_DN, ldap.modlist.addModlist({
        "objectClass": [b"organizationalUnit"], "ou": [b"people"]}))
    conn.unbind_s()
    return server
