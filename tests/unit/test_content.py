"""Workshop content: catalog, `workshops check`, templates in a sandbox, delivery rules."""

from __future__ import annotations

import json

import pytest

from support.configs import edit_config
from support.cli import invoke
from support.content import make_workshop, notebook
from wod_backend.system import templating
from wod_backend.system.templating import TemplateFailure, render, render_notebook


def check(site, name=None):
    args = ["--config", str(site.config), "workshops", "check", "--json"]
    r = invoke(args + ([name] if name else []))
    problems: dict = {}
    for p in json.loads(r.out):  # several problems of one file are joined by newlines
        key = (p["workshop"], p["path"], p["severity"])
        problems[key] = (problems[key] + "\n" if key in problems else "") + p["message"]
    return r.code, problems


def test_check_finds_each_defect(site):
    make_workshop(site.public, "WKSHP-Good", "name: Good\ncapacity: 3\nrange: [1, 5]\n")
    make_workshop(site.public, "WKSHP-Defects", "name: D\ncapacity: many\nreset: maybe\n"
                  "range: [5, 1]\nflavour: mint\n", files={
                      "broken.ipynb": '{"cells": [',
                      "syntax.py": "print('{{ STDID }')\n",
                      "undefined.sh": "echo {{ NOBODY_SETS_THIS }}\n",
                      "chlg-only.ipynb": notebook(("markdown",
                                                   "{% if MODEWS == 'CHLG' %}{{ CHLG_ONLY }}"
                                                   "{% endif %}")),
                      "old-checkpoint.ipynb": "not json, but never delivered",
                      "picture.png": b"\x89PNG {{ not a template }}"})
    (site.public / "WKSHP-Defects" / "0-ReadMeFirst.ipynb").unlink()
    code, problems = check(site)
    assert code == 1
    d = "WKSHP-Defects"
    joined = problems[(d, "wod.yml", "error")]
    for phrase in ("capacity must be a whole number", "reset must be true or false",
                   "range must be a range with min <= max (min 5 > max 1)"):
        assert phrase in joined
    assert "missing: it is the notebook participants open first" in \
        problems[(d, "0-ReadMeFirst.ipynb", "error")]
    assert "not a valid notebook (JSON)" in problems[(d, "broken.ipynb", "error")]
    assert "TemplateSyntaxError" in problems[(d, "syntax.py", "error")]
    assert "'NOBODY_SETS_THIS' is undefined" in problems[(d, "undefined.sh", "error")]
    assert "'CHLG_ONLY' is undefined" in problems[(d, "chlg-only.ipynb", "error")]
    assert not any(k[1] in ("old-checkpoint.ipynb", "picture.png") for k in problems)
    assert not any(k[0] == "WKSHP-Good" for k in problems)


def test_check_unknown_keys_are_warnings(site):
    make_workshop(site.public, "WKSHP-Extra", "name: E\nvideoUrl: https://v\n")
    code, problems = check(site, "WKSHP-Extra")
    assert code == 0
    assert problems == {("WKSHP-Extra", "wod.yml", "warning"): "unknown keys ignored: videoUrl"}


def test_public_wins_private_fills_in(site):
    make_workshop(site.public, "WKSHP-Both", "name: public one\n")
    make_workshop(site.private, "WKSHP-Both", "name: private one\n")
    make_workshop(site.private, "WKSHP-Secret", "name: private only\n")
    rows = {r["folder"]: r for r in json.loads(
        invoke(["--config", str(site.config), "workshops", "list", "--json"]).out)}
    assert rows["WKSHP-Both"]["origin"] == "public" and rows["WKSHP-Both"]["shadowed_private"]
    assert rows["WKSHP-Both"]["name"] == "public one"
    assert rows["WKSHP-Secret"]["origin"] == "private"
    r = invoke(["--config", str(site.config), "create", "WKSHP-Secret", "3"])
    assert r.code == 0, r.out
    assert (site.root / "homes/student3/WKSHP-Secret/0-ReadMeFirst.ipynb").is_file()


def test_variables_precedence_and_nested_templates(site):
    make_workshop(site.public, "WKSHP-Vars", files={"0-ReadMeFirst.ipynb": notebook(
        ("markdown", "{{ A }}|{{ B }}|{{ URL }}|{{ hostvars[inventory_hostname]['IP-WKSHP-Vars'] }}"
                     "|{{ inventory_hostname }}"))})
    (site.public / "variables_WKSHP-Vars.yml").write_text("A: public\nB: public\n"
                                                          "URL: 'https://{{ A }}.example'\n")
    (site.private / "variables_WKSHP-Vars.yml").write_text("B: private\n")
    edit_config(site.config, {"variables": {"A": "operator", "IP-WKSHP-Vars": "10.2.3.4"},
                              "inventory_hostname": "backend1"})
    assert invoke(["--config", str(site.config), "create", "WKSHP-Vars", "2"]).code == 0
    nb = json.loads((site.root / "homes/student2/WKSHP-Vars/0-ReadMeFirst.ipynb").read_text())
    assert nb["cells"][0]["source"] == [
        "public|private|https://public.example|10.2.3.4|backend1"]


def test_notebook_values_with_quotes_and_newlines_keep_json_valid():
    nb = notebook(("code", 'x = "{{ V }}"\ny = 1'))
    ctx = templating.context_for({"V": 'a"b\\c\nd'}, "127.0.0.1")
    out = json.loads(render_notebook(nb.encode(), ctx, "t"))
    assert "".join(out["cells"][0]["source"]) == 'x = "a"b\\c\nd"\ny = 1'


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lookup('file', '/etc/passwd') }}",
    "{{ query('pipe', 'id') }}",
    "{% include '/etc/passwd' %}",
    "{{ self._TemplateReference__context }}",
    "{{ '/etc/passwd' | fileglob }}",
    "{{ config.items() }}",
])
def test_hostile_templates_cannot_read_files_or_run_code(template):
    with pytest.raises(TemplateFailure):
        out = render(template, templating.context_for({}, "127.0.0.1"), "hostile")
        assert "root:" not in out  # pragma: no cover - the render must fail first


def test_ansible_filters_available():
    ctx = templating.context_for({"L": [[1], [2, [3]]], "D": {"a": 1}}, "127.0.0.1")
    assert render("{{ 'a-b' | regex_replace('-', '_') }}", ctx) == "a_b"
    assert render("{{ 'hi' | b64encode }}", ctx) == "aGk="
    assert render("{{ L | flatten | to_json }}", ctx) == "[1, 2, 3]"
    assert render("{{ D | combine({'b': 2}) | to_json }}", ctx) == '{"a": 1, "b": 2}'
    assert render("{{ 'yes' | bool | ternary('on', 'off') }}", ctx) == "on"
    assert render("{{ missing | default('dflt') }}", ctx) == "dflt"


def test_defective_content_is_never_delivered(site):
    make_workshop(site.public, "WKSHP-Half", files={"1-Broken.ipynb": '{"cells": ['})
    r = invoke(["--config", str(site.config), "create", "WKSHP-Half", "2"])
    assert r.code == 78 and "1-Broken.ipynb: not a valid notebook" in r.err
    assert not (site.root / "homes" / "student2").exists()
