"""Order mails -> parsed order or refusal reason: the samples, MTA variants, hostile input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.cli import DATA
from wod_backend.planning.catalog import Catalog
from wod_backend.errors import WodError
from wod_backend.intake.mail import order_from_envelope, parse_envelope, read_message
from wod_backend.planning.plan import make_plan

MAILS = DATA / "mails"

# file -> (action, students, customer, workshop, mode)
GOOD = {
    "samples/admin-test-challenge.eml": ("CREATE", [3], "0", "CHLG-Python101", "CHLG"),
    "samples/frontend-cleanup.eml": ("CLEANUP", [12], "4711", "WKSHP-API101", "WKSHP"),
    "samples/frontend-create.eml": ("CREATE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "samples/frontend-purge.eml": ("PURGE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "samples/frontend-reset-range.eml": ("RESET", [3, 4, 5, 6], "4712", "WKSHP-Ansible101",
                                         "WKSHP"),
    "good/postfix-procmail-create.eml": ("CREATE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "good/crlf.eml": ("CLEANUP", [12], "4711", "WKSHP-API101", "WKSHP"),
    "good/base64-encoded.eml": ("PURGE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "good/quoted-printable.eml": ("CREATE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "good/folded-leading-blank.eml": ("RESET", [3, 4, 5, 6], "4712", "WKSHP-Ansible101",
                                      "WKSHP"),
    "good/student-prefix.eml": ("CREATE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "good/multipart.eml": ("CREATE", [12], "4711", "WKSHP-API101", "WKSHP"),
    "good/leading-newlines-lowercase.eml": ("CREATE", [12], "4711", "WKSHP-API101", "WKSHP"),
}

# file -> a phrase the one-line reason must contain
BAD = {
    "samples/broken-sender.eml": "bad student number '[object'",
    "bad/shell-metachar-body.eml": "bad workshop name",
    "bad/path-traversal.eml": "bad workshop name '../../etc'",
    "bad/path-traversal-prefixed.eml": "bad workshop name",
    "bad/chlg-traversal.eml": "bad workshop name",
    "bad/command-substitution.eml": "bad workshop name",
    "bad/binary-junk-name.eml": "bad workshop name",
    "bad/arabic-digits.eml": "bad student number",
    "bad/fullwidth-digits.eml": "bad student number",
    "bad/huge-number.eml": "bad student number",
    "bad/leading-zero.eml": "bad student number '012'",
    "bad/signed-number.eml": "bad student number '+12'",
    "bad/negative-customer.eml": "bad customer id '-4711'",
    "bad/missing-customer.eml": "expected ACTION STUDENT CUSTOMER",
    "bad/empty-body.eml": "empty body",
    "bad/no-subject.eml": "no Subject",
    "bad/unknown-action.eml": "unknown action 'DESTROY'",
    "bad/range-reversed.eml": "min 9 > max 3",
    "bad/range-on-create.eml": "CREATE takes one student, not a range",
    "bad/student-zero.eml": "student 0 out of range 1..20",
    "bad/out-of-range.eml": "student 500 out of range 1..20",
    "bad/unknown-workshop.eml": "unknown workshop WKSHP-NoSuchWorkshop",
    "bad/reset-not-reset-workshop.eml": "not flagged reset",
    "bad/header-injection-encoded.eml": "subject carries control characters",
    "bad/thousands-of-recipients.eml": "student 100000 out of range",
    "bad/zero-width-space.eml": "bad workshop name 'WKSHP-API101\\u200b'",
    "bad/lowercase-prefix.eml": "bad workshop name",
    "bad/mixed-digits.eml": "bad student number",
    "bad/three-part-range.eml": "bad student number",
}


def parse_and_plan(raw: bytes, cfg):  # type: ignore[no-untyped-def]
    order = order_from_envelope(parse_envelope(raw), cfg.students.min, cfg.students.max)
    return order, make_plan(cfg, Catalog(cfg), order)


def test_every_mail_file_is_in_a_table():
    files = {str(p.relative_to(MAILS)) for p in MAILS.rglob("*.eml")}
    assert files == set(GOOD) | set(BAD)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_mail_parses(name, demo_cfg):
    order, plan = parse_and_plan((MAILS / name).read_bytes(), demo_cfg)
    action, students, customer, workshop, mode = GOOD[name]
    assert (order.action.value, list(order.students), order.customer, order.workshop,
            order.mode.value) == (action, students, customer, workshop, mode)
    assert plan.workshop.folder == "WKSHP-" + workshop.split("-", 1)[1]
    assert order.source == "mail"


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_mail_refused_with_reason(name, demo_cfg):
    with pytest.raises(WodError) as info:
        parse_and_plan((MAILS / name).read_bytes(), demo_cfg)
    assert info.value.exit_code == 65
    assert BAD[name] in info.value.reason
    assert "\n" not in info.value.reason


def test_frontend_form_without_blank_line_keeps_extra_fields(demo_cfg):
    order, _ = parse_and_plan((MAILS / "samples/frontend-create.eml").read_bytes(), demo_cfg)
    assert order.extra == ("ada@example.org",)


def test_message_id_is_kept():
    env = parse_envelope((MAILS / "good/postfix-procmail-create.eml").read_bytes())
    assert env.message_id == "<20261129100000.4F1A2@backend>"
    assert env.received[0].startswith("from frontend (localhost [127.0.0.1]) by backend")


def test_megabyte_body_is_refused_unread_and_drained():
    raw = b"Subject: CREATE 12 4711\n\nWKSHP-API101\n" + b"x" * (1 << 20)
    stream = io.BytesIO(raw)
    data, refused = read_message(stream, 262144)
    assert refused == f"message too large ({len(raw)} bytes > 262144); orders are tiny"
    assert data == raw[:262144]  # what the journal keeps
    assert stream.read() == b""  # all of it was read: procmail sees no broken pipe


def test_megabyte_body_under_a_larger_limit_still_parses(demo_cfg):
    raw = b"Subject: CREATE 12 4711\n\nWKSHP-API101\n" + b"x" * (1 << 20)
    data, refused = read_message(io.BytesIO(raw), 2 << 20)
    assert refused is None
    order, _ = parse_and_plan(data, demo_cfg)
    assert order.workshop == "WKSHP-API101"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_any_bytes_give_an_order_or_a_clean_refusal(demo_cfg, raw):
    try:
        order, _ = parse_and_plan(raw, demo_cfg)
    except WodError as exc:
        assert exc.exit_code in (65, 78) and "\n" not in exc.reason
    else:
        assert demo_cfg.students.min <= min(order.students)


subjects = st.lists(st.sampled_from(["CREATE", "RESET", "cleanup", "12", "3,6", "0", "4711",
                                     "student5", "-1", "[object", "Promise]", "٣", "\t",
                                     "=?utf-8?q?x?=", "99999999999", "1-2", ""]),
                    max_size=5).map(" ".join)
bodies = st.one_of(st.sampled_from(["WKSHP-API101", "CHLG-Python101", "../x", "WKSHP-",
                                    "WKSHP-API101\r\n", "", "\n\nWKSHP-Ansible101"]),
                   st.text(max_size=80))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(subjects, bodies, st.booleans(), st.booleans())
def test_structured_mails_never_crash(demo_cfg, subject, body, blank_line, crlf):
    sep = "\n\n" if blank_line else "\n"
    text = f"Subject: {subject}{sep}{body}\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    try:
        order, plan = parse_and_plan(text.encode("utf-8", "surrogateescape"), demo_cfg)
    except WodError as exc:
        assert exc.exit_code in (65, 78)
    else:
        assert plan.workshop.path.parent == Path(demo_cfg.content.public)
        assert all(demo_cfg.student_in_range(n) for n in order.students)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["create", "reset", "CLEANUP", "purge", "rm", ""]), st.text(max_size=30),
       st.text(max_size=20), st.text(max_size=12))
def test_any_cli_arguments_give_an_order_or_a_clean_refusal(demo_cfg, action, workshop,
                                                            students, customer):
    from wod_backend.intake.pipeline import order_from_args

    try:
        order = order_from_args(demo_cfg, action, workshop, students, customer)
        plan = make_plan(demo_cfg, Catalog(demo_cfg), order)
    except WodError as exc:
        assert exc.exit_code in (65, 78) and "\n" not in exc.reason
    else:
        assert plan.workshop.path.parent == Path(demo_cfg.content.public)
        assert all(demo_cfg.student_in_range(n) for n in order.students)


@pytest.mark.parametrize("args", [
    ["create", "WKSHP-API101", "1;id"], ["create", "WKSHP-API101", "$(id)"],
    ["create", "WKSHP-API101", "student0"], ["create", "WKSHP-API101", "-3"],
    ["create", "WKSHP-API101", "1-99999999"], ["create", "WKSHP-API101", "00012"],
    ["create", "/etc", "1"], ["create", "WKSHP-..", "1"], ["create", "CHLG-../../x", "1"],
    ["reset", "WKSHP-Ansible101", "1-20000"],
])
def test_hostile_cli_arguments_change_nothing(demo, demo_cfg, args):
    from support.cli import invoke

    r = invoke(["--config", str(demo), *args])
    assert r.code in (64, 65) and len(r.err.strip().splitlines()) == 1  # -3 is an option
    assert not demo_cfg.students.home_root.exists() or \
        not any(demo_cfg.students.home_root.iterdir())
