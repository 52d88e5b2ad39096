"""Where the content, hook scripts and examples shipped with wod-backend are: inside
the installed package (a wheel; setup.py copies them into wod_backend/shipped/), or the
checkout an editable install runs from."""

from __future__ import annotations

from pathlib import Path

from wod_backend.errors import ConfigError


def shipped_root() -> Path:
    """Where the shipped content is: inside the installed package (a wheel), or the
    checkout an editable install runs from."""
    package = Path(__file__).resolve().parents[1]
    for root in (package / "shipped", package.parent):
        if (root / "workshops-public").is_dir():
            return root
    raise ConfigError(f"shipped content not found in {package / 'shipped'} nor beside "
                      f"the package: reinstall wod-backend")
