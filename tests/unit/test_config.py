"""Configuration: validated at load, one line naming the key, exit 78."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.cli import REPO, invoke, run_wod
from wod_backend import config
from wod_backend.errors import ConfigError

BASE = f"content: {{public: {REPO}/workshops-public}}\nstate_dir: {{state}}\n"


def cfg_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.yml"
    path.write_text(BASE.replace("{state}", str(tmp_path / "state")) + extra)
    return path


def secret(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_text("s3cret-value\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("extra, phrase", [
    ("bogus: 1\n", "config key bogus: unknown key"),
    ("students: {min: 1, mx: 5}\n", "config key students.mx: unknown key"),
    ("students: {min: one}\n", "config key students.min: expected an integer"),
    ("students: {min: true}\n", "config key students.min: expected an integer"),
    ("students: {min: 50, max: 5}\n", "students.min/max"),
    ("students: {uid_base: 10}\n", "students.uid_base: must be at least 1000"),
    ("students: {home_root: relative/dir}\n", "students.home_root: must be an absolute"),
    ("frontend: {url: http://x}\n", "config key frontend.username: missing required value"),
    ("jupyterhub: 5\n", "config key jupyterhub: expected a mapping"),
    ("variables: [a, b]\n", "config key variables: expected a mapping"),
    ("passwords: {length: 4}\n", "config key passwords"),
    ("content: {public: /nonexistent/dir}\n", "config key content.public: /nonexistent/dir is not a directory"),
])
def test_bad_config_names_the_key(tmp_path, extra, phrase):
    path = cfg_file(tmp_path, extra)
    if extra.startswith("content:"):  # replace, not add
        path.write_text(extra)
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert phrase in info.value.reason
    assert info.value.exit_code == 78


def test_missing_required_content(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("state_dir: /tmp/x\n")
    with pytest.raises(ConfigError, match="config key content: missing required value"):
        config.load(str(path))


def test_not_yaml_and_not_a_mapping(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("students: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(path))
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        config.load(str(path))


def test_secret_file_readable_by_others_is_refused(tmp_path):
    s = secret(tmp_path, 0o644)
    path = cfg_file(tmp_path, f"jupyterhub: {{url: http://127.0.0.1:1, token_file: {s}}}\n")
    with pytest.raises(ConfigError, match="jupyterhub.token_file: secret file .* is "
                                          "accessible by group or others"):
        config.load(str(path))
    s.chmod(0o600)
    assert config.load(str(path)).jupyterhub.token_file == s


def test_secret_file_missing(tmp_path):
    path = cfg_file(tmp_path, "ldap: {uri: ldap://x, bind_dn: cn=a, people_dn: ou=p, "
                              f"password_file: {tmp_path}/nope}}\n")
    with pytest.raises(ConfigError, match="ldap.password_file: cannot read secret file"):
        config.load(str(path))


def test_secret_file_owned_by_someone_else(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    s = secret(tmp_path)
    os.chown(s, 65534, 65534)
    path = cfg_file(tmp_path, f"jupyterhub: {{url: http://h, token_file: {s}}}\n")
    with pytest.raises(ConfigError, match="must be owned by root"):
        config.load(str(path))


def test_config_path_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("WOD_BACKEND_CONFIG", str(tmp_path / "from-env.yml"))
    assert config.resolve_path(None) == tmp_path / "from-env.yml"
    assert config.resolve_path("/x.yml") == Path("/x.yml")
    monkeypatch.delenv("WOD_BACKEND_CONFIG")
    assert config.resolve_path(None) == Path("/etc/wod-backend/config.yml")


def test_defaults(tmp_path):
    cfg = config.load(str(cfg_file(tmp_path)))
    assert (cfg.students.min, cfg.students.max, cfg.students.base_id) == (1, 100, 0)
    assert cfg.students.home_root == Path("/student") and cfg.students.uid_base == 2000
    assert cfg.frontend is None and cfg.jupyterhub is None and cfg.ldap is None
    assert cfg.passwords.length >= 12 and not set("0O1lI") & set(cfg.passwords.alphabet)


def test_cli_bad_config_exit_78_one_line(tmp_path):
    path = cfg_file(tmp_path, "bogus: 1\n")
    r = invoke(["--config", str(path), "workshops", "list"])
    assert r.code == 78
    assert r.err.strip() == "wod-backend: config key bogus: unknown key"


def test_process_bad_config_exit_78_from_env(tmp_path):
    path = cfg_file(tmp_path, "students: {max: lots}\n")
    p = run_wod(["mail"], input=b"Subject: CREATE 1 0\n\nWKSHP-API101\n",
                env={"WOD_BACKEND_CONFIG": str(path)})
    assert p.returncode == 78
    assert p.stderr.decode().strip().startswith("wod-backend: config key students.max:")
    assert b"Traceback" not in p.stderr
    assert not (tmp_path / "state").exists()  # nothing was touched


def test_demo_config_is_valid_and_self_contained(demo):
    cfg = config.load(str(demo))
    assert cfg.students.manage_accounts is False
    assert str(cfg.students.home_root).startswith(str(demo.parent))
    assert str(cfg.state_dir).startswith(str(demo.parent))
    assert cfg.frontend is None and cfg.jupyterhub is None and cfg.ldap is None
