"""`wod-backend`: the entry point. A mail goes to the resident worker when one listens
(worker/handoff.py decides before click or any order code is imported: procmail starts one
process per mail); anything else, or a mail with no worker, runs here (cli/dispatch.py).
"""

from __future__ import annotations

import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    from wod_backend.worker.handoff import hand_over

    code = hand_over(args)
    if code is not None:
        sys.exit(code)
    from wod_backend.cli.dispatch import dispatch

    dispatch(args)
