"""The product as an operator gets it: `python -m build` gives an sdist and a wheel (from
that sdist), the wheel installs into a fresh venv outside the checkout, and the demo runs
from it; the scheduled work as cron entries and as systemd units."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.cli import DATA, REPO
from wod_backend import __version__

SAMPLE = DATA / "mails" / "samples" / "frontend-create.eml"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    p = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return out


def test_sdist_and_wheel_carry_the_shipped_content(built):
    import tarfile
    import zipfile

    sdist = built / f"wod_backend-{__version__}.tar.gz"
    wheel = built / f"wod_backend-{__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("workshops-public/WKSHP-Python101/wod.yml", "workshops-public/skeleton",
                    "scripts/sudoers.example", "scripts/create-WKSHP-Ansible101.sh",
                    "playbooks/WKSHP-Ansible101/reset.yml", "procmailrc.example"):
        assert any(n.startswith(f"wod_backend/shipped/{shipped}") for n in names), shipped
    assert not any(n.startswith("tests/") for n in names)
    members = tarfile.open(sdist).getnames()
    assert f"wod_backend-{__version__}/workshops-public/WKSHP-API101/wod.yml" in members


def test_wheel_in_a_fresh_venv_runs_the_demo(built, tmp_path):
    root = Path(tempfile.mkdtemp(prefix="wod-wheel-", dir="/var/tmp"))
    try:
        venv = root / "venv"
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        wheel = built / f"wod_backend-{__version__}-py3-none-any.whl"
        p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
                           capture_output=True, text=True, timeout=1200)
        assert p.returncode == 0, p.stderr[-2000:]
        wod = str(venv / "bin" / "wod-backend")
        demo = root / "demo"
        p = subprocess.run([wod, "config", "init", "--demo", str(demo)], cwd="/",
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        text = (demo / "config.yml").read_text()
        assert f"{venv}/lib/python3" in text and str(REPO) not in text  # not the checkout
        p = subprocess.run([wod, "--config", str(demo / "config.yml"), "mail"], cwd="/",
                           input=SAMPLE.read_bytes(), capture_output=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert (demo / "homes/student12/WKSHP-API101/0-ReadMeFirst.ipynb").is_file()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _config(tmp_path: Path, resets: str) -> object:
    from wod_backend import config

    (tmp_path / "homes").mkdir(exist_ok=True)
    path = tmp_path / "config.yml"
    path.write_text(f"""
students: {{min: 1, max: 9, home_root: {tmp_path}/homes}}
content: {{public: {REPO}/workshops-public}}
state_dir: {tmp_path}/state
mail: {{backend_user: wod}}
schedule: {{flush: true, resets: [{resets}]}}
""")
    return config.load(str(path), host=False)


def test_cron_entries(tmp_path):
    from wod_backend.host.mailconf import cron_file

    cfg = _config(tmp_path, '"30 3 * * * WKSHP-Ansible101 1-9"')
    text = cron_file(cfg).decode()
    wod = Path(sys.executable).parent / "wod-backend"
    assert text.splitlines()[2:] == [
        f"WOD_BACKEND_CONFIG={tmp_path}/config.yml",
        f"* * * * *  wod  {wod} outbox flush >/dev/null",
        f"@reboot  wod  {wod} worker start >/dev/null",
        f"* * * * *  wod  {wod} worker start >/dev/null",
        f"17 * * * *  root  {wod} backups prune >/dev/null",
        f"@reboot  root  {wod} privd start >/dev/null",
        f"* * * * *  root  {wod} privd start >/dev/null",
        "@reboot  root  /usr/sbin/nft -f /etc/nftables.d/wod_backend_wod.nft",
        f"* * * * *  wod  {wod} sweep >/dev/null",
        f"30 3 * * *  wod  {wod} reset WKSHP-Ansible101 1-9 --customer 0"]


def test_worker_unit_runs_the_worker_as_the_backend_user(tmp_path):
    from wod_backend.worker.service import unit

    cfg = _config(tmp_path, '"30 3 * * * WKSHP-Ansible101 1-9"')
    text = unit(cfg).decode()
    wod = Path(sys.executable).parent / "wod-backend"
    assert "User=wod\n" in text
    assert f"Environment=WOD_BACKEND_CONFIG={tmp_path}/config.yml\n" in text
    assert f"ExecStart={wod} worker run\n" in text
    # Stopping lets the running orders finish: the main process gets the TERM, its
    # children (the orders) are left to end.
    assert "KillMode=mixed\n" in text


def test_systemd_units_verify(tmp_path):
    from wod_backend.host.mailconf import systemd_units

    cfg = _config(tmp_path, '"30 3 * * * WKSHP-Ansible101 1-9"')
    units = systemd_units(cfg)
    assert sorted(units) == ["wod-backend-backups.service", "wod-backend-backups.timer",
                             "wod-backend-firewall-wod.service",
                             "wod-backend-outbox.service", "wod-backend-outbox.timer",
                             "wod-backend-reset-0.service", "wod-backend-reset-0.timer",
                             "wod-backend-sweep.service", "wod-backend-sweep.timer"]
    assert b"User=root\n" in units["wod-backend-backups.service"]  # backups.dir is root's
    assert b"ExecStart=" in units["wod-backend-sweep.service"] and \
        b"ExecStartPost" not in units["wod-backend-sweep.service"]  # no expiry_grace
    assert b"OnCalendar=*-*-* 3:30:00" in units["wod-backend-reset-0.timer"]
    assert b"User=wod\n" in units["wod-backend-outbox.service"]
    assert b"SuccessExitStatus=75" in units["wod-backend-outbox.service"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed here: the units' content is checked above")
    for name, content in units.items():
        (tmp_path / name).write_bytes(content)
    p = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in units
                                             if n.endswith(".timer"))],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_bad_schedule_is_refused_with_its_key(tmp_path):
    from wod_backend.errors import ConfigError

    with pytest.raises(ConfigError, match="config key schedule.resets: 'nightly WKSHP-X'"):
        _config(tmp_path, '"nightly WKSHP-X"')


def test_managed_hub_systemd_unit_verifies(tmp_path):
    from wod_backend import config
    from wod_backend.host.managed_hub import systemd_unit

    (tmp_path / "homes").mkdir()
    (tmp_path / "hub.token").write_text("t\n")
    (tmp_path / "hub.token").chmod(0o600)
    path = tmp_path / "config.yml"
    path.write_text(f"""
students: {{min: 1, max: 9, home_root: {tmp_path}/homes}}
content: {{public: {REPO}/workshops-public}}
state_dir: {tmp_path}/state
jupyterhub: {{url: 'http://127.0.0.1:8000', token_file: {tmp_path}/hub.token, manage: true,
             venv: {tmp_path}/venv, data_dir: {tmp_path}/data}}
""")
    unit = systemd_unit(config.load(str(path)))
    assert f"ExecStart={tmp_path}/venv/bin/jupyterhub -f {tmp_path}/data/jupyterhub_config.py"\
        .encode() in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed here: the unit's content is checked above")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    exe = tmp_path / "venv" / "bin" / "jupyterhub"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "wod-backend-hub.service").write_bytes(unit)
    p = subprocess.run([analyze, "verify", str(tmp_path / "wod-backend-hub.service")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
