"""Order mails: one raw message, as procmail pipes it, into an order.

Liberal in what a real MTA may deliver: an mbox `From ` line, CRLF or LF, folded or
RFC 2047-encoded headers, MIME bodies (quoted-printable, base64, multipart), leading
blank lines, and the production frontend's missing blank line between the Subject
header and the workshop name. Strict in what is acted on: see `order.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from typing import BinaryIO, Optional

from wod_backend.errors import BadOrder
from wod_backend.order import (Action, Order, parse_action, parse_customer,
                               parse_students, parse_workshop_name)


@dataclass(frozen=True)
class Envelope:
    """The parts of a message that intake looks at."""

    subject: Optional[str]
    body_line: Optional[str]  # first non-empty body line
    message_id: Optional[str]
    received: tuple[str, ...]  # Received: headers, topmost first
    return_path: Optional[str]
    headers: tuple[tuple[str, str], ...]


def read_message(stream: BinaryIO, max_bytes: int) -> tuple[bytes, Optional[str]]:
    """(the message, at most max_bytes of it; why it is refused if it is too large).
    The rest of a large message is drained so that procmail sees no broken pipe."""
    data = stream.read(max_bytes + 1)
    if len(data) <= max_bytes:
        return data, None
    total = len(data)
    while chunk := stream.read(1 << 16):
        total += len(chunk)
    return data[:max_bytes], (f"message too large ({total} bytes > {max_bytes}); "
                              f"orders are tiny")


_BARE_CR = re.compile(rb"\r(?!\n)")


def _check_raw_headers(raw: bytes) -> None:
    """A bare CR in the headers is refused: some parsers end a header there, others do
    not, and a Subject split in two could carry a second, hidden field."""
    end = min((i for i in (raw.find(b"\n\n"), raw.find(b"\r\n\r\n")) if i >= 0),
              default=len(raw))
    # The production frontend leaves out the blank line: its body line is read as a
    # header too, so the whole head of such a message is checked, which is harmless.
    if _BARE_CR.search(raw[:end]):
        raise BadOrder("a header carries a bare CR (header injection?)")


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_text(value: object) -> str:
    """Unfolded, decoded header text; control characters that only an encoded-word can
    carry (a CR LF smuggled in =?utf-8?q?=0D=0A?=) are kept, so that intake refuses them."""
    from email.header import decode_header, make_header

    raw = _FOLD.sub("", str(value))
    try:
        text = str(make_header(decode_header(raw)))
    except Exception:  # undecodable encoded-words: keep the raw text
        text = raw
    if _CONTROL.search(text):
        return text.strip(" \t")
    return " ".join(text.split())


def _first_text_part(msg: Message) -> Optional[Message]:
    if not msg.is_multipart():
        return msg
    for part in msg.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            if part.get_content_subtype() == "plain":
                return part
    for part in msg.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            return part
    return None


def _body_text(msg: Message) -> str:
    part = _first_text_part(msg)
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # unknown charset name
        return payload.decode("utf-8", errors="replace")


def parse_envelope(raw: bytes) -> Envelope:
    """The envelope of a raw message, or BadOrder for one no order can come from."""
    # Leading blank lines (some pipes add them) would end the headers at once.
    raw = raw.lstrip(b"\r\n")
    _check_raw_headers(raw)
    try:
        return _parse(raw)
    except RecursionError:
        raise BadOrder("unreadable message: MIME parts nested too deep") from None
    except BadOrder:
        raise
    except Exception as exc:  # the stdlib parser on hostile input
        raise BadOrder(f"unreadable message: {type(exc).__name__}") from None


def _parse(raw: bytes) -> Envelope:
    # compat32, the parser's default: email.policy's other policies cost 15 ms to import.
    from email import message_from_bytes

    msg = message_from_bytes(raw)
    subject = msg.get("Subject")
    message_id = msg.get("Message-ID")
    body = _body_text(msg)
    body_line = next((ln.strip() for ln in body.splitlines() if ln.strip()), None)
    return Envelope(
        subject=_header_text(subject) if subject is not None else None,
        body_line=body_line,
        message_id=_header_text(message_id) if message_id is not None else None,
        received=tuple(_header_text(v) for v in msg.get_all("Received") or ()),
        return_path=_header_text(msg["Return-Path"]) if msg["Return-Path"] else None,
        headers=tuple((k, _header_text(v)) for k, v in msg.items()),
    )


def order_from_envelope(env: Envelope, min_n: int, max_n: int) -> Order:
    """The order a message carries, or BadOrder with the reason."""
    if env.subject is None or not env.subject.strip():
        raise BadOrder("no Subject: the order is `ACTION STUDENT CUSTOMER`")
    if _CONTROL.search(env.subject):
        raise BadOrder("subject carries control characters (header injection?)")
    words = env.subject.split()
    if len(words) < 3:
        raise BadOrder(f"subject {env.subject[:60]!r} has {len(words)} field(s), "
                       f"expected ACTION STUDENT CUSTOMER")
    action = parse_action(words[0])
    students, is_range = parse_students(words[1], min_n, max_n)
    if is_range and action is not Action.RESET:
        raise BadOrder(f"{action.value} takes one student, not a range ({words[1]})")
    customer = parse_customer(words[2])
    if env.body_line is None:
        raise BadOrder("empty body: the first line must be the workshop name")
    workshop = parse_workshop_name(env.body_line)
    return Order(action=action, students=students, customer=customer, workshop=workshop,
                 source="mail", is_range=is_range, message_id=env.message_id,
                 subject=env.subject[:200], extra=tuple(words[3:]))
