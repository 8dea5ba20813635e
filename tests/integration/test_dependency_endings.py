"""Every way a parent can end settles its waiting children, through the engine against the
real database: a worker's decline or snooze after a cancel was asked, a person's cancel of a
queued parent, the events that settling and re-waiting children send, and a person's retry
of a child whose parents have not all succeeded (it waits for them)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.urls import reverse

from tasks import engine
from tasks.models import Task
from tasks.states import Event, Status
from tests.integration.conftest import (
    WORKER,
    blocked_on_a_lock,
    complete_elsewhere,
    events,
    last_history,
    outcome,
    run_fail,
    run_ok,
    spec,
    status,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def family() -> tuple[Task, Task, Task]:
    """A parent, its child and its grandchild, the child and grandchild waiting."""
    return tuple(engine.enqueue_many([spec("p"), spec("c", after=[0]), spec("g", after=[1])]))


def assert_cancelled_by(child: Task, parent: Task, grandchild: Task) -> None:
    assert (status(child.pk), status(grandchild.pk)) == (Status.CANCELLED, Status.CANCELLED)
    last = last_history(child.pk)
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
    last = last_history(p.pk)
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


def test_settling_and_rewaiting_children_send_their_events_with_the_child_ids(listen):
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


# --- a person retries a child whose parents have not all succeeded ----------------------


def test_a_retried_child_whose_parent_failed_waits_until_that_parent_is_retried():
    a, b, c = engine.enqueue_many([spec("a", max_retries=0), spec("b"),
                                   spec("c", after=[0, 1])])
    run_fail(a.pk)
    assert status(c.pk) == Status.CANCELLED
    engine.retry(c.pk)
    assert status(c.pk) == Status.WAITING
    row = last_history(c.pk)
    assert (row.event_type, row.status, row.details) == (
        Event.TASK_WAITING, Status.WAITING, "requeued by a person; waiting for its parents")
    assert Task.objects.get(pk=c.pk).failed_parent_id is None
    run_ok(b.pk)  # another parent ending neither releases nor cancels it
    assert status(c.pk) == Status.WAITING
    engine.retry(a.pk)
    assert status(c.pk) == Status.WAITING
    run_ok(a.pk)
    assert status(c.pk) == Status.QUEUED
    assert events(c.pk)[-2:] == [Event.TASK_WAITING, Event.DEPENDENCIES_MET]


def test_a_retried_child_is_cancelled_again_when_its_parent_fails_again():
    a, c = engine.enqueue_many([spec("a", max_retries=0), spec("c", after=[0])])
    run_fail(a.pk)
    engine.retry(c.pk)
    engine.retry(a.pk)
    run_fail(a.pk)
    assert status(c.pk) == Status.CANCELLED
    row = last_history(c.pk)
    assert (row.event_type, row.details) == (Event.DEPENDENCY_FAILED, f"parent task {a.pk} failed")


def test_a_child_that_failed_itself_after_its_parents_succeeded_is_queued_by_a_retry():
    p, c = engine.enqueue_many([spec("p"), spec("c", after=[0], max_retries=0)])
    run_ok(p.pk)
    run_fail(c.pk)
    engine.retry(c.pk)
    assert status(c.pk) == Status.QUEUED and last_history(c.pk).event_type == Event.TASK_REQUEUED


def test_a_retried_child_that_runs_anyway_waits_only_until_its_parents_end():
    p, c = engine.enqueue_many([spec("p", max_retries=0),
                                spec("c", after=[0], on_parent_failure="run")])
    engine.cancel(c.pk)
    engine.retry(c.pk)
    assert status(c.pk) == Status.WAITING
    run_fail(p.pk)
    assert status(c.pk) == Status.QUEUED
    engine.cancel(c.pk)
    engine.retry(c.pk)  # its parent has ended (failed): it may run at once
    assert status(c.pk) == Status.QUEUED


def test_retrying_a_failed_parent_and_its_child_together_runs_them_in_order():
    p, c, g = engine.enqueue_many([spec("p", max_retries=0), spec("c", after=[0]),
                                   spec("g", after=[1])])
    run_fail(p.pk)
    result = engine.retry_many([g.pk, p.pk, c.pk])
    assert sorted(result.done) == sorted([p.pk, c.pk, g.pk]) and not result.skipped
    assert [status(t.pk) for t in (p, c, g)] == [Status.QUEUED, Status.WAITING, Status.WAITING]
    assert [t.id for t in engine.claim(worker_id=WORKER, limit=10)] == [p.pk]


def test_the_admins_retry_button_says_the_child_waits_for_its_parents(admin_client):
    p, c = engine.enqueue_many([spec("p"), spec("c", after=[0])])
    engine.cancel(c.pk)
    response = admin_client.post(reverse("admin:tasks_task_retry", args=[c.pk]), follow=True)
    assert f"Task #{c.pk} requeued: it waits for its parents." in response.content.decode()
    assert status(c.pk) == Status.WAITING


def test_a_retry_while_the_last_parent_completes_elsewhere_is_released_by_it():
    p, c = engine.enqueue_many([spec("p"), spec("c", after=[0])])
    engine.cancel(c.pk)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    with transaction.atomic():
        engine.retry(c.pk)  # holds p's row (shared) until commit
        completing = complete_elsewhere(claimed)
        wait_until(blocked_on_a_lock, timeout=10, message="the completion never waited")
        assert status(c.pk) == Status.WAITING
    completing.join(timeout=10)
    assert status(p.pk) == Status.SUCCEEDED
    assert status(c.pk) == Status.QUEUED, "the completion did not see its child waiting"


def test_a_retry_while_the_last_parent_completes_sees_it_succeeded():
    p, c = engine.enqueue_many([spec("p"), spec("c", after=[0])])
    engine.cancel(c.pk)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    retried: list[str] = []

    def retry_elsewhere():
        try:
            retried.append(engine.retry(c.pk).status)
        finally:
            connection.close()

    with transaction.atomic():
        engine.complete(worker_id=WORKER, outcomes=[outcome(claimed)])  # holds p's row
        thread = threading.Thread(target=retry_elsewhere)
        thread.start()
        wait_until(blocked_on_a_lock, timeout=10, message="the retry never waited")
    thread.join(timeout=10)
    assert retried == [Status.QUEUED]
    assert last_history(c.pk).event_type == Event.TASK_REQUEUED
