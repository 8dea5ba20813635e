"""Every way a parent can end settles its waiting children, through the engine against the
real database: a worker's decline or snooze after a cancel was asked, a person's cancel of a
queued parent, and the events that settling and re-waiting children send."""

from __future__ import annotations

import pytest

from tasks import engine
from tasks.models import Task, TaskHistory
from tasks.states import Event, Status
from tests.integration.conftest import WORKER, events, outcome
from tests.integration.test_engine_statements import listen  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)


def status(task_id: int) -> str:
    return Task.objects.get(pk=task_id).status


def spec(name: str, **extra) -> dict:
    return {"name": name, "type": "count", **extra}


def family() -> tuple[Task, Task, Task]:
    """A parent, its child and its grandchild, the child and grandchild waiting."""
    return tuple(engine.enqueue_many([spec("p"), spec("c", after=[0]), spec("g", after=[1])]))


def assert_cancelled_by(child: Task, parent: Task, grandchild: Task) -> None:
    assert (status(child.pk), status(grandchild.pk)) == (Status.CANCELLED, Status.CANCELLED)
    last = TaskHistory.objects.filter(task=child.pk).order_by("-id").first()
    assert (last.event_type, last.details) == (Event.DEPENDENCY_FAILED,
                                               f"parent task {parent.pk} cancelled")
    assert Task.objects.get(pk=child.pk).failed_parent_id == parent.pk
    assert events(grandchild.pk)[-1] == Event.DEPENDENCY_FAILED


def test_a_parent_declined_after_a_cancel_was_asked_cancels_its_children():
    p, c, g = family()
    (claimed,) = engine.claim(worker_id=WORKER, limit=10)
    engine.cancel(p.pk)  # running: cancel_requested, the worker has not stopped it yet
    assert engine.decline(worker_id=WORKER,
                          outcomes=[outcome(claimed, error="cannot import")]) == {p.pk}
    assert status(p.pk) == Status.CANCELLED
    assert_cancelled_by(c, p, g)


def test_a_run_snoozed_after_a_cancel_was_asked_ends_cancelled_with_its_children():
    p, c, g = family()
    (claimed,) = engine.claim(worker_id=WORKER, limit=10)
    engine.cancel(p.pk)
    assert engine.snooze(worker_id=WORKER, outcomes=[outcome(claimed, delay=60)]) == {p.pk}
    row = Task.objects.get(pk=p.pk)
    assert (row.status, row.locked_by) == (Status.CANCELLED, None)
    assert row.finished_at is not None and row.cancel_requested_at is not None
    last = TaskHistory.objects.filter(task=p.pk).order_by("-id").first()
    assert (last.event_type, last.status, last.worker_id) == (
        Event.TASK_CANCELLED, Status.CANCELLED, WORKER)
    assert_cancelled_by(c, p, g)
    assert engine.claim(worker_id=WORKER, limit=10) == []  # nothing runs again


def test_of_two_runs_snoozed_at_once_only_the_one_asked_to_cancel_ends_cancelled():
    asked, other = engine.enqueue_many([spec("asked"), spec("other")])
    claimed = engine.claim(worker_id=WORKER, limit=10)
    engine.cancel(asked.pk)
    assert engine.snooze(worker_id=WORKER, outcomes=[outcome(c, delay=60) for c in claimed]) \
        == {asked.pk, other.pk}
    assert (status(asked.pk), status(other.pk)) == (Status.CANCELLED, Status.QUEUED)
    assert (events(asked.pk)[-1], events(other.pk)[-1]) == (Event.TASK_CANCELLED,
                                                            Event.TASK_SNOOZED)


def test_a_person_cancelling_a_queued_parent_cancels_its_children():
    p, c, g = family()
    engine.cancel(p.pk)
    assert status(p.pk) == Status.CANCELLED
    assert_cancelled_by(c, p, g)


def test_settling_and_rewaiting_children_send_their_events_with_the_child_ids(listen):  # noqa: F811
    p, c, g, q, d = engine.enqueue_many([
        spec("p", max_retries=0), spec("c", after=[0]), spec("g", after=[1]), spec("q"),
        spec("d", after=[3])])
    claimed = {t.id: t for t in engine.claim(worker_id=WORKER, limit=10)}
    assert set(claimed) == {p.pk, q.pk}
    listen()  # the set-up's own events

    engine.complete(worker_id=WORKER, outcomes=[outcome(claimed[q.pk])])
    assert listen() == [
        {"event": "task_succeeded", "count": 1, "ids": [q.pk], "worker": WORKER},
        {"event": "dependencies_met", "count": 1, "ids": [d.pk]}]

    engine.fail(worker_id=WORKER, outcomes=[outcome(claimed[p.pk], error="boom")])
    assert listen() == [
        {"event": "task_failed", "count": 1, "ids": [p.pk], "worker": WORKER},
        {"event": "dependency_failed", "count": 1, "ids": [c.pk]},  # one event per level
        {"event": "dependency_failed", "count": 1, "ids": [g.pk]}]

    engine.retry(p.pk)
    assert listen() == [
        {"event": "task_requeued", "count": 1, "ids": [p.pk]},
        {"event": "task_waiting", "count": 1, "ids": [c.pk]},
        {"event": "task_waiting", "count": 1, "ids": [g.pk]}]
