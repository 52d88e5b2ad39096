"""The resident worker: its server, the mail command's hand-off to it, and its service (start, stop, unit)."""
