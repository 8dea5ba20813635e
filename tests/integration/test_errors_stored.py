"""A run that ends in error leaves its error as data on the history row that ends it:
the exception's dotted class path, its message and its traceback, written by real runs of
an in-process worker (tasks.worker.testing.WorkerThread) and by the rescuer."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from plugins import registry
from tasks import engine
from tasks.models import Task, TaskHistory
from tasks.worker.slots import RELEASE
from tasks.worker.testing import WorkerThread
from tests.integration.conftest import WORKER, enqueue, expire_lease, outcome
from tests.support.plugins import TEST_PLUGINS


class PaymentDeclined(Exception):
    """A plugin's own exception class, defined outside the service."""


def decline(payload, ctx):
    raise PaymentDeclined(f"card {payload['card']} declined")


def parse_amount(payload, ctx):
    return int(payload["amount"])  # ValueError for "ten"


def wait_then_check(payload, ctx):
    """Waits to be cancelled, then stops the way a careful plugin does: ctx.check()."""
    ctx.sleep(60)
    ctx.check()
    return "not cancelled"


@pytest.fixture
def error_plugins():
    base = {**django_settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS}
    registry.load({**base, "decline": f"{__name__}.decline",
                   "parse_amount": f"{__name__}.parse_amount",
                   "wait_then_check": f"{__name__}.wait_then_check"})
    yield
    registry.load(base)


@pytest.fixture
def worker(transactional_db, settings, error_plugins, tmp_path, monkeypatch):
    settings.TASKS_ENGINE = {**django_settings.TASKS_ENGINE, "HEARTBEAT_INTERVAL": 0.2,
                             "POLL_INTERVAL": 0.2, "BACKOFF_BASE": 60.0}
    monkeypatch.setenv("COUNT_FILE", str(tmp_path / "runs.txt"))
    w = WorkerThread(worker_id=WORKER, concurrency=4).start()
    yield w
    if w.thread.is_alive():
        w.stop()


def _written(w: WorkerThread, task: Task) -> None:
    w.events.wait("completed_batch",
                  where=lambda info: task.pk in [o.task_id for _, o in info["outcomes"]])


def _ending(task: Task, event: str) -> TaskHistory:
    return TaskHistory.objects.get(task_id=task.pk, event_type=event)


def test_a_plugins_own_exception_class_is_stored_with_its_message_and_traceback(worker):
    task = enqueue(type="decline", payload={"card": "4242"}, max_retries=0)
    _written(worker, task)
    row = _ending(task, "task_failed")
    assert row.error_class == f"{__name__}.PaymentDeclined"
    assert row.error_message == "card 4242 declined"
    assert row.traceback.startswith("Traceback (most recent call last)")
    assert 'in decline\n    raise PaymentDeclined' in row.traceback
    assert row.traceback.endswith(f"{__name__}.PaymentDeclined: card 4242 declined")
    # The task keeps the human text, led by the same class and message.
    assert Task.objects.get(pk=task.pk).last_error.startswith(
        f"{__name__}.PaymentDeclined: card 4242 declined")


def test_a_builtin_exception_is_named_under_builtins_and_a_retry_records_it(worker):
    task = enqueue(type="parse_amount", payload={"amount": "ten"}, max_retries=2)
    _written(worker, task)
    row = _ending(task, "retry_scheduled")
    assert row.error_class == "builtins.ValueError"
    assert row.error_message == "invalid literal for int() with base 10: 'ten'"
    assert "in parse_amount" in row.traceback
    assert row.details.startswith("retry 1 of 2 in ")  # the human line stays


def test_a_timeout_is_a_timeout_error(worker):
    task = enqueue(type="count", payload={"sleep": 60}, timeout_seconds=1, max_retries=0)
    _written(worker, task)
    row = _ending(task, "task_failed")
    assert (row.error_class, row.error_message) == ("builtins.TimeoutError",
                                                    "timed out after 1s")
    assert Task.objects.get(pk=task.pk).last_error == "timed out after 1s"


def test_a_run_cancelled_while_running_is_task_cancelled_with_the_plugins_traceback(worker):
    task = enqueue(type="wait_then_check", max_retries=0)
    worker.events.wait("claimed", where=lambda info: task.pk in [t.id for t in info["tasks"]])
    engine.cancel(task.pk)
    _written(worker, task)
    row = _ending(task, "task_cancelled")
    assert row.error_class == "plugins.base.TaskCancelled"
    assert row.error_message == "cancelled while running"
    assert "ctx.check()" in row.traceback and "TaskCancelled: cancelled" in row.traceback


@pytest.mark.django_db
def test_a_task_cancelled_before_it_ran_has_no_error():
    task = enqueue()
    engine.cancel(task.pk)
    row = _ending(task, "task_cancelled")
    assert (row.error_class, row.error_message, row.traceback) == ("", "", "")


@pytest.mark.django_db
def test_a_rescued_lease_names_worker_lost_and_the_lost_worker():
    task = enqueue(max_retries=1)
    engine.claim(worker_id="host-gone:9:zz", limit=1)
    expire_lease(task.pk)
    assert engine.rescue_expired() == {task.pk: "retrying"}
    row = _ending(task, "lease_expired")
    assert row.error_class == "tasks.exceptions.WorkerLost"
    assert row.error_message.startswith("worker host-gone:9:zz lost: lease expired at ")
    assert row.traceback == ""


@pytest.mark.django_db
def test_error_columns_are_bounded_and_storable():
    task = enqueue(max_retries=0)
    [claimed] = engine.claim(worker_id=WORKER, limit=1)
    engine.fail(worker_id=WORKER, outcomes=[outcome(
        claimed, error="bad\x00text", error_class="pkg." + "x" * 400,
        error_message="a\x00b\ud800c", traceback="t" * 50_000)])
    row = _ending(task, "task_failed")
    assert row.error_class == ("pkg." + "x" * 400)[:255]
    assert row.error_message == "a\ufffdb\ufffdc"
    assert len(row.traceback) <= 8000 and "characters cut" in row.traceback


@pytest.mark.django_db
def test_a_released_run_records_its_error_only_when_it_ends_cancelled():
    handed_back, asked = enqueue(), enqueue()
    claimed = engine.claim(worker_id=WORKER, limit=2)
    engine.cancel(asked.pk)
    stopped = {"error": "released: worker shutting down",
               "error_class": "tasks.exceptions.WorkerLost",
               "error_message": "released: worker shutting down"}
    engine.release(worker_id=WORKER, outcomes=[outcome(c, **stopped) for c in claimed])
    released = _ending(handed_back, "task_released")
    assert (released.error_class, released.error_message) == ("", "")  # handed back, not ended
    cancelled = TaskHistory.objects.filter(task_id=asked.pk,
                                           event_type="task_cancelled").get()
    assert cancelled.error_class == "tasks.exceptions.WorkerLost"
    assert cancelled.error_message == "released: worker shutting down"


def test_a_worker_stopping_mid_run_hands_it_back_as_worker_lost(transactional_db, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("COUNT_FILE", str(tmp_path / "runs.txt"))
    w = WorkerThread(worker_id=WORKER, concurrency=1, shutdown_grace=0.2).start()
    task = enqueue(payload={"sleep": 60})
    w.events.wait("claimed", where=lambda info: task.pk in [t.id for t in info["tasks"]])
    assert w.stop() == 0
    [(kind, written)] = [(kind, o) for batch in w.events.all("completed_batch")
                         for kind, o in batch["outcomes"] if o.task_id == task.pk]
    assert kind == RELEASE
    assert (written.error_class, written.error_message) == (
        "tasks.exceptions.WorkerLost", "released: worker shutting down")
    assert Task.objects.get(pk=task.pk).status == "queued"
    assert _ending(task, "task_released").details == "released: worker shutting down"
