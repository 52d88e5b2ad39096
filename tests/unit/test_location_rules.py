"""This host as a WoD location, without root: the original's installation files migrated,
the frontend's locations rows read in their real forms, refusals that make doctor red,
the kernels the content needs, postfix keys merged between two backends, and the
managed hub's configuration as JupyterHub reads it."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from support.configs import edit_config
from support.cli import DATA, invoke
from support.content import make_workshop
from support.frontend import FrontendServer
from wod_backend import config
from wod_backend.host import firewall
from wod_backend.ops import kernels
from wod_backend.host import location
from wod_backend.host import mailconf
from wod_backend.ops.contentcheck import check as content_check

WOD = DATA / "wod-install"


def test_migration_from_the_original_installers_files(tmp_path):
    home = WOD / "home"
    out = tmp_path / "migrated"
    r = invoke(["config", "init", "--from-wod", str(WOD / "etc" / "wod.yml"),
                "--group-vars", str(home / "wod-install/ansible/group_vars/all.yml"),
                "--group-vars", str(home / "wod-backend/ansible/group_vars/all.yml"),
                "--generated", str(home / "wod-private/ansible/generated/production"),
                "--private-sh", str(home / "wod-private/scripts/wod-private.sh"), str(out)])
    assert r.code == 0, r.err
    assert "mapped WODPOSTPORT -> mail.listen_port: 10025" in r.out
    assert "mapped WODBASESTDID -> students.base_id: 2000" in r.out
    assert "mapped IP-WKSHP-Docker101 -> appliances.WKSHP-Docker101: 192.0.2.41" in r.out
    cfg = config.load(str(out / "config.yml"), host=False)
    assert cfg.mail.backend_user == "wodmig"
    assert cfg.mail.listen_port == 10025 and cfg.mail.listen == "all"
    assert cfg.mail.domains == ["wod-be1.example.org", "notebooks1.example.org"]
    assert cfg.intake.allowed_senders == ["wod-noreply@wod-api.example.org"]
    assert cfg.intake.secret_file is None  # the original frontend never signs
    assert (cfg.students.min, cfg.students.max, cfg.students.base_id,
            cfg.students.uid_base) == (1, 50, 2000, 3000)
    assert cfg.frontend is not None and cfg.frontend.url == "http://wod-api.example.org:8021/api"
    assert cfg.frontend.username == "moderator"
    assert cfg.frontend.password_file.read_text() == "Mod3rat0r-Secret\n"
    assert cfg.frontend.password_file.stat().st_mode & 0o777 == 0o600
    assert cfg.jupyterhub is not None and cfg.jupyterhub.manage
    assert cfg.jupyterhub.url == "http://wod-be1.example.org:8000"
    assert {k: a.host for k, a in cfg.appliances.items()} == {
        "WKSHP-Docker101": "192.0.2.41", "WKSHP-Ansible101": "192.0.2.42"}
    # Template variables it does not map are carried; placeholders and secrets are not.
    assert cfg.variables["BRANDING"] == "WoD Developer"
    assert cfg.variables["SURVEYURL"] == "https://survey.example.org/wod"
    assert cfg.variables["SSHPORT-WKSHP-Docker101"] == 14101
    assert cfg.variables["LLM101_API_KEY"] == "test-api"
    for gone in ("VAULTPWD", "WODBETOKEN", "WODLDAPPWD", "SURVEYCHALURL",
                 "SSHPORT-WKSHP-Podman101", "IP-WKSHP-DataVisu101", "LLM101_BASE_URL"):
        assert gone not in cfg.variables
    text = (out / "config.yml").read_text()
    for secret in ("VeryComplexPasswd1234", "2c0246e2c8564dc6ac7b12c544b25d77",
                   "Mod3rat0r-Secret", "MotDePasse"):
        assert secret not in text and secret not in r.out
    # A second run never overwrites the operator's edits.
    again = invoke(["config", "init", "--from-wod", str(WOD / "etc" / "wod.yml"), str(out)])
    assert again.code == 78 and "exists: not overwritten" in again.err


def test_the_example_leaves_signing_off(tmp_path):
    r = invoke(["config", "init", "--example", str(tmp_path / "ex")])
    assert r.code == 0, r.err
    text = (tmp_path / "ex" / "config.yml").read_text()
    assert "\n  # secret_file:" in text and "never signs" in text
    assert "listen_port: 10025" in text
    cfg = config.load(str(tmp_path / "ex" / "config.yml"), host=False)
    assert cfg.intake.secret_file is None and cfg.mail.listen_port == 10025


@pytest.fixture
def frontend():
    fe = FrontendServer().start()
    fe.add_students(range(2001, 2011))
    try:
        yield fe
    finally:
        fe.stop()


def _with_frontend(demo: Path, fe: FrontendServer) -> config.Config:
    (demo.parent / "fe.pass").write_text("mod-Secret1\n")
    (demo.parent / "fe.pass").chmod(0o600)
    edit_config(demo, {
        "students": {"max": 10, "base_id": 2000},
        "frontend": {"url": fe.url, "username": "moderator",
                     "password_file": str(demo.parent / "fe.pass")},
        "jupyterhub": {"url": "https://notebooks1.example.org:8000",
                       "token_file": str(demo.parent / "fe.pass")}})
    return config.load(str(demo))


def test_the_frontends_location_row_checked(demo, frontend):
    cfg = _with_frontend(demo, frontend)
    check = location.check_location(cfg)
    assert check.status == "FAIL" and "no row of the frontend's locations names this host" \
        in check.detail
    assert check.fix == ("add a locations row: name=notebooks1.example.org, basestdid=2000, "
                         "proto=https, port=8000")
    # The installer's rows: port a string, basestdid a number, or null on an old row.
    row = frontend.add_location("notebooks1.example.org", basestdid=None, proto="https",
                                port="8000", base=2000)
    check = location.check_location(cfg)
    assert check.status == "FAIL"
    assert check.detail == ("row notebooks1.example.org: basestdid is None, "
                            "students.base_id is 2000")
    row["basestdid"] = "2000"
    row["port"] = "443"
    check = location.check_location(cfg)
    assert check.detail == "row notebooks1.example.org: port is '443', the hub listens on 8000"
    row["port"] = "8000"
    check = location.check_location(cfg)
    assert (check.status, check.detail) == (
        "ok", "row notebooks1.example.org matches; 10 student rows point at this hub")
    frontend.state.students[2004]["url"] = \
        "https://notebooks2.example.org:8000/user/student4/lab?"
    check = location.check_location(cfg)
    assert check.status == "FAIL" and check.detail.startswith(
        "1 of 10 student rows of notebooks1.example.org are wrong, first: student row 2004 "
        "has url 'https://notebooks2.example.org:8000/user/student4/lab?'")


def test_all_recent_orders_refused_for_one_reason_is_red(demo):
    secret = demo.parent / "intake.secret"
    secret.write_text(secrets.token_hex(16) + "\n")
    secret.chmod(0o600)
    demo.write_text(demo.read_text() + f"intake: {{secret_file: {secret}}}\n")
    cfg = config.load(str(demo))
    assert location.check_refusals(cfg).status == "ok"
    for n in (3, 4, 5):  # the unmodified frontend's form: no signature, no blank line
        mail = f"From: api@frontend\nSubject: CREATE {n} 4711\nWKSHP-Python101\n"
        r = invoke(["--config", str(demo), "mail"], input=mail.encode())
        assert r.code == 0  # discarded: exit 0, which is why doctor must say it
    check = location.check_refusals(cfg)
    assert check.status == "FAIL"
    assert check.detail == ("the last 3 mails were all refused: policy: unsigned order "
                            "(no X-WoD-Signature header)")
    assert "unmodified frontend never signs" in check.fix
    status = invoke(["--config", str(demo), "status", "3"])
    assert "refused in the last 24 h (see history):\n      3  policy: unsigned order" \
        in status.out
    doctor = invoke(["--config", str(demo), "doctor"])
    assert doctor.code == 1 and "[FAIL] intake: the last 3 mails were all refused" in doctor.out


PUBLISHED_BASH = {"display_name": "Bash", "language": "bash", "name": "bash"}


def _published_notebook(kernelspec: dict) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "execution_count": None,
                                  "metadata": {}, "outputs": [], "source": ["echo hi"]}],
                       "metadata": {"kernelspec": kernelspec, "language_info": {
                           "name": kernelspec["language"]}},
                       "nbformat": 4, "nbformat_minor": 4}, indent=1)


def test_workshops_check_names_notebooks_the_hub_cannot_run(site, tmp_path):
    make_workshop(site.public, "WKSHP-Go101", files={
        "0-ReadMeFirst.ipynb": _published_notebook(PUBLISHED_BASH),
        "1-Go.ipynb": _published_notebook({"display_name": "Go", "language": "go",
                                           "name": "gophernotes"})})
    base = site.config.read_text()
    hub = (f"jupyterhub: {{url: 'http://127.0.0.1:8000', token_file: {tmp_path}/t, "
           f"manage: true, venv: {tmp_path}/no-venv")
    (tmp_path / "t").write_text("x\n")
    (tmp_path / "t").chmod(0o600)
    site.config.write_text(base + hub + "}\n")
    problems = [p for p in content_check(site.load()) if p.severity == "error"]
    assert [(p.workshop, p.path, p.message) for p in problems] == [
        ("WKSHP-Go101", "1-Go.ipynb", "kernel 'gophernotes' is not on the managed hub (add "
                                      "it to jupyterhub.kernels)")]
    # A kernelspec directory installed by other means (Go's kernel cannot be built here).
    spec = tmp_path / "kernels" / "gophernotes"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/usr/local/bin/gophernotes",
                                                           "{connection_file}"],
                                                  "display_name": "Go", "language": "go"}))
    site.config.write_text(base + hub + f", kernels: {{dirs: [{spec}]}}}}\n")
    assert [p for p in content_check(site.load()) if p.severity == "error"] == []
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    kernels.copy_spec(spec, venv)
    assert kernels.installed(venv) == {"python3", "gophernotes"}
    assert kernels.same_spec(spec, venv)


def _two(tmp_path: Path, demo: Path) -> tuple[config.Config, config.Config]:
    out = []
    for user, relay in (("wodone", "192.0.2.1"), ("wod-two", "192.0.2.2")):
        path = tmp_path / f"{user}.yml"
        path.write_text(demo.read_text() + f"mail: {{backend_user: {user}, domains: "
                        f"[{user}.example.org]}}\nintake: {{allowed_relays: [{relay}]}}\n")
        out.append(config.load(str(path), host=False))
    return out[0], out[1]


def test_two_backends_merge_postfix_keys_and_own_their_maps(tmp_path, demo):
    one, two = _two(tmp_path, demo)
    current = {"mydestination": "$myhostname, localhost", "smtpd_recipient_restrictions": "",
               "authorized_submit_users": "static:anyone"}
    assert mailconf.clients_file(one) != mailconf.clients_file(two)
    d = tmp_path / "postfix"
    one = config.Config(**{**one.__dict__, "setup": config.Setup(postfix_dir=d)})
    two = config.Config(**{**two.__dict__, "setup": config.Setup(postfix_dir=d)})
    d.mkdir()
    for cfg in (one, two):
        mailconf.recipients_file(cfg).write_bytes(mailconf.recipient_map(cfg))
    first = mailconf.postfix_settings(one, current)
    second = mailconf.postfix_settings(two, {**current, **first})
    again = mailconf.postfix_settings(one, {**current, **second})
    assert again == {**first, **{k: second[k] for k in ("smtpd_restriction_classes",
                                                        "smtpd_recipient_restrictions",
                                                        "mydestination",
                                                        "authorized_submit_users")}}
    assert second["smtpd_recipient_restrictions"] == (
        f"check_recipient_access texthash:{d}/wod-backend-recipients-wod_two, "
        f"check_recipient_access texthash:{d}/wod-backend-recipients-wodone, "
        f"permit_mynetworks, reject_unauth_destination")
    assert second["smtpd_restriction_classes"] == "wod_backend_only_wod_two " \
                                                  "wod_backend_only_wodone"
    assert second["mydestination"] == ("$myhostname, localhost, wodone.example.org, "
                                       "wod-two.example.org")
    assert second["authorized_submit_users"] == "root, wodone, wod-two"
    assert mailconf.recipient_map(two).decode().splitlines()[1:] == [
        "wod-two+probe@\tOK", "wod-two@\twod_backend_only_wod_two"]
    # Its map removed (that backend gone): its entry goes at the next setup of the other.
    mailconf.recipients_file(two).unlink()
    assert "wod_two" not in mailconf.postfix_settings(one, {**current, **second})[
        "smtpd_recipient_restrictions"]


def test_the_students_firewall_rule(demo_cfg, tmp_path):
    cfg = config.Config(**{**demo_cfg.__dict__, "mail": config.Mail(
        backend_user="wod", listen_port=10025)})
    assert firewall.rule(cfg) == ("tcp dport { 25, 10025 } meta skuid 2001-2020 reject with "
                                  "tcp reset")
    text = firewall.ruleset(cfg).decode()
    assert "table inet wod_backend_wod\ndelete table inet wod_backend_wod\n" in text


def test_the_managed_hubs_configuration_as_jupyterhub_reads_it(demo, tmp_path):
    from traitlets.config import Config as TraitletsConfig

    from wod_backend.host import hubconfig

    token = tmp_path / "hub.token"
    token.write_text("t0ken\n")
    token.chmod(0o600)
    demo.write_text(demo.read_text() + f"jupyterhub: {{url: 'https://hub.example.org:8443', "
                    f"token_file: {token}, manage: true, hub_port: 18081, "
                    f"proxy_api_port: 18001, tls_cert: {tmp_path}/c.pem, tls_key: "
                    f"{tmp_path}/k.pem, cull_idle_minutes: 30}}\n")
    cfg = config.load(str(demo))
    assert cfg.jupyterhub is not None
    text = hubconfig.render(cfg, cfg.jupyterhub, "/usr/bin/chp").decode()
    c = TraitletsConfig()
    scope = {"get_config": lambda: c}
    exec(compile(text, "jupyterhub_config.py", "exec"), scope)
    assert c.JupyterHub.shutdown_on_logout is True
    assert c.JupyterHub.hub_port == 18081 and c.JupyterHub.port == 8443
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:18001"
    assert c.JupyterHub.ssl_cert == f"{tmp_path}/c.pem"
    # The longest shipped workshop lasts 4 hours: a login lasts as long, no longer.
    assert c.JupyterHub.cookie_max_age_days == pytest.approx(4 / 24, abs=1e-3)
    culler = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"][0]
    assert "--timeout=1800" in culler["command"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "delete:servers" in roles["idle-culler"]["scopes"]
    assert roles["wod-backend"]["scopes"] == ["list:users!group=students",
                                              "read:users!group=students",
                                              "servers!group=students"]
    assert c.JupyterHub.spawner_class.__name__ == "WodSpawner"


def test_doctor_is_red_while_the_catalog_needs_a_kernel_the_hub_lacks(site, tmp_path):
    make_workshop(site.public, "WKSHP-Rust101", files={
        "0-ReadMeFirst.ipynb": _published_notebook(PUBLISHED_BASH),
        "1-Rust.ipynb": _published_notebook({"display_name": "Rust", "language": "rust",
                                             "name": "rust"})})
    venv = tmp_path / "hub-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    for name in ("bash", "ssh"):
        (kernels.kernels_dir(venv) / name).mkdir(parents=True)
        (kernels.kernels_dir(venv) / name / "kernel.json").write_text("{}")
    (tmp_path / "t").write_text("x\n")
    (tmp_path / "t").chmod(0o600)
    site.config.write_text(site.config.read_text() + f"jupyterhub: {{url: 'http://127.0.0.1:"
                           f"8000', token_file: {tmp_path}/t, manage: true, venv: {venv}}}\n")
    check = location.check_kernels(site.load())
    assert (check.status, check.detail) == (
        "FAIL", "the catalog needs kernels the hub lacks: rust (1 notebooks, e.g. "
                "WKSHP-Rust101/1-Rust.ipynb)")
    assert check.fix == "add rust to jupyterhub.kernels (pip or dirs), then setup"


def test_setup_names_a_hub_port_another_program_holds(demo, tmp_path):
    import socket

    from wod_backend.errors import ConfigError
    from wod_backend.host import managed_hub as hub

    with socket.socket() as other:  # another JupyterHub's API port
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        (tmp_path / "t").write_text("x\n")
        (tmp_path / "t").chmod(0o600)
        demo.write_text(demo.read_text() + f"jupyterhub: {{url: 'http://127.0.0.1:1', "
                        f"token_file: {tmp_path}/t, manage: true, hub_port: {taken}}}\n")
        with pytest.raises(ConfigError) as err:
            hub.ports_free(config.load(str(demo)))
    assert err.value.reason == (f"config key jupyterhub.hub_port: port {taken} on 127.0.0.1 "
                                f"is already in use (another JupyterHub?): choose a free port")


def test_under_systemd_the_servers_run_in_the_students_slices(demo, tmp_path, monkeypatch):
    from traitlets.config import Config as TraitletsConfig

    from wod_backend.host import hubconfig

    token = tmp_path / "hub.token"
    token.write_text("t0ken\n")
    token.chmod(0o600)
    demo.write_text(demo.read_text() + f"jupyterhub: {{url: 'http://127.0.0.1:8000', "
                    f"token_file: {token}, manage: true}}\n")
    cfg = config.load(str(demo))
    assert cfg.jupyterhub is not None
    monkeypatch.setattr(hubconfig, "systemd_is_init", lambda: True)
    c = TraitletsConfig()
    exec(compile(hubconfig.render(cfg, cfg.jupyterhub, None), "jupyterhub_config.py",
                 "exec"), {"get_config": lambda: c})
    assert [k.__name__ for k in c.JupyterHub.spawner_class.__mro__][:2] == [
        "WodSpawner", "SystemdSpawner"]


def test_doctor_warns_when_postfix_cannot_hear_a_remote_frontend(demo):
    (demo.parent / "fe.pass").write_text("x\n")
    (demo.parent / "fe.pass").chmod(0o600)
    base = demo.read_text() + (f"frontend: {{url: 'http://wod-api.example.org:8021/api', "
                               f"username: moderator, password_file: {demo.parent}/fe.pass}}\n")
    demo.write_text(base + "mail: {backend_user: wod, domains: [nb1.example.org], "
                           "listen_port: 10025}\n")
    check = location.check_mail_path(config.load(str(demo), host=False))
    assert check.status == "warn" and check.detail == (
        "orders to wod@nb1.example.org on port 10025, but postfix listens on the loopback "
        "only (mail.listen: loopback-only) and the frontend (wod-api.example.org) is not on "
        "this host: its orders cannot arrive")
    demo.write_text(base + "mail: {backend_user: wod, domains: [nb1.example.org], "
                           "listen_port: 10025, listen: all}\n")
    check = location.check_mail_path(config.load(str(demo), host=False))
    assert (check.status, check.detail) == ("ok", "orders to wod@nb1.example.org on port "
                                                  "10025")
