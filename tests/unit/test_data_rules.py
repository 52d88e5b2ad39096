"""The operator's data, pure parts: addresses redacted, refusal reasons without their
particulars, the helper taking only a content root or one of its releases."""

from __future__ import annotations

import dataclasses

import pytest

from wod_backend.errors import BadOrder
from wod_backend.state.stats import reason_class
from wod_backend.privileged.helper import pinned
from wod_backend.state.journal import redact


@pytest.mark.parametrize("text, expected", [
    ("CREATE 12 4711 ada.lovelace@example.org", "CREATE 12 4711 <address removed>"),
    ("from <bob+wod@mail.example.com>, cc carol@x.io;",
     "from <<address removed>>, cc <address removed>;"),
    ("CLEANUP 3 4711", "CLEANUP 3 4711"),
])
def test_addresses_are_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("reason, expected", [
    ("student 512 out of range 1..100", "student N out of range N..N"),
    ("unknown workshop WKSHP-Nope: no such folder in the content roots",
     "unknown workshop WKSHP-Nope"),
    ("unknown action 'FOO' (expected CREATE, CLEANUP, RESET or PURGE)",
     "unknown action '...' (expected CREATE, CLEANUP, RESET or PURGE)"),
    ("policy: unsigned order (no X-WoD-Signature header)",
     "policy: unsigned order (no X-WoD-Signature header)"),
    ("policy: relay 127.0.0.3 is not allowed", "policy: relay N.N.N.N is not allowed"),
])
def test_refusal_reasons_lose_their_particulars(reason, expected):
    assert reason_class(reason) == expected


def test_the_helper_serves_only_the_content_root_or_its_releases(demo_cfg, tmp_path):
    root = tmp_path / "content"
    releases = tmp_path / "content.releases"
    (releases / "20261203T110000").mkdir(parents=True)
    (releases / "20261203T110000" / "WKSHP-X").mkdir()
    root.symlink_to(releases / "20261203T110000")
    cfg = dataclasses.replace(demo_cfg, content=dataclasses.replace(demo_cfg.content,
                                                                    public=root))
    assert pinned(cfg, None) is cfg
    assert pinned(cfg, {"public": str(releases / "20261203T110000")}).content.public == \
        releases / "20261203T110000"
    for bad in ({"public": "/etc"}, {"public": str(releases / "20261203T110000" / "WKSHP-X")},
                {"private": str(root)}, {"public": str(releases / ".staging")}, ["x"]):
        with pytest.raises(BadOrder):
            pinned(cfg, bad)
