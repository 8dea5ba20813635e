"""Loading the settings starts nothing: without DATABASE_URL the embedded PostgreSQL
starts on the first connection, so commands that never connect leave no server behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psutil

from tests.support import processes

COPIED = ("manage.py", "tasks", "taskcli", "taskservice", "plugins")


def _fresh_copy(tmp_path):
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in COPIED:
        source = processes.ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / name)
    return copy


def _processes_under(path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def test_help_and_check_on_a_fresh_checkout_start_no_database(tmp_path):
    copy = _fresh_copy(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "TASKS_QUERY_DATABASE_URL", "TASKS_DATA_DIR",
                        "DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env.update(DEBUG="1", XDG_RUNTIME_DIR=str(tmp_path))
    for command in (["help"], ["check"], ["help", "runworker"]):
        result = subprocess.run([sys.executable, "manage.py", *command], cwd=copy, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert not (copy / ".data").exists()  # no initdb
    assert _processes_under(copy) == []
