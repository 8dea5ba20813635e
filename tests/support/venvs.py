"""Build the project's wheels and install them into fresh virtual environments, offline.

The builds run setuptools from the dev extra without build isolation (no index needed):
task-service from pyproject.toml, task-service-cli from cli/pyproject.toml. A fresh
environment gets a wheel through pip with --no-index, dependencies and all: the
dependencies come from the environment running the tests, which the new one reads through
a .pth file listing a folder of links to exactly the distributions a wheel requires (its
base requirements and theirs, no extras of its own). pip finds those satisfied and
installs only the wheel; anything the wheel needs but does not declare is missing there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.processes import ROOT

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "tasks", "taskservice", "taskcli",
           "plugins", "cli")
PROJECTS = {"task-service": ".", "task-service-cli": "cli"}


def build_wheel(where: Path, distribution: str = "task-service") -> Path:
    """A wheel of the checkout (`distribution`: task-service or task-service-cli), built
    from a copy (a build writes beside its sources)."""
    source = where / "source"
    if not source.exists():
        source.mkdir(parents=True)
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name,
                                ignore=shutil.ignore_patterns("__pycache__", "build",
                                                              "*.egg-info"))
            else:
                shutil.copy(ROOT / name, source / name)
    out = where / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(out),
                    str(source / PROJECTS[distribution])],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob(f"{distribution.replace('-', '_')}-*.whl")
    return wheel


def base_requirements(distribution: str) -> list[str]:
    """The `dependencies` of the checkout's pyproject for `distribution` (no extras)."""
    pyproject = ROOT / PROJECTS[distribution] / "pyproject.toml"
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def installed_closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
    """The distributions of the running environment that `requirements` pull in: each
    one named, with the extras it asks for, and theirs, recursively."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        if not _applies(requirement, ()):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = found.setdefault(key[0], metadata.distribution(requirement.name))
        for text in dist.requires or []:
            child = Requirement(text)
            if _applies(child, requirement.extras):
                child.marker = None  # judged here, with the parent's extras
                todo.append(child)
    return list(found.values())


def _top_level_entries(dist: metadata.Distribution) -> set[Path]:
    """The files and folders of site-packages that belong to `dist`."""
    assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
    site = Path(dist.locate_file(""))
    entries = set()
    for file in dist.files:
        parts = Path(file).parts
        if parts[0] == ".." or parts[0] == "__pycache__" or parts[0].endswith(".pth"):
            continue  # scripts in bin/, caches, path hooks of their own
        entries.add(site / parts[0])
    return {entry for entry in entries if entry.exists()}


def fresh_venv(path: Path, *, requirements: Iterable[str] = ()) -> Path:
    """A new virtual environment; its python. The distributions `requirements` pull in
    from the running environment are readable from it (not installed into it)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    dists = installed_closure(requirements)
    if dists:
        links = path / "dependencies"
        links.mkdir()
        for dist in dists:
            for entry in _top_level_entries(dist):
                if not (links / entry.name).is_symlink():  # a namespace shared by two
                    (links / entry.name).symlink_to(entry)
        purelib = subprocess.run([str(python), "-c",
                                  "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        (Path(purelib) / "dependencies.pth").write_text(f"{links}\n")
    return python


def pip_install(python: Path, wheel: Path, *args: str) -> None:
    """Install `wheel` with its requirements, which must already be satisfied (no index)."""
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index",
                    "--disable-pip-version-check", "--find-links", str(wheel.parent),
                    *args, str(wheel)], check=True, capture_output=True, timeout=300)
