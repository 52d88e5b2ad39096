"""Per-student variables in the original's layout (pass/variables_<WKSHP>_<STDID>.yml):
the operator's plain file, a `!vault` value, a whole-file vault, and a file a create
hook writes with ansible-vault before the notebooks are rendered; the values reach the
student's notebook and never the log; root's side checks their shape."""

from __future__ import annotations

import json
import shutil

import pytest

from support.cli import DATA, invoke
from support.content import make_workshop, notebook
from wod_backend.errors import BadOrder
from wod_backend.privileged.request import StepsRequest, decode, encode
from wod_backend.planning.step_kinds import StepKind

VAULT_PASSWORD = "vault-pw-1"  # the fixtures' (tests/data/pass) vault password
HOOK = """#!/bin/bash
# As the original's create-WKSHP-X.sh: a per-seat value, vault-encrypted into the
# student's pass file, before the notebooks are rendered.
set -euo pipefail
port=$((8000 + WOD_STUDENT))
ansible-vault encrypt_string --vault-password-file "$WOD_VAULT_PASSWORD_FILE" "$port" \\
  --name HTTPPORT >> "$WOD_PASS_DIR/variables_${WOD_FOLDER}_${WOD_STUDENT}.yml" 2>/dev/null
"""


@pytest.fixture
def vars_site(site):
    vault = site.root / "vault.pass"
    vault.write_text(VAULT_PASSWORD + "\n")
    vault.chmod(0o600)
    site.config.write_text(site.config.read_text().replace(
        "timeout: 5}", f"timeout: 60, vault_password_file: {vault}}}"))
    shutil.copytree(DATA / "pass", site.hooks_private / "pass")
    make_workshop(site.public, "WKSHP-Vars", "name: v\n", files={
        "1-Lab.ipynb": notebook(("markdown", "key={{ APIKEY | default('none') }} user="
                                 "{{ LABUSER | default('none') }} port={{ HTTPPORT | "
                                 "default('none') }} stdid={{ STDID }}"))})
    site.hook(site.hooks_public, "scripts/create-WKSHP-Vars.sh", HOOK)
    return site


def delivered(site, n: int) -> str:
    nb = json.loads((site.root / "homes" / f"student{n}" / "WKSHP-Vars" /
                     "1-Lab.ipynb").read_text())
    return "".join("".join(c["source"]) for c in nb["cells"])


@pytest.mark.parametrize("n, key, user", [
    (3, "plain-key-3", "lab3"),            # the operator's plain file
    (4, "vaulted-key-4", "lab4"),          # a !vault value
    (5, "whole-file-key-5", "lab5"),       # a file encrypted whole
    (6, "none", "none"),                   # no operator's file: the hook's alone
])
def test_the_students_variables_reach_their_notebook(vars_site, n, key, user):
    r = invoke(["--config", str(vars_site.config), "create", "WKSHP-Vars", str(n)])
    assert r.code == 0, r.out + r.err
    assert f"key={key} user={user} port={8000 + n} stdid={n}" in delivered(vars_site, n)
    # Nothing of the values in the journal or the log.
    history = invoke(["--config", str(vars_site.config), "history", "--json"]).out
    log = (vars_site.root / "state" / "wod-backend.log").read_text()
    for secret in (key, str(8000 + n)):
        if secret != "none":
            assert secret not in history and secret not in log


def test_a_wrong_vault_password_stops_the_order_with_the_file_named(vars_site):
    (vars_site.root / "vault.pass").write_text("not-the-password\n")
    r = invoke(["--config", str(vars_site.config), "create", "WKSHP-Vars", "4"])
    assert r.code == 78
    assert "variables_WKSHP-Vars_4.yml: a vault value does not decrypt" in r.out + r.err
    assert not (vars_site.root / "homes" / "student4" / "WKSHP-Vars").exists()


def _request(variables: object) -> bytes:
    req = json.loads(encode(StepsRequest("CREATE", 3, "WKSHP-Vars", "0", None,
                                         (StepKind.DELIVER_NOTEBOOKS,))))
    req["variables"] = variables
    return json.dumps(req).encode()


@pytest.mark.parametrize("variables, phrase", [
    ({"../x": "1"}, "is not a variable name"),
    ({"A": {"nested": 1}}, "expected text, a number"),
    ({"A": "x" * 5000}, "expected text, a number"),
    ({f"V{i}": 1 for i in range(201)}, "at most 200 variables"),
    (["A"], "expected a mapping"),
])
def test_root_checks_the_shape_of_what_the_backend_user_sends(vars_site, variables, phrase):
    with pytest.raises(BadOrder, match=phrase):
        decode(vars_site.load(), _request(variables))
    ok = decode(vars_site.load(), _request({"APIKEY": "k", "PORTS": [1, 2]}))
    assert ok.variables == {"APIKEY": "k", "PORTS": [1, 2]}
