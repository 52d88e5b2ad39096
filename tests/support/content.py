"""Workshop content for tests: minimal notebooks, workshop folders, a test site."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def notebook(*cells: tuple[str, str]) -> str:
    """A minimal nbformat-4 notebook of (cell_type, source) pairs."""
    out = []
    for kind, src in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return json.dumps({"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def make_workshop(root: Path, folder: str, meta: str = "name: Test\n",
                  files: dict[str, str | bytes] | None = None) -> Path:
    """A workshop folder with 0-ReadMeFirst.ipynb, a wod.yml and extra files."""
    ws = root / folder
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "wod.yml").write_text(meta)
    files = {"0-ReadMeFirst.ipynb": notebook(("markdown", "# {{ WORKSHOP }} {{ STDID }}")),
             **(files or {})}
    for rel, data in files.items():
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return ws


@dataclass
class Site:
    """A demo-like configuration over content and hooks trees the test writes."""

    root: Path
    public: Path
    private: Path
    hooks_public: Path
    hooks_private: Path
    config: Path

    def hook(self, tree: Path, rel: str, text: str) -> Path:
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(self) -> Any:
        from wod_backend import config

        return config.load(str(self.config))


def published(kernelspec: dict, language_info: dict, cells: list[tuple[str, str]]) -> str:
    """A notebook as wod-notebooks publishes them (nbformat 4.4, indent 1)."""
    out = []
    for kind, src in cells:
        cell: dict = {"cell_type": kind, "metadata": {},
                      "source": src.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return json.dumps({"cells": out, "metadata": {"kernelspec": kernelspec,
                                                  "language_info": language_info},
                       "nbformat": 4, "nbformat_minor": 4}, indent=1) + "\n"


BASH = ({"display_name": "Bash", "language": "bash", "name": "bash"},
        {"codemirror_mode": "shell", "file_extension": ".sh", "mimetype": "text/x-sh",
         "name": "bash"})
PYTHON = ({"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
          {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
           "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
           "pygments_lexer": "ipython3", "version": "3.8.10"})


def browser_workshop(root: Path) -> Path:
    """A content root with WKSHP-Browser101: a bash notebook and a python one, written
    as the published ones are; returns the root."""
    ws = root / "content" / "WKSHP-Browser101"
    ws.mkdir(parents=True)
    (ws / "wod.yml").write_text("%YAML 1.1\n---\nname: WKSHP-Browser101\nduration: 2\n"
                                "reset: false\nldap: false\nvarpass: false\ncompile: false\n"
                                "range: ['9601-9604']\n")
    (ws / "0-ReadMeFirst.ipynb").write_text(published(*BASH, [
        ("markdown", "# Welcome {{ STDID }} to {{ WORKSHOP }}"),
        ("code", 'echo "bash says $(whoami) in $(basename $PWD)"'),
        ("code", "ls")]))
    (ws / "1-Python.ipynb").write_text(published(*PYTHON, [
        ("markdown", "## Python"),
        ("code", "import os\nprint('python says', os.getuid())")]))
    return root / "content"


def red_png(width: int = 240, height: int = 160) -> bytes:
    """A plain red PNG: what a plot output looks like to pdftoppm, found by its colour."""
    import struct
    import zlib

    raw = b"".join(b"\x00" + bytes((220, 20, 20)) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                            2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def notebook_with_outputs(title: str) -> str:
    """A published-style Python notebook run by a student: markdown, code, its printed
    output and an image output (a chart)."""
    import base64

    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n", "\n",
                                                            "Some **bold** words.\n"]},
        {"cell_type": "code", "execution_count": 1, "metadata": {},
         "source": ["print('the answer is', 6 * 7)"],
         "outputs": [{"name": "stdout", "output_type": "stream",
                      "text": ["the answer is 42\n"]}]},
        {"cell_type": "code", "execution_count": 2, "metadata": {}, "source": ["plot()"],
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {"image/png": base64.b64encode(red_png()).decode(),
                               "text/plain": ["<Figure size 240x160>"]}}]}]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": PYTHON[0],
                                                    "language_info": PYTHON[1]},
                       "nbformat": 4, "nbformat_minor": 4}, indent=1) + "\n"


def pdf_text_and_red(pdf: Path) -> tuple[str, int]:
    """(the PDF's text by pdftotext, how many strongly red pixels its first page has by
    pdftoppm): what a person opening it reads and sees."""
    import subprocess
    import tempfile

    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-r", "40", "-f", "1", "-l", "1", str(pdf),
                        f"{tmp}/page"], check=True)
        ppm = next(Path(tmp).glob("page*.ppm")).read_bytes()
    # P6 header: magic, width height, maxval, then RGB bytes
    header_end, fields = 0, 0
    while fields < 4:
        while ppm[header_end:header_end + 1].isspace():
            header_end += 1
        while not ppm[header_end:header_end + 1].isspace():
            header_end += 1
        fields += 1
    pixels = ppm[header_end + 1:]
    red = sum(1 for i in range(0, len(pixels) - 2, 3)
              if pixels[i] > 180 and pixels[i + 1] < 80 and pixels[i + 2] < 80)
    return text, red
