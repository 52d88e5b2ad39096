"""A hostile inbox and content authors' template bombs (pure: no root, no service).

Inbox: 2,000 nested MIME parts, a 10 MB mail, a bare CR in the Subject, a Message-ID
reused by a different order: each journaled, then refused as specified.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import invoke
from support.content import make_workshop, notebook
from wod_backend.system import templating
from wod_backend.system.templating import TemplateFailure


# -- template bombs -----------------------------------------------------------------------

BOMBS = [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "rendering took more than 2s"),
    ("{{ ('a' * 40 + 'b') | regex_replace('(a+)+$', 'x') }}", "rendering took more than 2s"),
    ("{{ 'a' * 10**9 }}", "OverflowError: a product of 1 x 1000000000 items"),
    ("{{ [0] * 10**8 }}", "OverflowError: a product of 1 x 100000000 items"),
    ("{{ 2 ** 100000000 }}", "OverflowError: an exponent of 100000000"),
    ("{{ range(200000) | list | length }}", "OverflowError: Range too big"),
    ("{% for i in range(100000) %}{{ 'x' * 200 }}{% endfor %}", "renders to more than 10 MB"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "RecursionError"),
    ("{{ '!!python/object/apply:os.system [id]' | from_yaml }}", "ConstructorError"),
    ("{{ 1 // 0 }}", "ZeroDivisionError"),
]


@pytest.mark.parametrize("text, phrase", BOMBS)
def test_template_bombs_are_bounded_and_named(text, phrase):
    ctx = templating.context_for({"STDID": 1}, "127.0.0.1")
    for name, data in (("bomb.sh", text.encode()),
                       ("bomb.ipynb", notebook(("code", text)).encode())):
        with pytest.raises(TemplateFailure) as info:
            templating.render_file(name, data, ctx, f"WKSHP-X/{name}")
        assert info.value.reason.startswith(f"WKSHP-X/{name}")
        assert phrase in info.value.reason
        assert info.value.exit_code == 78


def test_bounded_render_leaves_no_timer_behind():
    import signal

    ctx = templating.context_for({}, "127.0.0.1")
    with pytest.raises(TemplateFailure):
        templating.render(BOMBS[0][0], ctx, "loop")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler,
                                                None)
    assert templating.render("{{ 1 + 1 }}", ctx) == "2"


def test_bomb_in_a_workshop_is_a_content_error(site):
    make_workshop(site.public, "WKSHP-Bomb", files={"1-Bomb.ipynb": notebook(
        ("markdown", "{% for i in range(100000) %}{% for j in range(100000) %}"
                     "{% endfor %}{% endfor %}"))})
    r = invoke(["--config", str(site.config), "create", "WKSHP-Bomb", "3"])
    assert r.code == 78
    assert "WKSHP-Bomb/1-Bomb.ipynb: rendering took more than 2s" in r.err
    assert not (site.root / "homes" / "student3").exists()
    r = invoke(["--config", str(site.config), "workshops", "check", "--json"])
    found = [(p["path"], p["severity"]) for p in json.loads(r.out)
             if p["workshop"] == "WKSHP-Bomb"]
    assert r.code == 1 and found == [("1-Bomb.ipynb", "error")]


# -- hostile mails ------------------------------------------------------------------------

def _history(cfg: Path) -> list[dict]:
    return json.loads(invoke(["--config", str(cfg), "history", "--json"]).out)


def test_deeply_nested_mime_is_journaled_and_refused(demo):
    parts = 2000
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
                    for i in range(parts))
    raw = b"Subject: CREATE 3 0\nMIME-Version: 1.0\n" + head + b"\nWKSHP-Python101\n"
    r = invoke(["--config", str(demo), "mail"], input=raw)
    assert r.code == 65
    assert "unreadable message: MIME parts nested too deep" in r.err
    last = _history(demo)[0]
    assert (last["outcome"], last["reason"]) == (
        "refused", "unreadable message: MIME parts nested too deep")


def test_ten_megabyte_mail_is_journaled_truncated(demo, demo_cfg):
    raw = b"Subject: CREATE 3 0\n\nWKSHP-Python101\n" + b"x" * (10 << 20)
    r = invoke(["--config", str(demo), "mail"], input=raw)
    assert r.code == 65 and "message too large" in r.err
    from wod_backend.state.journal import Journal

    journal = Journal(demo_cfg.state_dir)
    last = _history(demo)[0]
    assert last["outcome"] == "refused" and last["reason"].startswith("message too large")
    assert journal.raw(last["id"]) == raw[:demo_cfg.mail.max_bytes]


def test_bare_cr_in_the_subject_is_refused(demo):
    raw = b"Subject: CREATE 3 0\rSubject: PURGE 4 0\nMessage-ID: <cr@x>\n\nWKSHP-Python101\n"
    r = invoke(["--config", str(demo), "mail"], input=raw)
    assert r.code == 65 and "a header carries a bare CR" in r.err
    assert not (demo.parent / "homes" / "student3").exists()
    assert _history(demo)[0]["outcome"] == "refused"


def test_reused_message_id_with_other_content_is_refused(demo):
    first = b"Message-ID: <reuse@frontend>\nSubject: CREATE 3 0\n\nWKSHP-Python101\n"
    other = b"Message-ID: <reuse@frontend>\nSubject: CREATE 4 0\n\nWKSHP-API101\n"
    assert invoke(["--config", str(demo), "mail"], input=first).code == 0
    assert invoke(["--config", str(demo), "mail"], input=first).out.startswith("duplicate")
    r = invoke(["--config", str(demo), "mail"], input=other)
    assert r.code == 65
    assert "Message-ID <reuse@frontend> was used by order 1 for another order " \
           "(CREATE 3 0 / WKSHP-Python101): refused" in r.err
    assert not (demo.parent / "homes" / "student4").exists()
    h = _history(demo)
    assert [(e["outcome"], e["students"], e["workshop"]) for e in h[:3]] == [
        ("refused", [4], "WKSHP-API101"), ("duplicate", [3], "WKSHP-Python101"),
        ("done", [3], "WKSHP-Python101")]
