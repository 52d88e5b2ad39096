"""Notebooks as PDF files a person can open: nbconvert's HTML, printed by Debian's
Chromium (`chromium --headless --print-to-pdf`).

nbconvert's own `webpdf` downloads a Chromium of its own (impossible offline) and its
`pdf` needs a LaTeX installation several times Chromium's size that breaks on the
notebooks' HTML outputs; Debian's Chromium prints what JupyterLab shows, outputs and
images included. A student runs it on their own notebooks (`./wod-generate-pdf.sh` in
the workshop folder, as the original's script); `backups export --format pdf` runs it
for an operator on an archive, with Chromium as `nobody`. Either way nothing is fetched:
every request, loopback's too, goes to a closed proxy port, so a script in a student's
output can change only its own page (nbconvert's `sanitize_html` escapes the markdown's
headings, so it is not used; Chromium prints nothing with scripts off).

    python -m wod_backend.system.pdf [NOTEBOOK.ipynb ...]   # default: *.ipynb here
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Optional

from wod_backend.errors import ConfigError, StepFailed
from wod_backend.system.run import run

SCRIPT_NAME = "wod-generate-pdf.sh"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
                  # nothing leaves this host: the templates' CDN scripts fail at once
                  "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                  "--no-pdf-header-footer", "--virtual-time-budget=5000")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError("chromium not found: install Debian's chromium (scripts/install-deps)")


def student_script(python: Optional[str] = None) -> bytes:
    """The script delivered into each workshop folder (the original's wod-generate-pdf.sh)."""
    return (f"#!/bin/sh\n# Your notebooks as PDF files beside them:\n"
            f"#   ./{SCRIPT_NAME}              every notebook of this folder\n"
            f"#   ./{SCRIPT_NAME} 1-Intro.ipynb  one of them\n"
            f"exec {python or sys.executable} -m wod_backend.system.pdf \"$@\"\n").encode()


def html(notebook: Path) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_filename(str(notebook),
                                     resources={"metadata": {"path": str(notebook.parent)}})
    return body


def to_pdf(notebook: Path, out: Path, user: Optional[tuple[int, int]] = None,
           timeout: float = 180) -> Path:
    """Print `notebook` to `out`; `user` (uid, gid): Chromium runs as that user (root's
    callers: `nobody`)."""
    with tempfile.TemporaryDirectory(prefix="wod-pdf-") as tmp:
        page, pdf = Path(tmp) / "page.html", Path(tmp) / "out.pdf"
        page.write_text(html(notebook), encoding="utf-8")
        if user is not None:
            for path in (Path(tmp), page):
                os.chown(path, *user)
        r = run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                 f"--crash-dumps-dir={tmp}/crashes", f"--print-to-pdf={pdf}",
                 page.as_uri()], timeout=timeout, user=user,
                env={"HOME": tmp, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        try:  # in a folder `user` can write: never through a link it put there
            fd = os.open(pdf, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            fd = -1
        try:
            if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode) or not os.fstat(fd).st_size:
                raise StepFailed(f"{notebook.name}: chromium printed no PDF "
                                 f"({r.describe()}: {r.tail(2, 200)})")
            with os.fdopen(fd, "rb") as src, open(out, "wb") as dst:
                fd = -1
                shutil.copyfileobj(src, dst)
        finally:
            if fd >= 0:
                os.close(fd)
    return out


def main(argv: list[str]) -> int:
    notebooks = [Path(a) for a in argv] or sorted(Path(".").glob("*.ipynb"))
    if not notebooks:
        print("no notebook here: name one, e.g. ./wod-generate-pdf.sh 1-Intro.ipynb")
        return 1
    failed = 0
    for nb in notebooks:
        if nb.suffix != ".ipynb" or not nb.is_file():
            print(f"{nb}: not a notebook")
            failed += 1
            continue
        try:
            print(f"wrote {to_pdf(nb, nb.with_suffix('.pdf'))}")
        except (StepFailed, ConfigError, ValueError, OSError) as exc:
            print(f"{nb}: {getattr(exc, 'reason', exc)}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
