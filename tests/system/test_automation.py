"""Workshop automation: hook scripts and real ansible-playbook runs, compile, appliances."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from support.cli import invoke
from support.content import make_workshop
from wod_backend.config import Appliance
from wod_backend.planning.appliances import target
from wod_backend.planning.catalog import WorkshopMeta
from wod_backend.errors import ConfigError

ENV_DUMP = """#!/bin/bash
env | grep '^WOD_' | sort > "$WOD_STATE_DIR/{phase}-$WOD_USER.env"
[ -n "${{WOD_PASSWORD_FILE:-}}" ] && cp "$WOD_PASSWORD_FILE" "$WOD_STATE_DIR/{phase}-pw" \
  && stat -c %a "$WOD_PASSWORD_FILE" > "$WOD_STATE_DIR/{phase}-pw-mode"
echo "$WOD_PASSWORD_FILE" > "$WOD_STATE_DIR/{phase}-pw-path"
echo ran {phase} >> "$WOD_STATE_DIR/order"
"""


def env_of(site, phase: str, user: str) -> dict[str, str]:
    text = (site.root / "state" / f"{phase}-{user}.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def test_hooks_run_in_documented_order_with_their_inputs(site):
    make_workshop(site.public, "WKSHP-Hooked", "name: Hooked\n")
    for tree, origin in ((site.hooks_public, "public"), (site.hooks_private, "private")):
        for phase in ("create", "post-copy"):
            site.hook(tree, f"scripts/{phase}-WKSHP-Hooked.sh",
                      ENV_DUMP.format(phase=f"{origin}-{phase}"))
            site.hook(tree, f"playbooks/WKSHP-Hooked/{phase}.yml", f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.shell: echo ran {origin}-{phase}-playbook >> {{{{ wod_state_dir }}}}/order
""")
    r = invoke(["--config", str(site.config), "create", "WKSHP-Hooked", "4",
                "--customer", "31"])
    assert r.code == 0, r.err + r.out
    order = (site.root / "state" / "order").read_text().split("\n")
    assert [line.split(" ", 1)[1] for line in order if line] == [
        "public-create", "public-create-playbook", "private-create",
        "private-create-playbook", "public-post-copy", "public-post-copy-playbook",
        "private-post-copy", "private-post-copy-playbook"]
    env = env_of(site, "public-create", "student4")
    assert env["WOD_STUDENT"] == "4" and env["WOD_USER"] == "student4"
    assert env["WOD_WORKSHOP"] == "WKSHP-Hooked" and env["WOD_MODE"] == "WKSHP"
    assert env["WOD_CUSTOMER"] == "31" and env["WOD_ACTION"] == "CREATE"
    assert env["WOD_HOME"] == str(site.root / "homes" / "student4")
    assert env["WOD_HOOKS_DIR"] == str(site.hooks_public)
    assert env["WOD_CONTENT_DIR"] == str(site.public / "WKSHP-Hooked")
    assert (site.root / "state" / "public-create-pw-mode").read_text().strip() == "600"
    password_file = (site.root / "state" / "public-create-pw-path").read_text().strip()
    assert not os.path.exists(password_file)  # removed after the hook
    readme = json.loads((site.root / "homes/student4/WKSHP-Hooked/0-ReadMeFirst.ipynb")
                        .read_text())
    assert readme["cells"][0]["source"] == ["# WKSHP-Hooked 4"]


def scratch_entries() -> set[str]:
    """What is in root's scratch anchor (the tests run as root)."""
    from wod_backend.system.trust import scratch_anchor

    return set(os.listdir(scratch_anchor()))


def test_playbook_gets_extra_vars_and_interpreter(site):
    make_workshop(site.public, "WKSHP-Play", "name: Play\nmonoappliance: true\n")
    site.config.write_text(site.config.read_text() + "appliances: {WKSHP-Play: {host: 10.1.2.3, manage: false}}\n")
    site.hook(site.hooks_public, "playbooks/WKSHP-Play/create.yml", """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ wod_state_dir }}/vars.json"
        content: "{{ {'user': wod_user, 'stdid': STDID, 'target': wod_target,
                      'appliance': APPLIANCE, 'mode': MODEWS, 'branding': BRANDING,
                      'pwlen': PASSSTU | length, 'python': ansible_python_interpreter,
                      'host': inventory_hostname} | to_json }}"
""")
    before = scratch_entries()
    r = invoke(["--config", str(site.config), "create", "CHLG-Play", "6"])
    assert r.code == 0, r.err + r.out
    got = json.loads((site.root / "state" / "vars.json").read_text())
    import sys
    assert got == {"user": "student6", "stdid": 6, "target": "10.1.2.3",
                   "appliance": "10.1.2.3", "mode": "CHLG", "branding": "Test",
                   "pwlen": 12, "python": sys.executable, "host": "localhost"}
    assert scratch_entries() == before  # root's scratch (vars file) removed
    assert not (site.root / "state" / "tmp").exists()  # root never used state_dir


def test_failing_hook_fails_the_order_with_its_tail(site):
    make_workshop(site.public, "WKSHP-Bad")
    site.hook(site.hooks_public, "scripts/create-WKSHP-Bad.sh",
              "for i in $(seq 1 20000); do echo line $i; done\necho the real cause >&2\n"
              "exit 3\n")
    r = invoke(["--config", str(site.config), "create", "WKSHP-Bad", "2", "--json"])
    assert r.code == 70
    out = json.loads(r.out)
    assert out["outcome"] == "failed"
    assert "create-WKSHP-Bad.sh bash exited 3" in out["reason"]
    assert "the real cause" in out["reason"] and len(out["reason"]) < 1000
    assert not (site.root / "homes/student2/WKSHP-Bad").exists()  # stopped before delivery
    hist = json.loads(invoke(["--config", str(site.config), "history", "--json"]).out)[0]
    assert "line 1\n" in hist["detail"] and "line 20000" in hist["detail"]
    assert hist["outcome"] == "failed"


def test_hanging_hook_is_killed_at_its_timeout(site):
    make_workshop(site.public, "WKSHP-Slow")
    site.hook(site.hooks_public, "scripts/create-WKSHP-Slow.sh",
              "echo started\nsleep 300 &\nwait\n")
    r = invoke(["--config", str(site.config), "create", "WKSHP-Slow", "2"])
    assert r.code == 70 and "bash timed out: started" in r.out
    assert "create-WKSHP-Slow.sh bash timed out" in r.err  # the warning log line


def test_failing_playbook_fails_the_order(site):
    make_workshop(site.public, "WKSHP-PlayBad", "name: x\nreset: true\n")
    site.hook(site.hooks_public, "playbooks/WKSHP-PlayBad/reset.yml", """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.fail: {msg: appliance is on fire}
""")
    r = invoke(["--config", str(site.config), "reset", "WKSHP-PlayBad", "3"])
    assert r.code == 70
    assert "reset.yml ansible-playbook exited 2" in r.out and "appliance is on fire" in r.out


def test_password_never_on_any_command_line(site):
    make_workshop(site.public, "WKSHP-Ps", files={
        "0-ReadMeFirst.ipynb": '{"cells": [{"cell_type": "markdown", "metadata": {}, '
                               '"source": ["{{ PASSSTU }}"]}], "metadata": {}, '
                               '"nbformat": 4, "nbformat_minor": 5}'})
    # The hook looks at every process's argv while it and its parents run.
    site.hook(site.hooks_public, "scripts/post-copy-WKSHP-Ps.sh", r"""
pw=$(cat "$WOD_PASSWORD_FILE")
found=clean
for f in /proc/[0-9]*/cmdline; do
  if tr '\0' ' ' < "$f" 2>/dev/null | grep -qF -- "$pw"; then found="found in $f"; fi
done
echo "$found" > "$WOD_STATE_DIR/argv-check"
""")
    site.hook(site.hooks_public, "playbooks/WKSHP-Ps/post-copy.yml", """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.shell: |
        for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done > {{ wod_state_dir }}/argv-all
""")
    r = invoke(["--config", str(site.config), "create", "WKSHP-Ps", "9"])
    assert r.code == 0, r.err
    assert (site.root / "state" / "argv-check").read_text().strip() == "clean"
    nb = json.loads((site.root / "homes/student9/WKSHP-Ps/0-ReadMeFirst.ipynb").read_text())
    password = nb["cells"][0]["source"][0]
    assert len(password) == 12
    argv_all = (site.root / "state" / "argv-all").read_text()
    assert "ansible-playbook" in argv_all and password not in argv_all


def test_reset_workshop_without_reset_hook_is_a_config_error(site):
    make_workshop(site.public, "WKSHP-NoHook", "name: x\nreset: true\n")
    r = invoke(["--config", str(site.config), "reset", "WKSHP-NoHook", "3"])
    assert r.code == 78 and "has no reset hook" in r.err
    r = invoke(["--config", str(site.config), "workshops", "check", "WKSHP-NoHook"])
    assert r.code == 1 and "flagged reset but has no reset hook" in r.out


@pytest.mark.skipif(shutil.which("shc") is None, reason="needs shc")
def test_compile_step_renders_and_compiles_with_shc(site):
    make_workshop(site.public, "WKSHP-Comp", "name: x\ncompile: [secret-tool.sh]\n")
    site.hook(site.hooks_public, "scripts/secret-tool.sh",
              "#!/bin/bash\necho 'tool for {{ STUDENT }} in {{ MODEWS }}'\n")
    before = scratch_entries()
    r = invoke(["--config", str(site.config), "create", "WKSHP-Comp", "5"])
    assert r.code == 0, r.err + r.out
    binary = site.root / "homes/student5/secret-tool"
    assert binary.is_file() and os.access(binary, os.X_OK)
    import subprocess
    out = subprocess.run([str(binary)], capture_output=True, timeout=30).stdout
    assert out == b"tool for student5 in WKSHP\n"
    assert b"{{ STUDENT }}" not in binary.read_bytes()
    assert not (site.root / "homes/student5/secret-tool.sh").exists()
    assert scratch_entries() == before
    assert not (site.root / "state" / "tmp").exists()


def test_compile_script_missing_is_reported(site):
    make_workshop(site.public, "WKSHP-Comp2", "name: x\ncompile: [nope.sh]\n")
    r = invoke(["--config", str(site.config), "workshops", "check", "WKSHP-Comp2"])
    assert r.code == 1 and "script nope.sh to compile is in no hooks tree" in r.out


def _meta(mono=False, multi=False, rng=(1, 40)):
    return WorkshopMeta(name="x", monoappliance=mono, multiappliance=multi, range=rng)


class _Cfg:
    def __init__(self, appliances):
        self.appliances = {k: Appliance(host=v) for k, v in appliances.items()}


@pytest.mark.parametrize("base, mono, multi, rng, student, expected", [
    ("10.0.0.20", True, False, (1, 40), 7, "10.0.0.20"),
    ("10.0.0.20", False, True, (1, 40), 1, "10.0.0.20"),
    ("10.0.0.20", False, True, (1, 40), 7, "10.0.0.26"),
    ("10.0.0.200", False, True, (101, 140), 140, "10.0.0.239"),
    ("192.168.3.1", False, True, (1, 254), 254, "192.168.3.254"),
    ("10.0.0.20", False, False, (1, 40), 7, None),
])
def test_appliance_addresses(base, mono, multi, rng, student, expected):
    meta = _meta(mono, multi, rng)
    assert target(_Cfg({"WKSHP-X": base}), meta, "WKSHP-X", student) == expected


@pytest.mark.parametrize("base, multi, rng, student, phrase", [
    (None, True, (1, 40), 3, "needs an appliance: set appliances.WKSHP-X"),
    ("x.x.x.x", True, (1, 40), 3, "is not an IPv4 address"),
    ("10.0.0.0", False, (1, 40), 3, "placeholder or not a host address"),
    ("0.0.0.0", False, (1, 40), 3, "placeholder"),
    ("10.0.0.250", True, (1, 40), 10, "would be 10.0.0.259: outside the address range"),
    ("10.0.0.20", True, (5, 40), 3, "outside workshop WKSHP-X's range 5..40"),
    ("10.0.0.20", True, None, 3, "has no range"),
])
def test_appliance_address_errors(base, multi, rng, student, phrase):
    cfg = _Cfg({} if base is None else {"WKSHP-X": base})
    with pytest.raises(ConfigError, match=phrase.replace(".", r"\.").replace("(", r"\(")):
        target(cfg, _meta(mono=not multi, multi=multi, rng=rng), "WKSHP-X", student)


def test_workshops_check_reports_missing_appliance(site):
    make_workshop(site.public, "WKSHP-Appl", "name: x\nmultiappliance: true\nrange: [1, 9]\n")
    r = invoke(["--config", str(site.config), "workshops", "check"])
    assert r.code == 1
    assert "WKSHP-Appl: wod.yml: workshop WKSHP-Appl needs an appliance" in r.out
