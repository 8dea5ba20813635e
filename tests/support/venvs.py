"""Build the project's wheel and install it into fresh virtual environments, offline.

The build runs setuptools from the dev extra without build isolation (no index needed).
A fresh environment gets the wheel through pip with --no-index; its dependencies come
from the environment running the tests, which the new one reads through a .pth file that
lists a folder of links to those packages (the project's own editable install left out),
so pip finds every requirement satisfied and installs only the wheel itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.support.processes import ROOT

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "tasks", "taskservice", "plugins")
OWN = ("task_service", "__editable__", "tasks", "taskservice", "plugins")


def build_wheel(where: Path) -> Path:
    """The wheel of the checkout, built from a copy (the build writes beside its sources)."""
    source = where / "source"
    source.mkdir(parents=True)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    out = where / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("task_service-*.whl")
    return wheel


def fresh_venv(path: Path, *, dependencies: bool | tuple[str, ...]) -> Path:
    """A new virtual environment; its python. With `dependencies`, the packages of the
    running environment are readable from it (not installed into it): all of them, or
    those whose folder or dist-info name starts with one of the given prefixes."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    if dependencies:
        links = path / "dependencies"
        links.mkdir()
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if entry.name.startswith(OWN) or entry.suffix == ".pth" or entry.name in (
                    "pip", "__pycache__") or entry.name.startswith("pip-"):
                continue
            if dependencies is not True and not entry.name.lower().startswith(dependencies):
                continue
            (links / entry.name).symlink_to(entry)
        purelib = subprocess.run([str(python), "-c",
                                  "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        (Path(purelib) / "dependencies.pth").write_text(f"{links}\n")
    return python


def pip_install(python: Path, wheel: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index",
                    "--disable-pip-version-check", "--find-links", str(wheel.parent),
                    *args, str(wheel)], check=True, capture_output=True, timeout=300)
