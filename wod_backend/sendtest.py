"""`send-test`: order mails composed as the frontend composes them, sent by SMTP.

The reference's wod-test-action: one mail per student (a RESET range is one mail), in
the production frontend's form, without the blank line between the Subject header and
the workshop name, so that a test exercises the same path as a real order.
"""

from __future__ import annotations

import smtplib
from email.utils import formatdate, make_msgid

from wod_backend.config import Config
from wod_backend.errors import TemporaryFailure
from wod_backend.order import Action


def compose(cfg: Config, action: Action, subject_students: str, customer: str,
            workshop: str) -> bytes:
    lines = [f"From: {cfg.mail.sender}", f"To: {cfg.mail.backend_address}",
             f"Date: {formatdate(localtime=True)}",
             f"Message-ID: {make_msgid('wod-test')}",
             f"Subject: {action.value} {subject_students} {customer}", workshop, ""]
    return "\n".join(lines).encode()


def messages(cfg: Config, action: Action, students: tuple[int, ...], is_range: bool,
             customer: str, workshop: str) -> list[bytes]:
    if action is Action.RESET and is_range:
        return [compose(cfg, action, f"{students[0]},{students[-1]}", customer, workshop)]
    return [compose(cfg, action, str(n), customer, workshop) for n in students]


def send(cfg: Config, mails: list[bytes]) -> int:
    try:
        with smtplib.SMTP(cfg.mail.smtp_host, cfg.mail.smtp_port, timeout=30) as smtp:
            for raw in mails:
                smtp.sendmail(cfg.mail.sender, [cfg.mail.backend_address], raw)
    except (OSError, smtplib.SMTPException) as exc:
        raise TemporaryFailure(f"cannot send by SMTP to {cfg.mail.smtp_host}:"
                               f"{cfg.mail.smtp_port}: {exc}")
    return len(mails)
