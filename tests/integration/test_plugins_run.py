"""The built-in plugins run for real, in-process, with a TaskContext as the worker gives."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from django.core import mail
from django.db import DatabaseError
from django.test import override_settings

from plugins import registry
from plugins.base import TaskCancelled, TaskContext
from plugins.simulate import Simulate, SimulatedFailure
from tests.support.query_db import SAMPLE_ROWS

LOCMEM = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}


def ctx_for(seconds: float = 30.0, task_id: int = 1) -> TaskContext:
    return TaskContext(task_id=task_id, attempt=1, deadline=time.monotonic() + seconds,
                       logger=logging.getLogger("tests.plugins"))


def run(type_name: str, payload: dict, ctx: TaskContext | None = None) -> Any:
    """Validate then run, as enqueue and the worker do."""
    plugin = registry.get(type_name)
    return plugin.run(plugin.validate(payload), ctx or ctx_for())


def run_in_thread(type_name: str, payload: dict, ctx: TaskContext) -> Any:
    """Run in a thread of its own, with its own database connection, as an executor does."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run(type_name, payload, ctx)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["result"]


# --- send_email ----------------------------------------------------------------------


@override_settings(MAILERS=LOCMEM, DEFAULT_FROM_EMAIL="tasks@example.com")
def test_send_email_sends_through_djangos_mail_framework():
    mail.outbox.clear()
    result = run("send_email", {"to": ["ada@example.com", "bob@example.org"],
                                "subject": "Report ready", "body": "See attached."})
    assert result == {"sent": 1, "to": ["ada@example.com", "bob@example.org"]}
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com", "bob@example.org"]
    assert message.subject == "Report ready"
    assert message.body == "See attached."
    assert message.from_email == "tasks@example.com"


@override_settings(MAILERS=LOCMEM)
def test_send_email_honours_from_and_a_single_address():
    mail.outbox.clear()
    run("send_email", {"to": "ada@example.com", "subject": "Hi", "body": "",
                       "from": "ops@example.com"})
    assert [(m.to, m.from_email) for m in mail.outbox] == [(["ada@example.com"],
                                                             "ops@example.com")]


@override_settings(MAILERS={"default": {
    "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "OPTIONS": {"host": "127.0.0.1", "port": 1, "timeout": 2}}})
def test_send_email_failure_raises_so_the_attempt_fails():
    with pytest.raises(OSError):
        run("send_email", {"to": "ada@example.com", "subject": "Hi", "body": "x"})


# --- run_query -----------------------------------------------------------------------
# On a real database and role of its own (tests/support/query_db.py); tests/security has
# what that role cannot do.


def test_run_query_returns_the_row_count_and_rows(run_query_on):
    result = run_in_thread("run_query", {"sql": "SELECT id, name FROM items WHERE id <= 3 "
                                                "ORDER BY id"}, ctx_for())
    assert result == {"columns": ["id", "name"],
                      "rows": [[1, "item 1"], [2, "item 2"], [3, "item 3"]],
                      "row_count": 3, "truncated": False}


def test_run_query_with_params_limits_rows_and_makes_values_json(run_query_on):
    result = run_in_thread(
        "run_query",
        {"sql": "SELECT g, g * %s AS twice, 1.5::numeric AS n, "
                "'2024-01-02'::date AS d FROM generate_series(1, 250) g",
         "params": [2], "max_rows": 5},
        ctx_for())
    assert result["row_count"] == 250
    assert result["truncated"] is True
    assert result["columns"] == ["g", "twice", "n", "d"]
    assert result["rows"] == [[i, 2 * i, "1.5", "2024-01-02"] for i in range(1, 6)]


@pytest.mark.parametrize("statement", [
    "INSERT INTO scratch VALUES (1)",
    "UPDATE items SET name = 'hacked'",
    "WITH gone AS (DELETE FROM items RETURNING id) SELECT count(*) FROM gone",
    "CREATE TABLE sneaky (id int)",
])
def test_run_query_refuses_writes_read_only(run_query_on, statement):
    with pytest.raises(DatabaseError, match="read-only transaction"):
        run_in_thread("run_query", {"sql": statement}, ctx_for())
    assert run_query_on.admin("SELECT count(*), min(name) FROM items "
                              "WHERE name LIKE 'item %'") == [(SAMPLE_ROWS, "item 1")]
    assert run_query_on.admin("SELECT count(*) FROM scratch") == [(0,)]


def test_run_query_statement_timeout_follows_the_task_deadline(run_query_on):
    started = time.monotonic()
    with pytest.raises(DatabaseError, match="statement timeout"):
        run_in_thread("run_query", {"sql": "SELECT pg_sleep(5)"}, ctx_for(0.5))
    # Cancelled by the server at the deadline, well before the 5 s sleep would end.
    assert time.monotonic() - started < 4


def test_run_query_leaves_the_connection_usable_after_an_error(run_query_on):
    with pytest.raises(DatabaseError):
        run_in_thread("run_query", {"sql": "SELECT * FROM no_such_table"}, ctx_for())
    assert run_in_thread("run_query", {"sql": "SELECT 1 AS one"}, ctx_for())["rows"] == [[1]]


# --- simulate ------------------------------------------------------------------------


def test_simulate_sleeps_then_succeeds():
    started = time.monotonic()
    assert run("simulate", {"duration": 0.2, "failure_rate": 0, "timeout_rate": 0}) == {
        "slept": 0.2}
    assert time.monotonic() - started >= 0.2


def test_simulate_fails_with_failure_rate_one():
    with pytest.raises(SimulatedFailure, match="failure_rate=1"):
        run("simulate", {"duration": 0, "failure_rate": 1})


def test_simulate_overruns_until_the_worker_stops_it():
    ctx = ctx_for(0.3)
    # The worker's monitor cancels a run at its deadline; stand in for it.
    started = time.monotonic()
    timer = threading.Timer(0.3, ctx.cancel, args=("timeout",))
    timer.start()
    try:
        with pytest.raises(TaskCancelled, match="timeout"):
            run("simulate", {"duration": 0, "timeout_rate": 1}, ctx)
    finally:
        timer.cancel()
    assert time.monotonic() - started >= 0.25  # it did not return before being stopped


def test_simulate_wakes_on_cancel():
    ctx = ctx_for()
    timer = threading.Timer(0.1, ctx.cancel, args=("cancelled",))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(TaskCancelled, match="cancelled"):
            run("simulate", {"duration": 30}, ctx)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5


def test_simulate_options_are_defaults_the_payload_overrides():
    flaky = Simulate(duration=0, failure_rate=1)
    with pytest.raises(SimulatedFailure):
        flaky.run(flaky.validate({"anything": "ignored"}), ctx_for())
    assert flaky.run(flaky.validate({"failure_rate": 0}), ctx_for()) == {"slept": 0.0}


def test_simulate_stands_in_for_another_type():
    plugins = registry.build(
        {"run_query": {"plugin": "simulate", "failure_rate": 1, "duration": 0}},
        use_entry_points=False)
    stand_in = plugins["run_query"]
    payload = stand_in.validate({"sql": "SELECT 1"})  # run_query's fields are ignored
    with pytest.raises(SimulatedFailure):
        stand_in.run(payload, ctx_for())


def test_noop_does_nothing():
    assert run("noop", {"whatever": 1}) is None
