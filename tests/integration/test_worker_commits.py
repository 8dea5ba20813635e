"""A worker's own statements (claims, completions, heartbeats) commit without waiting for
the WAL flush; a plugin's database work, in the executor threads, keeps the server's
setting. Read from each thread's real session with SHOW synchronous_commit."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection

from plugins import registry
from tasks import engine
from tasks.worker.testing import WorkerThread
from tests.support.plugins import TEST_PLUGINS


def show_synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def report_synchronous_commit(payload, ctx):
    """A plugin that returns what its own session's commits do."""
    return {"synchronous_commit": show_synchronous_commit()}


@pytest.fixture
def show_plugin():
    base = {**django_settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS}
    registry.load({**base, "show_commit": f"{__name__}.report_synchronous_commit"})
    yield
    registry.load(base)


def sessions_of_a_run() -> dict[str, str]:
    """synchronous_commit as seen by the dispatcher (when it claims), the completer (when
    it has written a batch) and the plugin of one run."""
    seen: dict[str, str] = {}
    w = WorkerThread(concurrency=1)
    w.hooks.on("claimed", lambda **info: seen.setdefault("dispatcher",
                                                          show_synchronous_commit()))
    w.hooks.on("completed_batch", lambda **info: seen.setdefault("completer",
                                                                 show_synchronous_commit()))
    with w:
        task = engine.enqueue(name="show", type="show_commit")
        w.events.wait("completed_batch")
    seen["plugin"] = engine.get(task.pk).result["synchronous_commit"]
    return seen


@pytest.mark.django_db(transaction=True)
def test_the_worker_commits_its_own_statements_without_waiting(show_plugin):
    # A plugin's own writes stay as durable as the server's setting makes them.
    assert sessions_of_a_run() == {"dispatcher": "off", "completer": "off", "plugin": "on"}


@pytest.mark.django_db(transaction=True)
def test_async_commit_can_be_turned_off(show_plugin, settings):
    settings.TASKS_ENGINE = {**django_settings.TASKS_ENGINE, "WORKER_ASYNC_COMMIT": False}
    assert sessions_of_a_run() == {"dispatcher": "on", "completer": "on", "plugin": "on"}
