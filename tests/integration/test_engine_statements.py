"""Every transition statement of tasks/engine/queries.sql, run through its engine verb.

A transition statement is one that writes task_history. For each, against the real
database: the tasks it changed have exactly one new history row each (no other task has
any), and its NOTIFY arrived on a separate LISTEN connection naming the changed tasks.
A new transition statement without a case here fails `test_every_transition_is_covered`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.db.models import Count
from django.utils import timezone

from tasks import engine
from tasks.engine.sql import QUERIES
from tasks.engine.submit import COPY_MIN_TASKS
from tasks.models import Task, TaskHistory, Workflow
from tasks.states import FINISHED, Event, Status
from tests.integration.conftest import WORKER, enqueue, expire_lease, outcome, sql

pytestmark = pytest.mark.django_db(transaction=True)

TRANSITIONS = {name for name, text in QUERIES.items() if "INSERT INTO task_history" in text}


def _claimed(n: int = 1, **spec) -> list[engine.ClaimedTask]:
    for _ in range(n):
        enqueue(**spec)
    return engine.claim(worker_id=WORKER, limit=n)


# Each case sets up its tasks, then returns the action to measure: a function that runs
# the statement's verb and returns the ids it changed, and the events it should send.
Case = Callable[[], tuple[Callable[[], set[int]], set[str]]]


def insert_task():
    return (lambda: {enqueue().pk}), {Event.TASK_QUEUED}


def insert_tasks():
    specs = [{"name": f"n{i}", "type": "count", "idempotency_key": f"k{i}"} for i in range(3)]
    return (lambda: {t.pk for t in engine.enqueue_many(specs)}), {Event.TASK_QUEUED}


def record_queued():
    # A batch this large without keys is copied in (copy_tasks), then recorded.
    specs = [{"name": f"n{i}", "type": "count"} for i in range(COPY_MIN_TASKS)]
    return (lambda: {t.pk for t in engine.enqueue_many(specs)}), {Event.TASK_QUEUED}


def claim_any():
    enqueue(), enqueue(queue="other")
    return (lambda: {c.id for c in engine.claim(worker_id=WORKER, limit=5)}), {
        Event.TASK_STARTED}


def claim_queues():
    enqueue(), enqueue(queue="mail")
    return (lambda: {c.id for c in engine.claim(worker_id=WORKER, limit=5, queues=["mail"])}), {
        Event.TASK_STARTED}


def claim_limited():
    enqueue(queue="api"), enqueue(queue="api"), enqueue(queue="api")
    engine.set_queue_limits("api", concurrency_limit=2)
    return (lambda: {c.id for c in engine.claim(worker_id=WORKER, limit=5)}), {
        Event.TASK_STARTED}


def enqueue_tick():
    import datetime

    s = engine.schedules.create(name="every", type="count", interval_seconds=60)
    later = s.next_run_at + datetime.timedelta(seconds=1)
    return (lambda: set(engine.fire_due_schedules(now=later).values())), {Event.TASK_QUEUED}


def complete_runs():
    runs = _claimed(2)
    return (lambda: engine.complete(worker_id=WORKER,
                                    outcomes=[outcome(c, result={"ok": 1}) for c in runs])), {
        Event.TASK_SUCCEEDED}


def fail_runs():
    retry = _claimed(1, max_retries=3)
    final = _claimed(1, max_retries=0)
    runs = retry + final
    return (lambda: set(engine.fail(worker_id=WORKER,
                                    outcomes=[outcome(c, error="boom") for c in runs]))), {
        Event.RETRY_SCHEDULED, Event.TASK_FAILED}


def cancel_runs():
    runs = _claimed(2)
    for c in runs:
        engine.cancel(c.id)
    return (lambda: engine.finish_cancelled(
        worker_id=WORKER, outcomes=[outcome(c, error="stopped") for c in runs])), {
        Event.TASK_CANCELLED}


def release_runs():
    runs = _claimed(2)
    engine.cancel(runs[1].id)  # asked to cancel meanwhile: released as cancelled
    return (lambda: engine.release(worker_id=WORKER,
                                   outcomes=[outcome(c, error="shutdown") for c in runs])), {
        Event.TASK_RELEASED, Event.TASK_CANCELLED}


def decline_runs():
    runs = _claimed(2)
    engine.cancel(runs[1].id)  # asked to cancel meanwhile: ends cancelled
    return (lambda: engine.decline(worker_id=WORKER,
                                   outcomes=[outcome(c, error="cannot import") for c in runs])), {
        Event.TASK_RELEASED, Event.TASK_CANCELLED}


def rescue_expired():
    runs = _claimed(2, max_retries=1)
    for c in runs:
        expire_lease(c.id)
    return (lambda: set(engine.rescue_expired())), {Event.LEASE_EXPIRED}


def cancel_tasks():
    (running,) = _claimed(1)
    (done,) = _claimed(1)
    engine.complete(worker_id=WORKER, outcomes=[outcome(done)])
    waiting = enqueue()
    return (lambda: set(engine.cancel_many([waiting.pk, running.id, done.id]).done)), {
        Event.TASK_CANCELLED, Event.CANCEL_REQUESTED}


def retry_tasks():
    (lost,) = _claimed(1, max_retries=0)
    engine.fail(worker_id=WORKER, outcomes=[outcome(lost, error="boom")])
    cancelled, waiting = enqueue(), enqueue()
    engine.cancel(cancelled.pk)
    child = enqueue(depends_on=[waiting.pk])  # its parent has not run: it waits again
    engine.cancel(child.pk)
    return (lambda: set(engine.retry_many([lost.id, cancelled.pk, waiting.pk,
                                           child.pk]).done)), {
        Event.TASK_REQUEUED, Event.TASK_WAITING}


def run_now_tasks():
    later = timezone.now() + datetime.timedelta(hours=1)
    deferred, due = enqueue(run_at=later), enqueue()
    (backing_off,) = _claimed(1, max_retries=3)
    engine.fail(worker_id=WORKER, outcomes=[outcome(backing_off, error="boom")])
    Task.objects.filter(pk=backing_off.id).update(run_at=later)  # a long backoff
    return (lambda: set(engine.run_now_many([deferred.pk, due.pk, backing_off.id]).done)), {
        Event.TASK_RUN_NOW}


def insert_graph():
    (parent,) = _claimed(1)
    specs = [{"name": "a", "type": "count", "depends_on": [parent.id]},
             {"name": "b", "type": "count"},
             {"name": "c", "type": "count", "after": [0, 1]}]
    return (lambda: {t.pk for t in engine.enqueue_many(specs)}), {
        Event.TASK_WAITING, Event.TASK_QUEUED}


def snooze_runs():
    runs = _claimed(2)
    engine.cancel(runs[1].id)  # asked to cancel meanwhile: ends cancelled
    return (lambda: engine.snooze(worker_id=WORKER,
                                  outcomes=[outcome(c, delay=30) for c in runs])), {
        Event.TASK_SNOOZED, Event.TASK_CANCELLED}


CASES: dict[str, Case] = {f.__name__: f for f in (
    insert_task, insert_tasks, record_queued, insert_graph, enqueue_tick, claim_any, claim_queues,
    claim_limited, complete_runs, fail_runs, cancel_runs, release_runs, decline_runs,
    snooze_runs, rescue_expired, cancel_tasks, retry_tasks, run_now_tasks)}


def _history_counts() -> dict[int, int]:
    return dict(TaskHistory.objects.values("task_id").annotate(n=Count("id"))
                .values_list("task_id", "n"))


def test_every_transition_is_covered():
    assert set(CASES) == TRANSITIONS


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_transition_writes_one_history_row_per_task_and_notifies(name, listen):
    action, expected_events = CASES[name]()
    listen()  # the set-up's own events
    before = _history_counts()
    changed = action()
    after = _history_counts()
    events = listen()
    assert changed, f"{name}: the case changed no task"
    grown = {task_id: after[task_id] - before.get(task_id, 0) for task_id in after
             if after[task_id] != before.get(task_id, 0)}
    assert grown == dict.fromkeys(changed, 1)
    assert {e["event"] for e in events} == expected_events
    notified = {i for e in events for i in e["ids"]}
    assert notified == changed
    assert sum(e["count"] for e in events) == len(changed)


def test_delete_finished_deletes_only_what_is_finished_when_it_deletes(listen):
    done = _claimed(1)[0]
    engine.complete(worker_id=WORKER, outcomes=[outcome(done)])
    cancelled = enqueue()
    engine.cancel(cancelled.pk)
    requeued = enqueue()
    engine.cancel(requeued.pk)
    engine.retry(requeued.pk)  # finished when a person chose it, queued when deleting
    listen()
    result = engine.delete_finished([done.id, cancelled.pk, requeued.pk, 999999, "x"])
    assert sorted(result.done) == sorted([done.id, cancelled.pk])
    assert result.skipped == {requeued.pk: "still queued: cancel it first",
                              999999: "not found", "x": "not found"}
    assert set(Task.objects.values_list("pk", flat=True)) == {requeued.pk}
    assert set(TaskHistory.objects.values_list("task_id", flat=True)) == {requeued.pk}
    assert listen() == [{"event": "tasks_deleted", "count": 2,
                         "ids": sorted([done.id, cancelled.pk])}]


def test_delete_finished_with_nothing_finished_sends_nothing(listen):
    task = enqueue()
    listen()
    result = engine.delete_finished([task.pk])
    assert result.done == [] and Task.objects.get(pk=task.pk).status == Status.QUEUED
    assert listen() == []
    assert Status.QUEUED not in FINISHED


def test_delete_finished_rechecks_the_status_in_the_statement():
    task = enqueue()
    engine.cancel(task.pk)
    # Requeued behind the engine's back: the DELETE's own WHERE must refuse it.
    sql("UPDATE tasks SET status = 'queued' WHERE id = %s", [task.pk])
    assert engine.delete_finished([task.pk]).skipped == {task.pk: "still queued: cancel it first"}
    assert Task.objects.filter(pk=task.pk).exists()


def test_every_statement_that_deletes_tasks_deletes_their_history_and_notifies():
    deleting = {name for name, text in QUERIES.items() if "DELETE FROM tasks" in text}
    assert deleting == {"delete_finished", "prune_finished"}
    for name in deleting:
        assert "DELETE FROM task_history" in QUERIES[name], name
        assert "pg_notify(" in QUERIES[name], name


def test_delete_finished_deletes_a_workflow_with_its_last_task(listen):
    workflow, (first, second) = engine.enqueue_workflow(
        [{"name": "a", "type": "count"}, {"name": "b", "type": "count"}])
    engine.cancel_many([first.pk, second.pk])
    engine.delete_finished([first.pk])
    assert Workflow.objects.filter(pk=workflow.pk).exists()
    engine.delete_finished([second.pk])
    assert not Workflow.objects.filter(pk=workflow.pk).exists()


def test_prune_finished_deletes_the_tasks_their_history_and_sends_one_event(listen):
    runs = _claimed(3)
    engine.complete(worker_id=WORKER, outcomes=[outcome(c) for c in runs])
    old = [c.id for c in runs[:2]]
    sql("UPDATE tasks SET finished_at = now() - interval '2 hours' WHERE id = ANY(%s)", [old])
    kept = enqueue()
    listen()
    batch = engine.prune_finished(status="succeeded", retention={"succeeded": 3600}, limit=10)
    assert (batch.tasks, batch.history, batch.scanned) == ({"succeeded": 2}, {"succeeded": 6}, 2)
    assert set(Task.objects.values_list("pk", flat=True)) == {runs[2].id, kept.pk}
    assert not TaskHistory.objects.filter(task_id__in=old).exists()
    assert listen() == [{"event": "tasks_pruned", "status": "succeeded", "count": 2,
                         "history": 6, "workflows": 0, "ids": sorted(old)}]
    again = engine.prune_finished(status="succeeded", retention={"succeeded": 3600},
                                  limit=10, after=batch.position)
    assert (again.tasks, again.scanned, again.position) == ({}, 0, None)
    assert listen() == []


@pytest.mark.parametrize("status, retention", [
    ("running", {"running": 60}), ("succeeded", {"succeeded": 0}), ("failed", {})])
def test_prune_finished_needs_a_finished_status_with_a_retention(status, retention):
    with pytest.raises(ValueError, match="not a finished status with a retention"):
        engine.prune_finished(status=status, retention=retention, limit=10)
