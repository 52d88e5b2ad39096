"""Real content in its published forms (tests/data/published, tests/data/defects).

The wod.yml files are written as the public collection writes them for the frontend's
seeder (`%YAML 1.1`, `compile: false`, `range: [546-565]`, `['1981-1985']`, display
keys); the notebooks carry `{% if MODEWS == 'CHLG' %}...{% endif %}` cells followed by
blank lines and `{% raw %}` lines between the JSON strings of an output. Rendering is
compared with Ansible's own `template` module run on the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import DATA, invoke
from wod_backend.planning import meta
from wod_backend.system import templating
from wod_backend.planning.catalog import load_yaml_file, parse_meta

PUBLISHED = DATA / "published"
DEFECTS = DATA / "defects"
VARIABLES = {"BRANDING": "Test Brand", "IP-WKSHP-API101": "10.1.2.3",
             "BACKEND_HOST": "backend.example.org"}


@pytest.fixture
def pubsite(tmp_path: Path) -> Path:
    """Published content as the public root, the defects as the private one; the reset
    hook of WKSHP-Docker101 lives with the operator's private hooks."""
    hooks = tmp_path / "private-hooks" / "scripts"
    hooks.mkdir(parents=True)
    (hooks / "reset-WKSHP-Docker101.sh").write_text("true\n")
    (tmp_path / "homes").mkdir()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"""
students: {{min: 1, max: 2000, home_root: {tmp_path}/homes, manage_accounts: false}}
content: {{public: {PUBLISHED}, private: {DEFECTS}}}
hooks: {{private: {tmp_path}/private-hooks}}
state_dir: {tmp_path}/state
variables: {json.dumps(VARIABLES)}
appliances: {{WKSHP-Docker101: {{host: 10.9.8.7, manage: false}}}}
""")
    return cfg


@pytest.mark.parametrize("folder, expected", [
    ("WKSHP-API101", {"range": (1, 6), "compile": (), "capacity": 20, "duration": 2.0}),
    ("WKSHP-Docker101", {"range": (1551, 1580), "reset": True, "monoappliance": True}),
    ("WKSHP-Grommet", {"range": (546, 565), "compile": ()}),
    ("WKSHP-RUST101", {"range": (1981, 1985), "capacity": 5}),
])
def test_published_wod_yml_is_read_as_meant(folder, expected):
    m = parse_meta(folder, load_yaml_file(PUBLISHED / folder / "wod.yml"))
    for key, value in expected.items():
        assert getattr(m, key) == value, key
    assert m.unknown_keys == ()  # the seeder's keys are known: no warning


@pytest.mark.parametrize("value, expected", [
    ([1, 6], (1, 6)), (["1981-1985"], (1981, 1985)), ("1981-1985", (1981, 1985)),
    (["1981", "1985"], (1981, 1985)), (["546-565"], (546, 565)), (" 3 - 3 ", (3, 3)),
])
def test_range_forms(value, expected):
    assert meta.as_range(value) == expected


@pytest.mark.parametrize("value", [["5-1"], [5, 1], "1-", [1], [1, 2, 3], "a-b", [True, 2],
                                   ["-1", "3"], {"min": 1}])
def test_range_defects(value):
    with pytest.raises(ValueError):
        meta.as_range(value)


@pytest.mark.parametrize("value, expected", [
    (False, ()), (None, ()), ("", ()), ([], ()), ("a.sh,b.sh", ("a.sh", "b.sh")),
    (" a.sh , b.sh ", ("a.sh", "b.sh")), (["a.sh"], ("a.sh",))])
def test_compile_forms(value, expected):
    assert meta.as_scripts(value) == expected


@pytest.mark.parametrize("value", [True, "../etc/passwd", ["a/b.sh"], [".."], 3, ["a.sh", 2]])
def test_compile_defects(value):
    with pytest.raises(ValueError):
        meta.as_scripts(value)


@pytest.mark.parametrize("value, expected", [(True, True), ("true", True), ("false", False),
                                             ("False", False), (False, False)])
def test_flag_forms(value, expected):
    assert meta.as_bool(value) is expected


def test_check_reports_only_real_defects(pubsite):
    r = invoke(["--config", str(pubsite), "workshops", "check", "--json"])
    found = {(p["workshop"], p["path"], p["severity"]): p["message"] for p in json.loads(r.out)}
    assert r.code == 1
    assert set(found) == {("WKSHP-BadRange", "wod.yml", "error"),
                          ("WKSHP-NoScript", "wod.yml", "error"),
                          ("WKSHP-BadNotebook", "1-Broken.ipynb", "error")}
    assert "min 5 > max 1" in found[("WKSHP-BadRange", "wod.yml", "error")]
    assert found[("WKSHP-NoScript", "wod.yml", "error")] == \
        "script missing-script.sh to compile is in no hooks tree's scripts/"
    assert "not a valid notebook (JSON), even after rendering" in \
        found[("WKSHP-BadNotebook", "1-Broken.ipynb", "error")]


def test_list_shows_every_workshop(pubsite):
    rows = {r["folder"]: r for r in json.loads(
        invoke(["--config", str(pubsite), "workshops", "list", "--json"]).out)}
    assert set(rows) == {"WKSHP-API101", "WKSHP-Docker101", "WKSHP-Grommet", "WKSHP-RUST101",
                         "WKSHP-BadRange", "WKSHP-NoScript", "WKSHP-BadNotebook"}
    assert [f for f, r in rows.items() if "error" in r] == ["WKSHP-BadRange"]
    assert rows["WKSHP-Docker101"]["reset"] is True and rows["WKSHP-RUST101"]["capacity"] == 5


def _context(folder: str, student: int, mode: str) -> dict:
    return {**VARIABLES, "STDID": student, "PASSSTU": "Abc123xyz", "STUDENT": f"student{student}",
            "WORKSHOP": folder, "MODEWS": mode, "CUSTOMER": "0"}


def _ansible_render(files: list[Path], context: dict, out: Path) -> None:
    """Ansible's own template module on `files`, the reference's way (inventory host
    127.0.0.1, the variables as extra vars)."""
    out.mkdir(parents=True)
    (out / "inventory.yml").write_text("all:\n  hosts:\n    127.0.0.1:\n"
                                       "      ansible_connection: local\n")
    (out / "vars.json").write_text(json.dumps({**context, "files": [str(f) for f in files],
                                               "out": str(out),
                                               "ansible_python_interpreter": sys.executable}))
    (out / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - template: {src: '{{ item }}', dest: '{{ out }}/{{ item | basename }}'}\n"
        "      loop: '{{ files }}'\n")
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOME": str(out / ".ansible")}
    p = subprocess.run([playbook, "-i", str(out / "inventory.yml"), "-e",
                        f"@{out / 'vars.json'}", str(out / "play.yml")], capture_output=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stdout.decode()[-2000:]


def _cells(data: bytes) -> list[tuple[str, str, object]]:
    nb = json.loads(data)
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list)
             else c["source"], c.get("outputs")) for c in nb["cells"]]


@pytest.mark.parametrize("mode", ["WKSHP", "CHLG"])
def test_rendering_matches_ansible(tmp_path, mode):
    files = sorted(p for p in PUBLISHED.rglob("*") if p.is_file()
                   and templating.is_template(p.name) and p.parent != PUBLISHED)
    by_workshop: dict[str, list[Path]] = {}
    for f in files:
        by_workshop.setdefault(f.parent.name, []).append(f)
    compared = 0
    for folder, group in by_workshop.items():
        student = meta.as_range(load_yaml_file(PUBLISHED / folder / "wod.yml")["range"])[0]
        context = _context(folder, student, mode)
        _ansible_render(group, context, tmp_path / mode / folder)
        ours_ctx = templating.context_for(context, "127.0.0.1")
        for f in group:
            theirs = (tmp_path / mode / folder / f.name).read_bytes()
            ours = templating.render_file(f.name, f.read_bytes(), ours_ctx, f.name)
            if f.suffix == ".ipynb":
                assert _cells(ours) == _cells(theirs), f"{folder}/{f.name}"
            else:
                assert ours == theirs, f"{folder}/{f.name}"
            compared += 1
    assert compared == len(files) >= 7


def test_first_cell_keeps_its_blank_lines():
    data = (PUBLISHED / "WKSHP-API101" / "0-ReadMeFirst.ipynb").read_bytes()
    ctx = templating.context_for(_context("WKSHP-API101", 3, "WKSHP"), "127.0.0.1")
    source = json.loads(templating.render_notebook(data, ctx, "nb"))["cells"][0]["source"]
    assert source[:5] == ["\n", "![HPEDEVlogo](Pictures/hpedevlogo-NB.JPG)\n",
                          "# Welcome to the Test Brand workshops\n", "\n", "\n"]


def test_create_delivers_each_published_workshop(pubsite, tmp_path):
    for folder, student in (("WKSHP-API101", 2), ("WKSHP-Grommet", 546),
                            ("WKSHP-RUST101", 1983), ("WKSHP-Docker101", 1551)):
        r = invoke(["--config", str(pubsite), "create", folder, str(student)])
        assert r.code == 0, r.out + r.err
        home = tmp_path / "homes" / f"student{student}" / folder
        notebooks = sorted(p.name for p in home.glob("*.ipynb"))
        assert notebooks == sorted(p.name for p in (PUBLISHED / folder).glob("*.ipynb"))
        for nb in home.glob("*.ipynb"):
            json.loads(nb.read_bytes())  # every delivered notebook is JSON
    api = tmp_path / "homes" / "student2" / "WKSHP-API101"
    assert (api / "picture.png").read_bytes() == (PUBLISHED / "WKSHP-API101" / "picture.png").read_bytes()
    raw = json.loads((api / "1-WKSHP-REST_API_Basics.ipynb").read_bytes())
    assert raw["cells"][1]["outputs"][0]["text"] == ['{{ "items": [1, 2] }}\n',
                                                    "{% not a tag %}\n", "done\n"]
    assert not (api / "wod.yml").exists()


def test_defect_notebook_is_named_and_never_shipped(pubsite, tmp_path):
    r = invoke(["--config", str(pubsite), "create", "WKSHP-BadNotebook", "3"])
    assert r.code == 78
    assert "WKSHP-BadNotebook/1-Broken.ipynb: not a valid notebook (JSON), even after " \
           "rendering" in r.err
    assert not (tmp_path / "homes" / "student3").exists()
