"""Every way a parent can end settles its waiting children, through the engine against the
real database: a worker's decline or snooze after a cancel was asked, a person's cancel of a
queued parent, and a person's retry of a child whose parents have not all succeeded."""

from __future__ import annotations

import pytest

from tasks import engine
from tasks.models import Task, TaskHistory
from tasks.states import Event, Status
from tests.integration.conftest import WORKER, events, outcome

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
