"""A worker claims only what it can run (its types, less the tasks it declined), and a
task it cannot run goes back to the queue without using an attempt or a retry."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings as django_settings

from plugins.base import Plugin
from tasks import engine
from tasks.models import Task, TaskHistory
from tasks.worker.slots import DECLINE
from tasks.worker.testing import WorkerThread
from tests.integration.conftest import OTHER_WORKER, WORKER, claim_ids, enqueue, outcome

pytestmark = pytest.mark.django_db

DECLINED = "plugins.base.NotRunnableHere"


def test_a_claim_takes_only_the_types_the_worker_runs():
    counted = enqueue(type="count")
    mailed = enqueue(type="simulate")
    assert claim_ids(types=["simulate"]) == [mailed.pk]
    assert engine.next_due_in(types=["simulate"]) is None  # nothing else it could take
    assert engine.next_due_in(types=["count"]) == 0.0
    assert claim_ids(types=["count"], queues=["default"]) == [counted.pk]


def test_a_declined_task_is_queued_again_uncounted_with_a_history_row():
    task = enqueue(max_retries=2)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    assert claimed.attempt == 1
    declined = outcome(claimed, error="cannot import 'shop.tasks.add'",
                       error_class=DECLINED, error_message="No module named 'shop'")
    assert engine.decline(worker_id=WORKER, outcomes=[declined]) == {task.pk}

    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.attempts, row.retry_count, row.locked_by) == ("queued", 0, 0, None)
    last = TaskHistory.objects.filter(task_id=task.pk).order_by("-id").first()
    assert (last.event_type, last.status, last.worker_id, last.attempt) == (
        "task_released", "queued", WORKER, 1)
    assert (last.error_class, last.error_message) == (DECLINED, "No module named 'shop'")

    # The decliner skips it; any other worker takes it, as its first attempt.
    assert claim_ids(skip=[task.pk]) == []
    assert engine.next_due_in(skip=[task.pk]) is None
    (again,) = engine.claim(worker_id=OTHER_WORKER, limit=1)
    assert (again.id, again.attempt, again.retry_count) == (task.pk, 1, 0)


def test_a_decline_is_fenced_on_worker_and_attempt():
    task = enqueue()
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    assert engine.decline(worker_id=OTHER_WORKER, outcomes=[outcome(claimed)]) == set()
    stale = engine.Outcome(task_id=task.pk, attempt=claimed.attempt + 1)
    assert engine.decline(worker_id=WORKER, outcomes=[stale]) == set()
    assert Task.objects.get(pk=task.pk).status == "running"


def _online(worker_id: str, *, queues=(), types=()) -> None:
    engine.register_worker(worker_id=worker_id, hostname="h", pid=1, queues=list(queues),
                           concurrency=1, types=list(types))


def _unrunnable() -> dict[str, int]:
    from tasks.live import dashboard

    return {row["queue"]: row["unrunnable"]
            for row in dashboard.snapshot(include_throughput=False)["queues"]}


def test_the_dashboard_counts_waiting_tasks_no_live_worker_can_run():
    enqueue(queue="mail", type="count")
    enqueue(queue="shop", type="count")
    enqueue(queue="mail", type="simulate")
    # None online: nothing can run.
    assert _unrunnable() == {"mail": 2, "shop": 1}
    _online(WORKER, queues=["mail"], types=["count"])
    assert _unrunnable() == {"mail": 1, "shop": 1}
    _online(OTHER_WORKER, types=["count", "simulate"])  # every queue
    assert _unrunnable() == {"mail": 0, "shop": 0}

    # Declined by every worker that could run it: stranded; by one of two: not.
    task = enqueue(queue="shop", type="count")
    (claimed,) = engine.claim(worker_id=OTHER_WORKER, limit=1, queues=["shop"], skip=[
        t for t in Task.objects.filter(queue="shop").exclude(pk=task.pk)
        .values_list("pk", flat=True)])
    engine.decline(worker_id=OTHER_WORKER, outcomes=[outcome(claimed, error_class=DECLINED)])
    assert _unrunnable()["shop"] == 1
    _online("host-c:303:cccc", queues=["shop"], types=["count"])
    assert _unrunnable()["shop"] == 0


class GoneBeforeRun(Plugin):
    """Available when the worker claims, gone when an executor is about to run it (as when
    what the plugin needs disappears between the two): the run must not start."""

    def unavailable_reason(self):
        if threading.current_thread().name == "executor":
            return "its licence server stopped answering"
        return None

    def run(self, payload, ctx):
        raise AssertionError("an unavailable plugin ran")


@pytest.fixture
def gone_before_run(settings, plugins_here):
    settings.TASKS_ENGINE = {**django_settings.TASKS_ENGINE, "HEARTBEAT_INTERVAL": 0.2,
                             "POLL_INTERVAL": 0.2}
    plugins_here(licensed=f"{__name__}.GoneBeforeRun")


@pytest.mark.django_db(transaction=True)
def test_a_task_claimed_but_no_longer_runnable_here_is_handed_back_not_failed(
        gone_before_run):
    task = enqueue(type="licensed", max_retries=0)
    with WorkerThread(concurrency=1, worker_id=WORKER) as worker:
        batch = worker.events.wait("completed_batch", where=lambda info: any(
            o.task_id == task.pk for _, o in info["outcomes"]))
    (kind,) = [kind for kind, o in batch["outcomes"] if o.task_id == task.pk]
    assert kind == DECLINE
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.attempts, row.retry_count, row.last_error) == ("queued", 0, 0, "")
    released = TaskHistory.objects.get(task_id=task.pk, event_type="task_released")
    assert released.error_class == DECLINED
    assert released.error_message == "its licence server stopped answering"
