"""Helpers for the in-process integration tests of the queue engine (real PostgreSQL)."""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from plugins import registry
from tasks import engine
from tasks.engine.sql import QUERIES
from tasks.listener import connect_kwargs
from tasks.models import Task, TaskHistory
from tests.support.plugins import TEST_PLUGINS

WORKER = "host-a:101:aaaa"
OTHER_WORKER = "host-b:202:bbbb"


def spec(name: str, **extra: Any) -> dict:
    """A task for enqueue_many: `name`, the `count` test type and `extra` fields."""
    return {"name": name, "type": "count", **extra}


def status(task_id: int) -> str:
    return Task.objects.get(pk=task_id).status


def enqueue(**spec: Any) -> Task:
    """engine.enqueue with a name and the session's `count` test type by default."""
    spec.setdefault("name", "job")
    spec.setdefault("type", "count")
    return engine.enqueue(**spec)


def events(task_id: int) -> list[str]:
    return list(TaskHistory.objects.filter(task_id=task_id).order_by("id")
                .values_list("event_type", flat=True))


def last_history(task_id: int) -> TaskHistory:
    return TaskHistory.objects.filter(task_id=task_id).order_by("-id").first()


def db_now() -> datetime.datetime:
    """The database's now(): in a `db` test every statement shares one transaction, so
    this is the same instant the queue's SQL used."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def sql(statement: str, params: list | None = None) -> None:
    """Direct SQL to set up a situation (e.g. a lease in the past); never used to assert."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def expire_lease(task_id: int) -> None:
    sql("UPDATE tasks SET locked_until = now() - interval '1 minute' WHERE id = %s", [task_id])


def make_due(task_id: int) -> None:
    sql("UPDATE tasks SET run_at = now() - interval '1 second' WHERE id = %s", [task_id])


def outcome(claimed: engine.ClaimedTask, **kwargs: Any) -> engine.Outcome:
    return engine.Outcome(task_id=claimed.id, attempt=claimed.attempt,
                          retry_count=claimed.retry_count, **kwargs)


def claim_ids(worker: str = WORKER, limit: int = 100, **kwargs: Any) -> list[int]:
    return [c.id for c in engine.claim(worker_id=worker, limit=limit, **kwargs)]


def next_events(conn: psycopg.Connection, count: int, timeout: float = 5) -> list[dict]:
    """The payloads of the next `count` NOTIFYs on a LISTENing connection, in the order
    they came; fewer if no more come within `timeout` seconds."""
    got = []
    for note in conn.notifies(timeout=timeout):
        got.append(json.loads(note.payload))
        if len(got) == count:
            break
    return got


def _run_one(task_id: int, end) -> None:
    """Claim every due task, end the run of `task_id` with `end`, release the others."""
    claimed = {c.id: c for c in engine.claim(worker_id=WORKER, limit=100)}
    assert task_id in claimed, f"task {task_id} was not claimable"
    end(claimed[task_id])
    engine.release(worker_id=WORKER, outcomes=[outcome(c) for i, c in claimed.items()
                                               if i != task_id])


def run_ok(task_id: int, result: Any = None) -> None:
    """Run `task_id` to success (with `result`); the other due tasks go back to the queue."""
    _run_one(task_id, lambda run: engine.complete(worker_id=WORKER, outcomes=[
        outcome(run, result=result)]))


def run_fail(task_id: int, error: str = "boom") -> None:
    """Fail the run of `task_id` with `error`; the other due tasks go back to the queue."""
    _run_one(task_id, lambda run: engine.fail(worker_id=WORKER, outcomes=[
        outcome(run, error=error)]))


@pytest.fixture
def counts():
    """Snapshot of (tasks, history rows) to prove that nothing was written."""

    def take() -> tuple[int, int]:
        return Task.objects.count(), TaskHistory.objects.count()

    return take


@pytest.fixture
def plugins_here():
    """`load(without=..., **types)` reloads this process's registry with the tests' types
    changed (some left out, some added or replaced by a plugin path); the tests' types are
    loaded again afterwards."""
    tests_types = {**settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS}

    def load(without=(), **types: Any) -> None:
        registry.load({**{name: spec for name, spec in tests_types.items()
                          if name not in without}, **types})

    yield load
    registry.load(tests_types)


# --- events and sessions of their own ------------------------------------------------------

SENTINEL = "test_sentinel"


def until_sentinel(conn: psycopg.Connection, timeout: float = 10.0) -> list[dict]:
    """Send a committed sentinel event; the events the LISTENing `conn` received before it
    (NOTIFYs arrive in commit order)."""
    engine.notify(SENTINEL, [])
    received: list[dict] = []
    for note in conn.notifies(timeout=timeout):
        event = json.loads(note.payload)
        if event["event"] == SENTINEL:
            return received
        received.append(event)
    raise AssertionError(f"sentinel not received within {timeout}s; got {received}")


@pytest.fixture
def listen():
    """A LISTENing session of its own; calling the value returns the events it has received
    since (until_sentinel)."""
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        conn.execute(f'LISTEN "{engine.CHANNEL}"')
        yield lambda: until_sentinel(conn)


def blocked_on_a_lock() -> bool:
    """Whether a session of the test database is waiting for a lock."""
    with connection.cursor() as cursor:
        # Inside a transaction pg_stat_activity keeps its first snapshot: clear it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


def complete_elsewhere(claimed: engine.ClaimedTask) -> threading.Thread:
    """complete_runs for one run, from a session of its own, in a thread (it may wait)."""
    params = {"worker": WORKER, "ids": [claimed.id], "attempts": [claimed.attempt],
              "results": ["null"]}

    def body():
        with psycopg.connect(autocommit=True, **connect_kwargs()) as other:
            other.execute(QUERIES["complete_runs"], params)

    thread = threading.Thread(target=body)
    thread.start()
    return thread
