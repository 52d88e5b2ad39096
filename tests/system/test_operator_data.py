"""The operator's data (root, real accounts): a student's changed notebook archived at
CLEANUP and exported intact, an untouched home archiving nothing; retention removing
an old order's raw mail and addresses but keeping its outcome; the log rotated;
metrics parsed by prometheus_client counting exactly the orders sent; a content update
with a broken notebook refused while the old tree keeps serving; an order running
during a swap delivering one tree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from support.accounts import students_config
from support.cli import WOD, invoke
from support.content import (make_workshop, notebook, notebook_with_outputs,
                             pdf_text_and_red)
from wod_backend.state.journal import Journal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real users")
FIRST, LAST, UID_BASE = 9701, 9708, 47000


@pytest.fixture
def data(tmp_path):
    content = tmp_path / "content"
    make_workshop(content, "WKSHP-Notes", "name: Notes\n",
                  {"1-Work.ipynb": notebook(("code", "print('v1')")), "a.txt": "v1\n"})
    hooks = tmp_path / "hooks"
    (hooks / "scripts").mkdir(parents=True)
    extra = f"""hooks: {{public: {hooks}}}
journal: {{keep_days: 0.00002}}
"""
    with students_config(tmp_path, FIRST, LAST, UID_BASE, extra) as (path, homes):
        path.write_text(re.sub(r"(?m)^content: .*$", f"content: {{public: {content}}}",
                               path.read_text()))
        assert invoke(["--config", str(path), "students", "ensure"]).code == 0
        yield path, homes, tmp_path


def wod(cfg: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    r = invoke(["--config", str(cfg), *args], input=input)
    return r.code, r.out + r.err


def as_student(n: int, script: str) -> None:
    subprocess.run(["su", "-", f"student{n}", "-c", script], check=True, timeout=60)


def test_changed_work_is_archived_at_cleanup_and_exported_intact(data):
    cfg, homes, tmp = data
    n, untouched = FIRST, FIRST + 1
    for s in (n, untouched):
        assert wod(cfg, "create", "WKSHP-Notes", str(s))[0] == 0
    work = homes / f"student{n}" / "WKSHP-Notes"
    mine = json.dumps({"cells": [{"cell_type": "code", "source": "print('my answer')",
                                  "metadata": {}, "outputs": [], "execution_count": 1}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    as_student(n, f"cat > WKSHP-Notes/1-Work.ipynb <<'EOF'\n{mine}\nEOF\n"
                  "mkdir -p WKSHP-Notes/mine && head -c 3000000 /dev/urandom > "
                  "WKSHP-Notes/mine/data.bin && ln -s /etc/shadow WKSHP-Notes/mine/link")
    for s in (n, untouched):
        code, out = wod(cfg, "cleanup", "WKSHP-Notes", str(s))
        assert code == 0, out
    assert not work.exists()  # wiped
    code, out = wod(cfg, "backups", "list", "--json")
    rows = json.loads(out)
    assert [r["student"] for r in rows] == [n]  # the untouched home archived nothing
    assert sorted(rows[0]["files"]) == ["1-Work.ipynb", "mine/data.bin"]  # no link
    assert rows[0]["action"] == "CLEANUP" and rows[0]["workshop"] == "WKSHP-Notes"
    detail = next(e for e in json.loads(invoke(["--config", str(cfg), "history",
                                                "--json"]).out)
                  if e["students"] == [n] and e["action"] == "CLEANUP")["detail"]
    assert f"backup {rows[0]['id']}: 2 changed file(s)" in detail
    code, out = wod(cfg, "backups", "export", rows[0]["id"], str(tmp / "out"))
    assert code == 0, out
    assert (tmp / "out" / "WKSHP-Notes" / "1-Work.ipynb").read_text().strip() == mine
    assert (tmp / "out" / "WKSHP-Notes" / "mine" / "data.bin").stat().st_size == 3000000
    assert not (tmp / "out" / "WKSHP-Notes" / "a.txt").exists()  # as delivered: not kept
    assert not (tmp / "out" / "WKSHP-Notes" / "1-Work.html").exists()  # ipynb: as they were
    code, out = wod(cfg, "backups", "export", rows[0]["id"], str(tmp / "html"),
                    "--format", "html")
    assert code == 0 and "HTML of 1 notebook(s)" in out, out
    assert "my answer" in (tmp / "html" / "WKSHP-Notes" / "1-Work.html").read_text()
    assert (tmp / "backups").stat().st_mode & 0o777 == 0o700
    assert wod(cfg, "backups", "list", str(untouched))[1].strip() == "no backups"


def test_retention_forgets_the_raw_mail_and_addresses_and_keeps_the_outcome(data):
    cfg, _homes, _tmp = data
    mail = ("From: Frontend <wod@frontend.example>\nSubject: CREATE 9703 0 "
            "ada.lovelace@example.org\nMessage-ID: <keep-1@frontend>\n\nWKSHP-Notes\n")
    assert wod(cfg, "mail", input=mail)[0] == 0
    journal = Journal(cfg.parent / "state")
    entry = journal.latest(1)[0]
    assert journal.raw(entry.id) is not None and "ada.lovelace" in (entry.subject or "")
    time.sleep(2)  # journal.keep_days: 0.00002 (1.7 s)
    code, out = wod(cfg, "journal", "prune")
    assert code == 0 and "1 order(s)" in out, out
    after = journal.get(entry.id)
    assert after is not None and journal.raw(entry.id) is None
    assert after.subject == "CREATE 9703 0 <address removed>"
    assert after.outcome == "done" and after.students == [9703]
    assert "@" not in after.detail


def test_the_log_is_rotated_and_written_on(data):
    from wod_backend import config
    from wod_backend.host.dataconf import logrotate_rule

    cfg, _homes, tmp = data
    assert subprocess.run([WOD, "--config", str(cfg), "history"], timeout=60).returncode == 0
    log = tmp / "state" / "wod-backend.log"
    with open(log, "a") as fh:
        fh.write("x" * (21 << 20) + "\n")  # past the rule's 20M
    rule = tmp / "logrotate.conf"
    rule.write_bytes(logrotate_rule(config.load(str(cfg))))
    p = subprocess.run(["logrotate", "-s", str(tmp / "logrotate.state"), str(rule)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp / "state" / "wod-backend.log.1").stat().st_size > 20 << 20
    assert log.stat().st_size < 1 << 20
    # The next order's warning (its create hook fails) goes into the live file.
    hook = tmp / "hooks" / "scripts" / "create-WKSHP-Notes.sh"
    hook.write_text("exit 3\n")
    p = subprocess.run([WOD, "--config", str(cfg), "create", "WKSHP-Notes", str(FIRST + 4)],
                       capture_output=True, timeout=120)
    hook.unlink()
    assert p.returncode == 70, p.stderr
    assert "student9705: hook_create" in log.read_text()


def test_metrics_count_exactly_the_orders_sent(data):
    from prometheus_client.parser import text_string_to_metric_families

    cfg, _homes, tmp = data
    for n in (FIRST + 5, FIRST + 6):
        assert wod(cfg, "create", "WKSHP-Notes", str(n))[0] == 0
    assert wod(cfg, "cleanup", "WKSHP-Notes", str(FIRST + 5))[0] == 0
    assert wod(cfg, "mail", input="Subject: CREATE 99999 0\n\nWKSHP-Notes\n")[0] == 65
    code, text = wod(cfg, "metrics")
    assert code == 0
    families = {f.name: f for f in text_string_to_metric_families(text)}
    orders = {(s.labels["action"], s.labels["outcome"]): s.value
              for s in families["wod_orders"].samples if s.name == "wod_orders_total"}
    assert orders == {("CREATE", "done"): 2, ("CLEANUP", "done"): 1, ("unknown", "refused"): 1}
    count = [s.value for s in families["wod_order_duration_seconds"].samples
             if s.name.endswith("_count") and s.labels["action"] == "CREATE"]
    assert count == [2]
    refused = [s for s in families["wod_orders_refused"].samples]
    assert len(refused) == 1 and "out of range" in refused[0].labels["reason"]
    seats = {s.labels["workshop"]: s.value for s in families["wod_seats_in_use"].samples}
    assert seats == {"WKSHP-Notes": 1}
    out = tmp / "textfile"
    out.mkdir()
    assert wod(cfg, "metrics", "--textfile", str(out))[0] == 0
    assert [p.name for p in out.iterdir()] == ["wod_backend.prom"]
    assert "wod_orders_total" in (out / "wod_backend.prom").read_text()


def test_a_broken_update_is_refused_and_a_running_order_delivers_one_tree(data):
    cfg, homes, tmp = data
    content = tmp / "content"
    broken, v2 = tmp / "broken", tmp / "v2"
    make_workshop(broken, "WKSHP-Notes", "name: Notes\n",
                  {"1-Work.ipynb": notebook(("code", "print('{{ unclosed')"))})
    make_workshop(v2, "WKSHP-Notes", "name: Notes\n",
                  {"1-Work.ipynb": notebook(("code", "print('v2')")), "b.txt": "v2\n"})
    (v2 / "WKSHP-Notes" / "b.txt").chmod(0o666)  # the source is careless
    code, out = wod(cfg, "content", "update", "--from", str(broken))
    assert code == 78 and "content update refused" in out and "1-Work.ipynb" in out, out
    assert content.is_symlink()  # adopted as the first release, still served
    assert wod(cfg, "create", "WKSHP-Notes", str(FIRST + 2))[0] == 0
    assert "v1" in (homes / f"student{FIRST + 2}" / "WKSHP-Notes" / "1-Work.ipynb").read_text()
    # A CREATE whose create hook runs while the tree is switched to v2.
    hook = tmp / "hooks" / "scripts" / "create-WKSHP-Notes.sh"
    hook.write_text("sleep 3\n")
    order = subprocess.Popen([WOD, "--config", str(cfg), "create", "WKSHP-Notes",
                              str(FIRST + 3)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    code, out = wod(cfg, "content", "update", "--from", str(v2))
    assert code == 0 and "switched to" in out, out
    _out, err = order.communicate(timeout=120)
    assert order.returncode == 0, err
    folder = homes / f"student{FIRST + 3}" / "WKSHP-Notes"
    assert "v1" in (folder / "1-Work.ipynb").read_text() and (folder / "a.txt").exists()
    assert not (folder / "b.txt").exists()  # one tree, the one it started with
    hook.unlink()
    # What root delivers from is root's alone, whatever the source's modes were.
    assert (content / "WKSHP-Notes" / "b.txt").stat().st_mode & 0o022 == 0
    assert wod(cfg, "create", "WKSHP-Notes", str(FIRST + 7))[0] == 0  # after: v2
    assert (homes / f"student{FIRST + 7}" / "WKSHP-Notes" / "b.txt").exists()
    code, out = wod(cfg, "content", "rollback")
    assert code == 0 and "initial" in out, out
    assert (content / "WKSHP-Notes" / "a.txt").exists()


def _hostile_archive(path: Path) -> None:
    """An archive as an attacker would write one: links, `..`, an absolute name,
    devices and a fifo beside one honest file."""
    import io
    import tarfile

    def add(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE,
            data: bytes = b"", link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.linkname, info.mode = kind, len(data), link, 0o644
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(path, "w:gz") as tar:
        add(tar, "WKSHP-Notes/kept.txt", data=b"honest work\n")
        add(tar, "WKSHP-Notes/shadow", tarfile.SYMTYPE, link="/etc/shadow")
        add(tar, "WKSHP-Notes/hard", tarfile.LNKTYPE, link="/etc/passwd")
        add(tar, "../../escaped.txt", data=b"out\n")
        add(tar, "WKSHP-Notes/../../../escaped2.txt", data=b"out\n")
        add(tar, "/var/tmp/wod-restore-absolute.txt", data=b"abs\n")
        add(tar, "WKSHP-Notes/null", tarfile.CHRTYPE)
        add(tar, "WKSHP-Notes/fifo", tarfile.FIFOTYPE)


def test_restore_puts_work_back_into_a_seat_and_nothing_outside(data):
    cfg, homes, tmp = data
    n = FIRST + 2
    assert wod(cfg, "create", "WKSHP-Notes", str(n))[0] == 0
    as_student(n, "echo 'my notes' > WKSHP-Notes/notes.txt")
    assert wod(cfg, "cleanup", "WKSHP-Notes", str(n))[0] == 0
    rows = json.loads(wod(cfg, "backups", "list", str(n), "--json")[1])
    day = time.strftime("%Y%m%d")
    # The student plants a link where the restore would go: it is not followed.
    as_student(n, f"ln -s /etc restored-{day}")
    code, out = wod(cfg, "backups", "restore", rows[0]["id"], str(n))
    assert code == 0 and f"1 file(s) restored into restored-{day}-2/" in out, out
    restored = homes / f"student{n}" / f"restored-{day}-2" / "WKSHP-Notes" / "notes.txt"
    assert restored.read_text() == "my notes\n"
    assert restored.stat().st_uid == UID_BASE + n
    assert restored.parent.stat().st_uid == UID_BASE + n
    as_student(n, f"cat restored-{day}-2/WKSHP-Notes/notes.txt >/dev/null")

    _hostile_archive(tmp / "backups" / "archives" / "hostile.tar.gz")
    before = set(os.listdir(homes)) | set(os.listdir(tmp))
    code, out = wod(cfg, "backups", "restore", "hostile", str(n))
    assert code == 0 and f"1 file(s) restored into restored-{day}-3/" in out, out
    folder = homes / f"student{n}" / f"restored-{day}-3"
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert found == ["WKSHP-Notes", "WKSHP-Notes/kept.txt"]
    assert set(os.listdir(homes)) | set(os.listdir(tmp)) == before
    assert not Path("/var/tmp/wod-restore-absolute.txt").exists()
    assert not (homes.parent / "escaped.txt").exists()
    assert os.path.islink(homes / f"student{n}" / f"restored-{day}")  # left as it was
    code, out = wod(cfg, "backups", "restore", "../../etc/passwd", str(n))
    assert code == 64 and "no backup" in out


def test_a_student_keeps_their_work_as_pdf_and_the_operator_gets_it_from_the_archive(data):
    """The student's one command in the workshop folder (the original's
    wod-generate-pdf.sh), and `backups export --format pdf`: each PDF read as a person
    would, its text by pdftotext and its first page, the chart included, by pdftoppm."""
    cfg, homes, tmp = data
    n = FIRST + 2
    assert wod(cfg, "create", "WKSHP-Notes", str(n))[0] == 0
    folder = homes / f"student{n}" / "WKSHP-Notes"
    script = folder / "wod-generate-pdf.sh"
    assert script.stat().st_mode & 0o777 == 0o755 and script.stat().st_uid == UID_BASE + n
    as_student(n, f"cat > WKSHP-Notes/2-Report.ipynb <<'EOF'\n"
                  f"{notebook_with_outputs('Lab report of student' + str(n))}EOF\n"
                  f"cd WKSHP-Notes && ./wod-generate-pdf.sh 2-Report.ipynb")
    pdf = folder / "2-Report.pdf"
    assert pdf.stat().st_uid == UID_BASE + n  # the student's own file
    text, red = pdf_text_and_red(pdf)
    assert f"Lab report of student{n}" in text and "the answer is 42" in text
    assert "print('the answer is', 6 * 7)" in text
    assert red > 500, red  # the chart, on the first page
    # The operator: the archive of the CLEANUP, as PDF (Chromium as nobody).
    as_student(n, "rm WKSHP-Notes/2-Report.pdf")
    code, out = wod(cfg, "cleanup", "WKSHP-Notes", str(n))
    assert code == 0, out
    ident = next(r["id"] for r in json.loads(wod(cfg, "backups", "list", "--json")[1])
                 if r["student"] == n)
    code, out = wod(cfg, "backups", "export", ident, str(tmp / "pdf"), "--format", "pdf")
    assert code == 0 and "PDF of 1 notebook(s)" in out, out
    assert sorted(p.name for p in (tmp / "pdf" / "WKSHP-Notes").iterdir()) == [
        "2-Report.ipynb", "2-Report.pdf"]
    text, red = pdf_text_and_red(tmp / "pdf" / "WKSHP-Notes" / "2-Report.pdf")
    assert f"Lab report of student{n}" in text and "the answer is 42" in text and red > 500
