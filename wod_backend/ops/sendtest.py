"""`send-test`: order mails composed as the frontend composes them, sent by SMTP.

The reference's wod-test-action: one mail per student (a RESET range is one mail), in
the production frontend's form, without the blank line between the Subject header and
the workshop name, so that a test exercises the same path as a real order.
"""

from __future__ import annotations

import dataclasses
import smtplib
from email.utils import formatdate, make_msgid

from wod_backend.config import Config, read_secret
from wod_backend.errors import TemporaryFailure
from wod_backend.order import Action, Order
from wod_backend.intake.policy import HEADER, sign


def compose(cfg: Config, order: Order) -> bytes:
    """One order mail; signed when intake.secret_file is configured."""
    students = (f"{order.students[0]},{order.students[-1]}" if order.is_range
                else str(order.students[0]))
    lines = [f"From: {cfg.mail.sender}", f"To: {cfg.mail.backend_address}",
             f"Date: {formatdate(localtime=True)}",
             f"Message-ID: {make_msgid('wod-test')}"]
    if cfg.intake.secret_file is not None:
        lines.append(f"{HEADER}: {sign(read_secret(cfg.intake.secret_file), order)}")
    lines += [f"Subject: {order.action.value} {students} {order.customer}", order.workshop, ""]
    return "\n".join(lines).encode()


def messages(cfg: Config, order: Order) -> list[bytes]:
    """One mail per student, except a RESET range: one mail, as the frontend sends."""
    if order.action is Action.RESET and order.is_range:
        return [compose(cfg, order)]
    return [compose(cfg, dataclasses.replace(order, students=(n,), is_range=False))
            for n in order.students]


def send(cfg: Config, mails: list[bytes]) -> int:
    try:
        with smtplib.SMTP(cfg.mail.smtp_host, cfg.mail.smtp_port, timeout=30) as smtp:
            for raw in mails:
                smtp.sendmail(cfg.mail.sender, [cfg.mail.backend_address], raw)
    except (OSError, smtplib.SMTPException) as exc:
        raise TemporaryFailure(f"cannot send by SMTP to {cfg.mail.smtp_host}:"
                               f"{cfg.mail.smtp_port}: {exc}")
    return len(mails)
