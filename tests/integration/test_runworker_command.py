"""`manage.py runworker` is ours (Channels ships one too), and bad arguments are clear
CommandErrors rather than tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.core.management.base import SystemCheckError

from tasks.management.commands.runworker import Command

ROOT = Path(__file__).resolve().parents[2]


def test_runworker_resolves_to_the_task_service_command():
    assert get_commands()["runworker"] == "tasks"
    command = load_command_class(get_commands()["runworker"], "runworker")
    assert isinstance(command, Command)
    assert "Task Service worker" in command.help


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--concurrency", "-3"], "--concurrency must be at least 1"),
        (["--max-tasks", "0"], "--max-tasks must be at least 1"),
        (["--concurrency", "many"], "invalid int value: 'many'"),
        (["--max-tasks", "1.5"], "invalid int value: '1.5'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_arguments_are_command_errors(args, fragment):
    # Validation happens before the worker connects or claims anything, so no database.
    with pytest.raises(CommandError) as excinfo:
        call_command("runworker", *args)
    assert fragment in str(excinfo.value)


def test_the_worker_runs_the_service_checks_without_loading_what_it_never_serves(settings):
    # A bad engine setting still stops the worker before it starts.
    settings.TASKS_ENGINE = {"LEASE_SECONDS": -1}
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("runworker", skip_checks=False)
    assert "tasks.E001" in str(excinfo.value)
    # The URL, admin, template and command checks would import the URLconf, the admin's
    # views and every template library into a process that serves none of them.
    probe = (
        "import sys; sys.argv = ['manage.py', 'runworker']\n"
        "import django; django.setup()\n"
        "from django.core.management import load_command_class\n"
        "command = load_command_class('tasks', 'runworker')\n"
        "command.check(**command.get_check_kwargs({}))\n"
        "print(sorted(m for m in ('taskservice.urls', 'tasks.api.views',\n"
        "    'django.contrib.admin.templatetags.admin_list',\n"
        "    'django.db.migrations.autodetector') if m in sys.modules))\n")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="taskservice.settings", DEBUG="1")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"
