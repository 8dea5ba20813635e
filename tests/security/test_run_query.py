"""run_query is safe by construction: a real second role and database, the real plugin, a
real worker process, and the start-up verification that refuses unsafe roles."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import DatabaseError, connection
from django.test import override_settings

from plugins import registry
from plugins.base import PayloadError, TaskCancelled, TaskContext
from plugins.query_checks import query_database_problems
from tasks import engine
from tasks.exceptions import InvalidTask
from tasks.maintenance.maintainer import MAINTAINER_LOCK_KEY, Maintainer
from tasks.models import Task
from tests.support import processes
from tests.support.processes import wait_until
from tests.support.query_db import SAMPLE_ROWS, configured

SLEEP = "SELECT pg_sleep(60)"


def ctx_for(seconds: float = 30.0) -> TaskContext:
    return TaskContext(task_id=1, attempt=1, deadline=time.monotonic() + seconds,
                       logger=logging.getLogger("tests.security"))


class Run:
    """run_query validated and run in a thread of its own, as a worker's executor does."""

    def __init__(self, payload: dict, ctx: TaskContext | None = None):
        self.ctx = ctx or ctx_for()
        self.box: dict[str, Any] = {}
        plugin = registry.get("run_query")
        cleaned = plugin.validate(payload)
        self.thread = threading.Thread(target=self._target, args=(plugin, cleaned))
        self.thread.start()

    def _target(self, plugin, payload) -> None:
        try:
            self.box["result"] = plugin.run(payload, self.ctx)
        except BaseException as exc:  # re-raised in the test's thread
            self.box["error"] = exc

    def result(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_query did not return"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]


def run(sql: str, **payload: Any) -> Any:
    return Run({"sql": sql, **payload}).result()


# --- what the role cannot do, through the real plugin ----------------------------------


def test_reads_the_operators_data(run_query_on):
    result = run("SELECT count(*) AS n, current_user AS who FROM items")
    assert result["rows"] == [[SAMPLE_ROWS, run_query_on.role]]


def test_copy_to_program_runs_no_shell_command(run_query_on, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(DatabaseError, match="pg_execute_server_program|superuser"):
        run(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
    assert not marker.exists()


def test_pg_read_file_is_denied(run_query_on):
    with pytest.raises(DatabaseError, match="permission denied for function pg_read_file"):
        run("SELECT pg_read_file('/etc/passwd')")


@pytest.mark.parametrize("table", ["auth_user", "authtoken_token", "django_session", "tasks"])
def test_the_services_tables_are_out_of_reach(run_query_on, table):
    with pytest.raises(DatabaseError, match=f'relation "{table}" does not exist'):
        run(f"SELECT * FROM {table}")


def test_pg_terminate_backend_cannot_kill_the_services_sessions(run_query_on):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    denied = r"must be a superuser|must be a member|permission denied to terminate"
    with pytest.raises(DatabaseError, match=denied):
        run("SELECT pg_terminate_backend(%s)", params=[pid])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid


def test_writes_are_refused_even_where_the_role_may_write(run_query_on):
    # The role holds INSERT/UPDATE/DELETE on scratch: READ ONLY is what stops them.
    for statement in ("INSERT INTO scratch VALUES (1)", "UPDATE scratch SET id = 2",
                      "WITH gone AS (DELETE FROM scratch RETURNING id) SELECT count(*) FROM gone"):
        with pytest.raises(DatabaseError, match="read-only transaction"):
            run(statement)
    assert run_query_on.admin("SELECT count(*) FROM scratch") == [(0,)]


def test_session_limits_and_a_fresh_session_per_run(run_query_on):
    result = run("SELECT current_setting('transaction_read_only'), "
                 "current_setting('lock_timeout'), "
                 "current_setting('idle_in_transaction_session_timeout')")
    assert result["rows"] == [["on", "5s", "10s"]]
    assert run_query_on.sessions() == 0  # the connection was closed after the run


def test_an_advisory_lock_does_not_block_the_maintainer(run_query_on):
    key = MAINTAINER_LOCK_KEY
    holder = Run({"sql": "SELECT pg_advisory_lock(%s), pg_sleep(60)", "params": [key]})
    try:
        wait_until(lambda: run_query_on.admin(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = {key}")[0][0]
            == 1, timeout=10, message="run_query did not take the advisory lock")
        # Its own database is its own lock space: a maintainer still takes the leader lock.
        maintainer = Maintainer([], election_interval=0.1)
        maintainer.start()
        try:
            assert maintainer.leading.wait(10)
        finally:
            maintainer.stop()
    finally:
        holder.ctx.cancel("cancelled")
        with pytest.raises(TaskCancelled):
            holder.result()


@pytest.mark.parametrize("reason", ["cancelled", "timeout"])
def test_a_cancel_or_timeout_stops_the_statement_on_the_server(run_query_on, reason):
    running = Run({"sql": SLEEP})
    wait_until(lambda: SLEEP in run_query_on.active_statements(), timeout=10,
               message="the query never started")
    started = time.monotonic()
    running.ctx.cancel(reason)  # what the worker's monitor does on cancel and at the deadline
    with pytest.raises(TaskCancelled, match=reason):
        running.result()
    assert time.monotonic() - started < 5
    assert run_query_on.active_statements() == []
    assert run_query_on.sessions() == 0


def test_the_deadline_ends_the_statement_before_the_worker_gives_up(run_query_on):
    ctx = ctx_for(2.0)
    with pytest.raises(DatabaseError, match="statement timeout"):
        Run({"sql": SLEEP}, ctx).result()
    # The server stopped it before the worker's monitor would free the slot.
    assert time.monotonic() < ctx.deadline
    assert run_query_on.active_statements() == []


# --- configuration -----------------------------------------------------------------------


def test_unconfigured_run_query_is_refused_at_enqueue(transactional_db):
    with override_settings(TASKS_QUERY_DATABASE=""):
        with pytest.raises(InvalidTask, match="TASKS_QUERY_DATABASE_URL") as excinfo:
            engine.enqueue(name="q", type="run_query", payload={"sql": "SELECT 1"})
    assert "run_query is off" in str(excinfo.value)
    assert not Task.objects.exists()


def test_the_payload_cannot_choose_a_database(run_query_on):
    with pytest.raises(PayloadError) as excinfo:
        registry.get("run_query").validate({"sql": "SELECT 1", "database": "default"})
    assert list(excinfo.value.errors) == ["database"]


# --- the verification ---------------------------------------------------------------------


def test_the_safe_role_passes(run_query_on):
    assert query_database_problems() == []


def test_a_superuser_is_refused(run_query_on):
    run_query_on.admin(f'ALTER ROLE "{run_query_on.role}" SUPERUSER', service=True)
    try:
        problems = query_database_problems()
    finally:
        run_query_on.admin(f'ALTER ROLE "{run_query_on.role}" NOSUPERUSER', service=True)
    assert any("is a superuser" in p for p in problems), problems


@pytest.mark.parametrize("granted", ["pg_read_server_files", "pg_write_server_files",
                                     "pg_execute_server_program", "pg_signal_backend"])
def test_a_member_of_a_server_role_is_refused(run_query_on, granted):
    run_query_on.admin(f'GRANT {granted} TO "{run_query_on.role}"', service=True)
    try:
        problems = query_database_problems()
    finally:
        run_query_on.admin(f'REVOKE {granted} FROM "{run_query_on.role}"', service=True)
    assert problems == [f"run_query role {run_query_on.role!r}: is a member of {granted} "
                        f"(REVOKE {granted} FROM {run_query_on.role})"]


def test_a_role_that_reads_the_services_tables_is_refused(run_query_on):
    run_query_on.admin(f'GRANT SELECT ON auth_user, authtoken_token TO "{run_query_on.role}"',
                       service=True)
    try:
        problems = query_database_problems()
    finally:
        run_query_on.admin(f'REVOKE SELECT ON auth_user, authtoken_token FROM '
                           f'"{run_query_on.role}"', service=True)
    assert len(problems) == 1
    assert "may read the service's tables" in problems[0]
    assert "public.auth_user" in problems[0] and "public.authtoken_token" in problems[0]


def test_a_role_that_may_connect_to_the_services_database_is_refused(run_query_on):
    service_db = connection.settings_dict["NAME"]
    run_query_on.admin(f'GRANT CONNECT ON DATABASE "{service_db}" TO PUBLIC', service=True)
    try:
        problems = query_database_problems()
    finally:
        run_query_on.admin(f'REVOKE CONNECT ON DATABASE "{service_db}" FROM PUBLIC',
                           service=True)
    assert len(problems) == 1
    assert f"may CONNECT to the service's database {service_db!r}" in problems[0]


def test_a_query_database_with_dblink_is_refused(run_query_on):
    run_query_on.admin("CREATE EXTENSION dblink")
    try:
        problems = query_database_problems()
    finally:
        run_query_on.admin("DROP EXTENSION dblink")
    assert len(problems) == 1 and "dblink extension" in problems[0]


def test_the_default_alias_is_refused(transactional_db):
    with override_settings(TASKS_QUERY_DATABASE="default"):
        problems = query_database_problems()
        with pytest.raises(InvalidTask, match="never runs on the service's own database"):
            engine.enqueue(name="q", type="run_query", payload={"sql": "SELECT 1"})
    assert len(problems) == 1 and "'default'" in problems[0]


def test_an_alias_for_the_services_own_database_is_refused(query_db, transactional_db):
    with configured(processes.database_url()):
        problems = query_database_problems()
    assert problems and "points at the service's own database" in problems[0]


def test_check_deploy_reports_an_unsafe_role(run_query_on):
    call_command("check", "--deploy", "--tag", "security", fail_level="CRITICAL",
                 stderr=io.StringIO())  # the safe role: no tasks.E101
    run_query_on.admin(f'GRANT pg_read_server_files TO "{run_query_on.role}"', service=True)
    try:
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check", "--deploy", "--tag", "security", stderr=io.StringIO())
    finally:
        run_query_on.admin(f'REVOKE pg_read_server_files FROM "{run_query_on.role}"',
                           service=True)
    assert "tasks.E101" in str(excinfo.value)
    assert "is a member of pg_read_server_files" in str(excinfo.value)


# --- real worker processes ----------------------------------------------------------------


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(processes.ROOT / "manage.py"), *args],
                          env=processes.process_env(**env), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.process
def test_runworker_refuses_to_start_with_an_unsafe_role(query_db, transactional_db):
    query_db.admin(f'GRANT pg_execute_server_program TO "{query_db.role}"', service=True)
    try:
        result = _manage("runworker", "--batch", TASKS_QUERY_DATABASE_URL=query_db.url)
    finally:
        query_db.admin(f'REVOKE pg_execute_server_program FROM "{query_db.role}"',
                       service=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "run_query's database is not safe; the worker will not start" in result.stderr
    assert "is a member of pg_execute_server_program" in result.stderr


@pytest.mark.process
def test_runworker_refuses_the_services_own_database(transactional_db):
    result = _manage("runworker", "--batch",
                     TASKS_QUERY_DATABASE_URL=processes.database_url())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "points at the service's own database" in result.stderr


@pytest.mark.process
def test_a_worker_runs_queries_safely_and_stops_them_on_cancel_and_timeout(
        run_query_on, worker_factory):
    worker = worker_factory("--worker-id", "wq", TASKS_QUERY_DATABASE_URL=run_query_on.url)
    log = Path(worker.log_path)

    def status(task) -> str:
        return Task.objects.get(pk=task.pk).status

    ok = engine.enqueue(name="ok", type="run_query",
                        payload={"sql": "SELECT id, name FROM items ORDER BY id", "max_rows": 2})
    shell = engine.enqueue(name="shell", type="run_query", max_retries=0,
                           payload={"sql": "COPY (SELECT 1) TO PROGRAM 'id'"})
    wait_until(lambda: {status(ok), status(shell)} <= {"succeeded", "failed"}, timeout=60,
               message=lambda: "the first queries did not finish; log:\n" + log.read_text())
    assert Task.objects.get(pk=ok.pk).result["rows"] == [[1, "item 1"], [2, "item 2"]]
    assert status(shell) == "failed"
    assert "pg_execute_server_program" in Task.objects.get(pk=shell.pk).last_error

    long = engine.enqueue(name="long", type="run_query", payload={"sql": SLEEP})
    wait_until(lambda: SLEEP in run_query_on.active_statements(), timeout=30)
    engine.cancel(long.pk)
    wait_until(lambda: status(long) == "cancelled", timeout=10)
    assert run_query_on.active_statements() == []

    late = engine.enqueue(name="late", type="run_query", payload={"sql": SLEEP},
                          timeout_seconds=2, max_retries=0)
    wait_until(lambda: status(late) == "failed", timeout=30)
    assert run_query_on.active_statements() == []
    assert worker.poll() is None


# --- the embedded default -------------------------------------------------------------------


@pytest.mark.process
def test_the_embedded_default_provisions_a_safe_query_database(tmp_path):
    """No DATABASE_URL: a private embedded PostgreSQL gets run_query's database and role,
    which the verification accepts and which reaches nothing else."""
    import psycopg

    from taskservice import embedded

    env = processes.process_env(TASKS_DATA_DIR=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    del env["DATABASE_URL"]
    check = ("from plugins.query_checks import query_database_problems; "
             "from django.conf import settings; "
             "print(settings.TASKS_QUERY_DATABASE, query_database_problems())")
    try:
        result = subprocess.run(
            [sys.executable, str(processes.ROOT / "manage.py"), "shell", "-c", check],
            env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "query []"
        url = embedded.query_database_url(tmp_path)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user, rolsuper FROM pg_roles "
                                "WHERE rolname = current_user").fetchone() == (
                embedded.QUERY_ROLE, False)
            assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 24
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 60
            assert conn.execute("SELECT count(*) FROM pg_class c JOIN pg_roles r "
                                "ON r.oid = c.relowner WHERE r.rolname = current_user"
                                ).fetchone()[0] == 0  # owns nothing
        for other in (embedded.DB_NAME, "postgres"):
            with pytest.raises(psycopg.OperationalError, match="permission denied"):
                psycopg.connect(url.replace(f"/{embedded.QUERY_DB_NAME}?", f"/{other}?"))
    finally:
        embedded.stop(tmp_path)
