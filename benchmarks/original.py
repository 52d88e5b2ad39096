"""The original bash + Ansible backend, installed for its order path and run beside ours.

DIR holds checkouts of Workshops-on-Demand's `wod-backend`, `wod-install` and
`wod-notebooks`. They are laid out as wod-install's install.sh and wod-backend's
check_backend.yml lay them out for the backend user (WODROOTDIR = its home: the three
repositories, a `wod-private` with its generated group file and vault secret; the
scripts rendered from their `.j2` templates; `.procmailrc` from `sys/procmailrc.j2`;
students studentN with uid UIDBASE + N, homes under WODSTUDDIR with the backend user's
ACLs; its hub users). What the installer does beyond the order path (packages,
JupyterHub, kernels, postfix, firewall) is not redone: the hub and the frontend are the
ones our backend uses.

The original reads fixed paths (/etc/wod.sh, /etc/wod.yml, its sudoers rule, its
students in /etc/passwd): it runs in a private mount and PID namespace whose /etc is an
overlay over the host's, its upper layer in this run's folder. The host's /etc, users
and processes are left as they were; removing the folder removes everything the
original made.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import jinja2
import requests
import yaml

ANSIBLE_VENV = Path("/var/cache/wod-backend-bench/original-ansible")
TOOLS = ("bash", "jq", "curl", "rsync", "setfacl", "procmail", "sudo", "ssh-keygen",
         "chpasswd", "unshare", "nsenter", "setpriv")
REPOS = ("wod-backend", "wod-install", "wod-notebooks")
GROUP = "production"


def preflight(src: Path) -> list[str]:
    """What is missing to run the original: one line each."""
    out = [f"{src / name}: no checkout (git clone "
           f"https://github.com/Workshops-on-Demand/{name})"
           for name in REPOS if not (src / name).is_dir()]
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        out.append(f"missing programs: {' '.join(missing)} (apt-get install rsync acl jq "
                   f"curl procmail sudo openssh-client util-linux)")
    return out


def published_variables(src: Path) -> dict:
    """The workshops' variables the original's installer gives every notebook
    (wod-install's group_vars: BRANDING, SURVEYURL...): both sides render with them."""
    data = yaml.safe_load((src / "wod-install/ansible/group_vars/all.yml").read_text())
    return {k: v for k, v in (data or {}).items() if not k.startswith("WOD")}


def ensure_ansible() -> Path:
    """The original's Ansible, as its installer gets it: ansible with the collections it
    installs (ansible.posix for synchronize and acl, community.general for json_query)
    and jmespath, in a virtualenv of Debian's Python cached for later runs."""
    if not (ANSIBLE_VENV / "bin" / "ansible-playbook").exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "ansible",
                        "jmespath"], check=True)
    return ANSIBLE_VENV


class Original:
    """The original's order path for students low..high, as `user` (our backend user,
    whose home is WODROOTDIR inside the namespace)."""

    def __init__(self, src: Path, root: Path, user: str, low: int, high: int,
                 frontend: tuple[str, str, str], hub: tuple[str, str]):
        self.src, self.root, self.user, self.low, self.high = src, root, user, low, high
        self.fe_url, self.fe_user, self.fe_password = frontend
        self.hub_url, self.hub_token = hub
        self.wod = root / "wod"  # WODROOTDIR, the backend user's home in the namespace
        self.students = root / "student"  # WODSTUDDIR
        self.holder: subprocess.Popen | None = None
        self.pid = 0
        self.read_to = 0  # how far the trace has been read (finished)
        self.ends: dict[tuple[int, str], int] = {}

    # -- installation -----------------------------------------------------------------
    def variables(self) -> dict:
        w, priv = self.wod, self.wod / "wod-private"
        v: dict = {}
        for path in (self.src / "wod-backend/ansible/group_vars/all.yml",
                     self.src / "wod-install/ansible/group_vars/all.yml"):
            v.update(yaml.safe_load(path.read_text()) or {})
        v.update(
            WODUSER=self.user, WODGROUP=GROUP, WODTYPE="backend", WODROOTDIR=str(w),
            WODBEDIR=f"{w}/wod-backend", WODINSDIR=f"{w}/wod-install/install",
            WODINSANSDIR=f"{w}/wod-install/ansible", WODINSSYSDIR=f"{w}/wod-install/sys",
            WODINSSCRIPTDIR=f"{w}/wod-install/scripts",
            WODANSIBLEDIR=f"{w}/wod-backend/ansible", WODSCRIPTDIR=f"{w}/wod-backend/scripts",
            WODSYSDIR=f"{w}/wod-backend/sys", WODPRIVDIR=str(priv),
            WODANSIBLEPRIVDIR=f"{priv}/ansible", WODSCRIPTPRIVDIR=f"{priv}/scripts",
            WODSYSPRIVDIR=f"{priv}/sys", WODPRIVNOBO=f"{priv}/notebooks",
            WODNOBO=f"{w}/wod-notebooks", WODAPIDBDIR=f"{w}/wod-api-db",
            WODFEDIR=f"{w}/wod-frontend", WODSTUDDIR=str(self.students),
            WODAPIDBEXTURL=self.fe_url, WODAPIDBURL=self.fe_url, WODBEAPIURL=self.hub_url,
            WODBETOKEN=self.hub_token, WODUSERMIN=self.low, WODUSERMAX=self.high,
            WODBASESTDID=0, WODSENDER="admin@localhost", WODBEFQDN="127.0.0.1",
            ansible_env={"HOME": str(w)})
        return v

    def install(self, v: dict) -> None:
        self.root.mkdir(mode=0o755, parents=True)
        self.students.mkdir(mode=0o711)
        for name in REPOS:
            shutil.copytree(self.src / name, self.wod / name, symlinks=True,
                            ignore=shutil.ignore_patterns(".git"))
        priv = Path(v["WODPRIVDIR"])
        for sub in ("ansible/generated", "scripts", "skel", "notebooks", "sys"):
            (priv / sub).mkdir(parents=True)
        (priv / "ansible" / "vault_secret").write_text(f"{v['VAULTPWD']}\n")
        (priv / "ansible" / "vault_secret").chmod(0o600)
        keys = ("WODGROUP WODBEFQDN WODAPIDBEXTURL WODAPIDBURL WODBEAPIURL WODBASESTDID"
                ).split()
        (priv / "ansible" / "generated" / GROUP).write_text(
            yaml.safe_dump({k: v[k] for k in keys}))
        (priv / "scripts" / "wod-private.sh").write_text(
            f"export WODAPIDBUSER={self.fe_user}\nexport WODAPIDBUSERPWD='{self.fe_password}'\n")
        python = ANSIBLE_VENV / "bin" / "python"
        (self.wod / "wod-backend/ansible/inventory").write_text(
            f"[{GROUP}]\n127.0.0.1 ansible_connection=local "
            f"ansible_python_interpreter={python}\n")
        self._render(v)
        shutil.copy(self.wod / "wod-install/ansible/.ansible.cfg", self.wod / ".ansible.cfg")
        (self.wod / ".mail").mkdir(mode=0o750)
        (self.wod / "bin").mkdir()
        for program in ("ansible-playbook", "ansible-vault"):
            (self.wod / "bin" / program).symlink_to(ANSIBLE_VENV / "bin" / program)
        self._etc(v)
        subprocess.run(["chown", "-R", f"{self.user}:", str(self.wod), str(self.students)],
                       check=True)

    def _render(self, v: dict) -> None:
        """check_backend.yml's rendering: every scripts/*.sh*.j2 beside itself, 0755;
        the procmail recipe into the home."""
        env = jinja2.Environment(undefined=jinja2.ChainableUndefined,
                                 keep_trailing_newline=True)
        scripts = self.wod / "wod-backend" / "scripts"
        for template in sorted(scripts.glob("*.sh*.j2")):
            out = template.with_name(template.name[:-3])
            out.write_text(env.from_string(template.read_text()).render(v))
            out.chmod(0o755)
        (scripts / "random.sh").chmod(0o755)
        for name in ("procmail-action.sh", "functions.sh"):
            if "{{" in (scripts / name).read_text():
                raise RuntimeError(f"{name}: a variable left unrendered")
        rc = self.wod / "wod-backend" / "sys" / "procmailrc.j2"
        (self.wod / ".procmailrc").write_text(env.from_string(rc.read_text()).render(v))

    def _etc(self, v: dict) -> None:
        """What the installer writes in /etc, kept here until the namespace copies it
        into its overlay."""
        etc = self.root / "etc-files"
        etc.mkdir()
        exports = ("WODUSER WODTYPE WODAPIDBURL WODAPIDBEXTURL WODBEAPIURL WODROOTDIR "
                   "WODINSDIR WODINSANSDIR WODINSSYSDIR WODINSSCRIPTDIR WODANSIBLEDIR "
                   "WODGROUP WODBEDIR WODPRIVDIR WODANSIBLEPRIVDIR WODSCRIPTPRIVDIR "
                   "WODSYSPRIVDIR WODPRIVNOBO WODAPIDBDIR WODFEDIR WODNOBO WODSYSDIR "
                   "WODSCRIPTDIR WODSTUDDIR WODUSERMAX").split()
        playopt = " ".join(f"-e {k}={v[k]}" for k in (
            "WODGROUP WODUSER WODBEDIR WODNOBO WODPRIVNOBO WODPRIVDIR WODAPIDBDIR WODFEDIR "
            "WODSTUDDIR WODANSIBLEDIR WODANSIBLEPRIVDIR WODSCRIPTDIR WODSCRIPTPRIVDIR "
            "WODSYSDIR WODSYSPRIVDIR WODINSDIR WODINSSCRIPTDIR WODINSANSDIR "
            "WODINSSYSDIR").split())
        playopt += (f" -e @{v['WODINSANSDIR']}/group_vars/all.yml -e WODLDAPSETUP=0 "
                    f"-e WODAPPMIN=0 -e WODAPPMAX=0")
        privopt = f" -e @{v['WODANSIBLEPRIVDIR']}/generated/{GROUP}"
        lines = [f"export {k}={v[k]}" for k in exports]
        lines += ['export WODPRIVINV=""', f'export WODANSPRIVOPT="{privopt}"',
                  f'export WODANSPLAYOPT="{playopt}"']
        (etc / "wod.sh").write_text("\n".join(lines) + "\n")
        (etc / "wod.yml").write_text(f"WODUSER: {self.user}\nWODSENDER: admin@localhost\n")
        (etc / "sudoers").write_text(
            f"Defaults:{self.user} !fqdn\nDefaults:{self.user} !requiretty\n"
            f"{self.user} ALL=(ALL) NOPASSWD: ALL\n")

    def _setup_script(self, uidbase: int) -> str:
        r, user = self.root, self.user
        students = " ".join(str(n) for n in range(self.low, self.high + 1))
        return f"""set -e
mkdir -p {r}/etc-upper {r}/etc-work
mount -t overlay overlay -o lowerdir=/etc,upperdir={r}/etc-upper,workdir={r}/etc-work /etc
usermod -d {self.wod} {user}
install -m 0644 {r}/etc-files/wod.yml /etc/wod.yml
install -m 0755 {r}/etc-files/wod.sh /etc/wod.sh
install -m 0440 {r}/etc-files/sudoers /etc/sudoers.d/{user}
for n in {students}; do
  groupadd -g $(({uidbase} + n)) student$n
  useradd -m -d {self.students}/student$n -c student$n -s /bin/bash \
      -u $(({uidbase} + n)) -g student$n student$n
  setfacl -R -m u:{user}:rwx {self.students}/student$n
  setfacl -R -d -m u:{user}:rwx {self.students}/student$n
done
echo ready
exec sleep infinity
"""

    # -- the namespace ----------------------------------------------------------------
    def start(self) -> "Original":
        v = self.variables()
        uidbase = int(v["UIDBASE"])
        taken = [n for n in range(self.low, self.high + 1) if _uid_taken(uidbase + n)]
        if taken:
            raise RuntimeError(f"uids {uidbase + taken[0]}.. are taken on this host: "
                               f"choose other student numbers")
        self.install(v)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", "/bin/sh", "-c", self._setup_script(uidbase)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.holder.stdout is not None
        first = self.holder.stdout.readline()
        if first.strip() != "ready":
            raise RuntimeError(f"the original's namespace: {first}{self.holder.stdout.read()}")
        children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children")
        self.pid = int(children.read_text().split()[0])
        for n in range(self.low, self.high + 1):  # check_backend.yml's hub users
            requests.post(f"{self.hub_url}/hub/api/users/student{n}", timeout=30,
                          headers={"Authorization": f"token {self.hub_token}"})
        return self

    def stop(self) -> None:
        if self.holder and self.holder.poll() is None:
            os.kill(self.pid, 9)  # the namespace's init: every process in it goes
            self.holder.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def deliver(self, mail: bytes, log: Path) -> subprocess.Popen:
        """One mail handed to procmail as the backend user, inside the namespace (as
        postfix's local delivery would: `mailbox_command = procmail`)."""
        out = log.open("ab")
        p = subprocess.Popen(["nsenter", "-t", str(self.pid), "-m", "-p", "--",
                              "setpriv", f"--reuid={self.user}", f"--regid={self.user}",
                              "--init-groups", "procmail"],
                             stdin=subprocess.PIPE, stdout=out, stderr=out, cwd="/")
        assert p.stdin is not None
        p.stdin.write(mail)
        p.stdin.close()
        out.close()
        return p

    def finished(self, n: int, action: str) -> int:
        """How many orders for student n and action ran to their last line. procmail
        sends the script's stdout nowhere and its stderr, `set -x`'s trace, to its
        LOGFILE (~/.mail/from): the trace of the script's last `echo`. Read from where
        the last look stopped: the trace grows by megabytes, and reading it whole at
        every look would take the CPU from the very orders measured."""
        trace = self.wod / ".mail" / "from"
        try:
            with trace.open("rb") as fh:
                fh.seek(self.read_to)
                chunk = fh.read()
        except OSError:
            return 0
        complete = chunk.rfind(b"\n") + 1
        self.read_to += complete
        for line in chunk[:complete].decode(errors="replace").splitlines():
            marker = line.find("end of procmail-action for student ")
            if marker >= 0:
                words = line[marker:].split()
                if "action" in words and words.index("action") + 1 < len(words):
                    key = (int(words[5]), words[words.index("action") + 1])
                    self.ends[key] = self.ends.get(key, 0) + 1
        return self.ends.get((n, action), 0)


def _uid_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
