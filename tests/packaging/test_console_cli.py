"""`tasks-cli` travels: the task-service-cli wheel (cli/pyproject.toml: the taskcli package
and PyYAML, nothing else) installed into a fresh virtual environment with no Django talks
to a live server and prints exactly what `manage.py task ... --address` prints, in every
format, with the same errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

import taskcli
from tasks.models import Task
from tests.factories import UserFactory
from tests.support import users, venvs
from tests.support.users import grant

pytestmark = pytest.mark.process


def test_the_cli_wheel_holds_the_taskcli_package_and_requires_only_pyyaml(cli_wheel):
    with zipfile.ZipFile(cli_wheel) as archive:
        names = archive.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(meta).decode()
        (scripts,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(scripts).decode()
    assert {n.split("/")[0] for n in names if not n.startswith("task_service_cli-")} == {
        "taskcli"}
    assert [line for line in metadata.splitlines() if line.startswith("Requires-Dist")] == [
        "Requires-Dist: PyYAML>=6"]
    assert f"Version: {taskcli.__version__}" in metadata
    assert "tasks-cli = taskcli.main:main" in entry_points


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory, cli_wheel):
    root = tmp_path_factory.mktemp("cli")
    # Only what the CLI's pyproject requires is readable there: pip checks the wheel's
    # requirements against it (no --no-deps) and installs the wheel alone.
    python = venvs.fresh_venv(root / "venv",
                              requirements=venvs.base_requirements("task-service-cli"))
    venvs.pip_install(python, cli_wheel)
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
        result = subprocess.run([str(cli_venv), *args], env=environment or env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout if code == 0 else result.stderr

    python = cli_venv.parent / "python"
    for module in ("django", "tasks", "rest_framework"):
        missing = subprocess.run([str(python), "-c", f"import {module}"], env=env,
                                 cwd=tmp_path, capture_output=True, text=True)
        assert f"No module named '{module}'" in missing.stderr  # only the CLI is there
    where = subprocess.run([str(python), "-c", "import taskcli, yaml; print(taskcli.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout
    assert str(cli_venv.parent.parent) in where  # installed from the wheel, not the checkout

    assert cli("--version").strip() == f"tasks-cli {taskcli.__version__}"
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

