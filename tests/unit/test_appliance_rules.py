"""Appliance workshops without a second host: the configuration's two forms, the steps
each action plans (LDAP workshops keep their password), IP-WKSHP-X and APPLIANCE from
`appliances` unless `variables` says otherwise, the recorded host keys root reads."""

from __future__ import annotations

import os
import stat

import pytest

from support.cli import invoke
from support.content import make_workshop
from wod_backend.config import Appliance
from wod_backend.errors import ConfigError
from wod_backend.intake.pipeline import order_from_args
from wod_backend.planning.catalog import Catalog, workshop_variables
from wod_backend.planning.plan import make_plan
from wod_backend.system import appliance_link
from wod_backend.system.student import Student


@pytest.fixture
def app_site(site):
    make_workshop(site.public, "WKSHP-Mono", "name: m\nmonoappliance: true\nreset: true\n")
    make_workshop(site.public, "WKSHP-Multi", "name: x\nmultiappliance: true\n"
                                              "range: [11, 20]\n")
    make_workshop(site.public, "WKSHP-Ldap", "name: l\nmonoappliance: true\nldap: true\n")
    make_workshop(site.public, "WKSHP-Hooks", "name: h\nmonoappliance: true\n")
    site.hook(site.hooks_public, "scripts/reset-WKSHP-Mono.sh", "true\n")
    site.config.write_text(site.config.read_text() + """
appliances:
  WKSHP-Mono: 10.20.0.5
  WKSHP-Multi: {host: 10.20.1.100, port: 2222, account: wodadmin, timeout: 7}
  WKSHP-Ldap: {host: 10.20.0.6}
  WKSHP-Hooks: {host: 10.20.0.7, manage: false}
""")
    return site


def names(site, action, workshop, students="12"):
    cfg = site.load()
    order = order_from_args(cfg, action, workshop, students, "42", internal=True)
    plan = make_plan(cfg, Catalog(cfg), order)
    return [s.name for s in plan.students[0].steps]


def test_both_forms_load_as_values(app_site):
    cfg = app_site.load()
    assert cfg.appliances["WKSHP-Mono"] == Appliance(host="10.20.0.5")
    multi = cfg.appliances["WKSHP-Multi"]
    assert (multi.host, multi.port, multi.account, multi.timeout) == (
        "10.20.1.100", 2222, "wodadmin", 7)
    assert cfg.known_hosts == app_site.config.parent / "known_hosts"


@pytest.mark.parametrize("value, phrase", [
    ("{port: 22}", "appliances.WKSHP-X.host: missing required value"),
    ("{host: 10.0.0.1, port: 70000}", "appliances.WKSHP-X.port: expected 1..65535"),
    ("{host: 10.0.0.1, account: 'root;id'}", "appliances.WKSHP-X.account: not a user name"),
    ("{host: 10.0.0.1, key: id_rsa}", "appliances.WKSHP-X.key: must be an absolute path"),
    ("{host: 10.0.0.1, colour: red}", "appliances.WKSHP-X.colour: unknown key"),
    ("[10.0.0.1]", "appliances.WKSHP-X: expected an IPv4 address or a mapping"),
])
def test_a_bad_appliance_is_refused_with_its_key(site, value, phrase):
    site.config.write_text(site.config.read_text() + f"appliances: {{WKSHP-X: {value}}}\n")
    r = invoke(["--config", str(site.config), "config", "check"])
    assert r.code == 78 and phrase in r.err, r.err


def test_create_reaches_the_appliance_before_anything_changes(app_site):
    steps = names(app_site, "CREATE", "WKSHP-Mono")
    assert steps[:3] == ["new_password", "render_notebooks", "appliance_account"]
    # The key goes there after it is made and before anything is delivered.
    at = steps.index("ssh_key")
    assert steps[at:at + 5] == ["ssh_key", "appliance_host_key", "appliance_password",
                                "appliance_home", "appliance_key"]
    assert steps.index("appliance_key") < steps.index("deliver_notebooks")


@pytest.mark.parametrize("action, expected", [
    ("CLEANUP", ["appliance_account", "appliance_home", "appliance_password"]),
    ("PURGE", ["appliance_account", "appliance_home", "appliance_password"]),
    ("RESET", ["appliance_account", "appliance_revoke", "appliance_password"]),
    ("EVICT", ["appliance_account", "appliance_revoke", "appliance_password"]),
])
def test_leaving_locks_the_appliance_side(app_site, action, expected):
    steps = names(app_site, action, "WKSHP-Mono")
    assert [s for s in steps if s.startswith("appliance_")] == expected


def test_ldap_workshops_keep_their_appliance_password_and_hooks_workshops_their_hooks(
        app_site):
    assert "appliance_password" not in names(app_site, "CREATE", "WKSHP-Ldap")
    assert "appliance_password" not in names(app_site, "CLEANUP", "WKSHP-Ldap")
    assert "appliance_home" in names(app_site, "CREATE", "WKSHP-Ldap")
    assert not [s for s in names(app_site, "CREATE", "WKSHP-Hooks")
                if s.startswith("appliance_")]


def test_dry_run_shows_the_appliance_steps(app_site):
    r = invoke(["--config", str(app_site.config), "create", "WKSHP-Multi", "12", "--dry-run"])
    assert r.code == 0, r.out
    assert "appliance_account  [10.20.1.100:2222 and the range's next addresses]" in r.out
    assert "appliance_key  [~/.ssh/authorized_keys: the student's key]" in r.out


def test_variables_win_over_appliances_for_ip_but_appliance_follows_appliances(app_site):
    cfg = app_site.load()
    assert workshop_variables(cfg, Catalog(cfg), "WKSHP-Mono")["IP-WKSHP-Mono"] == "10.20.0.5"
    app_site.config.write_text(app_site.config.read_text().replace(
        "variables: {BRANDING: Test}", "variables: {BRANDING: Test, IP-WKSHP-Mono: 10.9.9.9}"))
    cfg = app_site.load()
    assert workshop_variables(cfg, Catalog(cfg), "WKSHP-Mono")["IP-WKSHP-Mono"] == "10.9.9.9"
    order = order_from_args(cfg, "CREATE", "WKSHP-Multi", "13", "0")
    meta = Catalog(cfg).meta(Catalog(cfg).get("WKSHP-Multi"))
    assert Student.of(cfg, order, meta, 13).template_vars()["APPLIANCE"] == "10.20.1.102"


def test_recorded_host_keys_by_pattern_and_roots_trust(app_site, tmp_path):
    cfg = app_site.load()
    cfg.known_hosts.write_text("10.20.0.5 ssh-ed25519 AAAAkey1\n"
                               "[10.20.1.100]:2222 ssh-ed25519 AAAAkey2 comment\n# note\n")
    assert appliance_link.pinned(cfg, "10.20.1.100", 2222, "WKSHP-Multi") == [
        "[10.20.1.100]:2222 ssh-ed25519 AAAAkey2"]
    with pytest.raises(ConfigError, match="host key is not recorded: run `wod-backend setup`"):
        appliance_link.pinned(cfg, "10.20.1.101", 2222, "WKSHP-Multi")
    if os.geteuid() == 0:  # root reads only a file root alone can change
        cfg.known_hosts.chmod(0o666)
        with pytest.raises(ConfigError, match="must be root's alone"):
            appliance_link.recorded(cfg)
        cfg.known_hosts.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
