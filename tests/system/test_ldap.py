"""LDAP password changes against a real slapd started by the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.configs import edit_config
from support.cli import invoke
from support import slapd
from wod_backend.config import Ldap
from wod_backend.errors import StepFailed, TemporaryFailure
from wod_backend.remote.ldap import LdapConnection, student_dn

pytestmark = pytest.mark.skipif(shutil.which("slapd") is None, reason="needs slapd")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = slapd.start(tmp_path_factory.mktemp("slapd"))
    yield srv
    srv.stop()


def ldap_cfg(server, tmp_path: Path, password: str | None = None, **kw) -> Ldap:
    pw = tmp_path / "ldap.pass"
    pw.write_text((password or server.admin_password) + "\n")
    pw.chmod(0o600)
    return Ldap(uri=kw.pop("uri", server.uri), bind_dn=slapd.ADMIN_DN, password_file=pw,
                people_dn=slapd.PEOPLE_DN, timeout=3, **kw)


def test_new_password_binds_old_does_not(server, tmp_path):
    dn = server.add_person("student21", "old-Password1")
    conn = LdapConnection(ldap_cfg(server, tmp_path))
    conn.set_password("student21", "new-Password2")
    conn.close()
    assert server.can_bind(dn, "new-Password2")
    assert not server.can_bind(dn, "old-Password1")
    stored = server.connect().search_s(dn, 0, attrlist=["userPassword"])[0][1]
    assert b"new-Password2" not in stored["userPassword"][0]  # hashed by the server


def test_dn_template_for_other_account_names(server, tmp_path):
    server.add_person("wks-student22", "old")
    cfg = ldap_cfg(server, tmp_path, dn_template="uid=wks-{user},{people_dn}")
    assert student_dn(cfg, "student22") == f"uid=wks-student22,{slapd.PEOPLE_DN}"
    LdapConnection(cfg).set_password("student22", "fresh-Pw3")
    assert server.can_bind(f"uid=wks-student22,{slapd.PEOPLE_DN}", "fresh-Pw3")


def test_dn_special_characters_are_escaped(server, tmp_path):
    cfg = ldap_cfg(server, tmp_path)
    assert student_dn(cfg, "a,b=c") == f"uid=a\\,b\\=c,{slapd.PEOPLE_DN}"


def test_missing_entry_is_a_clear_error(server, tmp_path):
    with pytest.raises(StepFailed, match="LDAP entry uid=student99,ou=people,.* does not "
                                         "exist"):
        LdapConnection(ldap_cfg(server, tmp_path)).set_password("student99", "x-Pw12345")


def test_wrong_bind_password_is_not_temporary(server, tmp_path):
    with pytest.raises(StepFailed, match="bind as cn=admin,dc=wod,dc=test refused"):
        LdapConnection(ldap_cfg(server, tmp_path, "wrong")).set_password("student21", "x")


def test_unreachable_server_is_temporary_exit_75(tmp_path):
    cfg = Ldap(uri=f"ldap://127.0.0.1:{slapd.free_port()}/", bind_dn="cn=x",
               password_file=tmp_path / "p", people_dn="ou=p", timeout=2)
    (tmp_path / "p").write_text("x")
    with pytest.raises(TemporaryFailure) as info:
        LdapConnection(cfg).set_password("student1", "pw")
    assert info.value.exit_code == 75 and "unreachable" in info.value.reason


def test_create_of_ldap_workshop_sets_ldap_password(server, tmp_path, demo):
    """A workshop flagged ldap: CREATE changes the LDAP password, delivered in the notebook."""
    import json
    from support.cli import REPO

    content = tmp_path / "content"
    shutil.copytree(REPO / "workshops-public", content)
    meta = content / "WKSHP-API101" / "wod.yml"
    meta.write_text(meta.read_text().replace("ldap: false", "ldap: true"))
    (content / "WKSHP-API101" / "0-ReadMeFirst.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["pw={{ PASSSTU }}"]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    cfg_text = edit_config(demo, {"content": {"public": str(content)}}).read_text()
    pw = tmp_path / "ldap.pass"
    pw.write_text(server.admin_password)
    pw.chmod(0o600)
    cfg_text += (f"ldap: {{uri: '{server.uri}', bind_dn: '{slapd.ADMIN_DN}', "
                 f"password_file: {pw}, people_dn: '{slapd.PEOPLE_DN}'}}\n")
    demo.write_text(cfg_text)
    dn = server.add_person("student7", "before-Pw1")
    r = invoke(["--config", str(demo), "create", "WKSHP-API101", "7"])
    assert r.code == 0, r.err + r.out
    nb = demo.parent / "homes/student7/WKSHP-API101/0-ReadMeFirst.ipynb"
    password = json.loads(nb.read_text())["cells"][0]["source"][0].split("=", 1)[1]
    assert server.can_bind(dn, password) and not server.can_bind(dn, "before-Pw1")
