"""`manage.py runworker` is ours (Channels ships one too), and bad arguments are clear
CommandErrors rather than tracebacks."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class

from tasks.management.commands.runworker import Command


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
