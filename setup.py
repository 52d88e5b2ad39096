"""Build hook: the shipped content travels inside the wheel.

The workshops, skeleton, hook scripts, playbooks and example files live at the top of
the repository (where operators and content authors look for them); `build_py` copies
them into `wod_backend/shipped/` of the build, so that an installed wheel finds them
next to the package. An editable install reads them from the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("workshops-public", "workshops-private", "scripts", "playbooks",
           "procmailrc.example")


class BuildWithContent(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "wod_backend" / "shipped"
        for name in SHIPPED:
            src = HERE / name
            if not src.exists():
                continue
            dst = target / name
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithContent})
