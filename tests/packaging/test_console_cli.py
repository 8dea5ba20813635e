"""`tasks-cli` travels: installed alone (the wheel without its dependencies, plus PyYAML
for -o yaml) into a fresh virtual environment with no Django, it talks to a live server and
prints exactly what `manage.py task ... --address` prints, in every format, with the
same errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tasks.models import Task
from tests.factories import UserFactory
from tests.support import users, venvs
from tests.support.users import grant

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory, wheel):
    root = tmp_path_factory.mktemp("cli")
    python = venvs.fresh_venv(root / "venv", dependencies=("yaml", "_yaml", "pyyaml"))
    venvs.pip_install(python, wheel, "--no-deps")
    return python.parent / "tasks-cli"


def _manage(*args: str) -> str:
    out = io.StringIO()
    call_command("task", *args, stdout=out)
    return out.getvalue()


def test_the_console_cli_matches_manage_py_against_a_live_server(cli_venv, live_server,
                                                                 tmp_path):
    token = Token.objects.create(user=grant(UserFactory(username="far"), *users.OPERATOR))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "TASKS_", "DATABASE_")) and k != "PYTHONPATH"}
    env.update(TASKS_ADDRESS=live_server.url, TASKS_TOKEN=token.key,
               XDG_CONFIG_HOME=str(tmp_path / "config"))

    def cli(*args: str, code: int = 0, environment=None) -> str:
        result = subprocess.run([str(cli_venv), *args], env=environment or env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout if code == 0 else result.stderr

    python = cli_venv.parent / "python"
    no_django = subprocess.run([str(python), "-c", "import django"], env=env,
                               capture_output=True, text=True)
    assert "No module named 'django'" in no_django.stderr  # only the CLI is there

    assert cli("--version").strip() == f"tasks-cli {_version()}"
    remote = ["--address", live_server.url, "--token", token.key]

    created = json.loads(cli("task", "create", "far away", "-t", "simulate",
                             "--parameter", "duration=0.5", "--priority", "3", "-o", "json"))
    task_id = str(created["id"])
    assert Task.objects.get(pk=created["id"]).priority == 3
    for args in (["get", "--id", task_id], ["history", "-i", task_id], ["status"],
                 ["list"], ["list", "--page", "2"], ["list", "--status", "queued"]):
        for fmt in ("table", "json", "yaml"):
            expected = _manage(*args, "-o", fmt, *remote)
            assert cli("task", *args, "-o", fmt) == expected, (args, fmt)
            assert cli(*args, "-o", fmt) == expected  # `task` may be left out
    assert json.loads(cli("task", "l", "-o", "json", "--pageNumber", "2"))["results"] == []
    assert cli("task", "s") == cli("task", "stat") == _manage("status", *remote)

    # Errors: the same one line and exit code 1.
    with pytest.raises(CommandError) as far:
        _manage("get", "--id", "424242", *remote)
    assert cli("task", "get", "--id", "424242", code=1).strip() == f"CommandError: {far.value}"
    # Usage errors exit 2, as argparse does for manage.py.
    cli("task", "list", "--output", "xml", code=2)

    # The address and token from the config file instead of the environment.
    config = tmp_path / "config" / "task-service"
    config.mkdir(parents=True)
    (config / "cli.ini").write_text(
        f"[default]\naddress = {live_server.url}\ntoken = {token.key}\n")
    bare = {k: v for k, v in env.items() if k not in ("TASKS_ADDRESS", "TASKS_TOKEN")}
    assert cli("task", "status", environment=bare) == _manage("status", *remote)
    (config / "cli.ini").unlink()
    assert "No server address" in cli("task", "status", code=1, environment=bare)


def _version() -> str:
    from importlib.metadata import version

    return version("task-service")
