"""Dependencies between tasks, through the engine against the real database: waiting,
release with the last parent, cascades on failure, retries that bring children back."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction

from tasks import engine
from tasks.engine import steering
from tasks.exceptions import InvalidTask
from tasks.models import Task, TaskDependency, TaskHistory
from tasks.states import Event, Status
from tests.integration.conftest import (
    WORKER,
    blocked_on_a_lock,
    complete_elsewhere,
    enqueue,
    events,
    outcome,
    run_fail,
    run_ok,
    spec,
    sql,
    status,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_child_waits_for_every_parent_and_is_released_with_the_last():
    a, b, c = engine.enqueue_many([spec("a"), spec("b"), spec("c", after=[0, 1])])
    assert (a.status, b.status, c.status) == (Status.QUEUED, Status.QUEUED, Status.WAITING)
    assert events(c.pk) == [Event.TASK_WAITING]
    assert set(TaskDependency.objects.filter(child=c.pk).values_list("parent_id", flat=True)) \
        == {a.pk, b.pk}
    run_ok(a.pk, {"from": "a"})
    assert status(c.pk) == Status.WAITING
    claimed = engine.claim(worker_id=WORKER, limit=100)
    assert c.pk not in [t.id for t in claimed]  # waiting: not claimable
    engine.release(worker_id=WORKER, outcomes=[outcome(t) for t in claimed])
    run_ok(b.pk, {"from": "b"})
    assert status(c.pk) == Status.QUEUED
    assert events(c.pk) == [Event.TASK_WAITING, Event.DEPENDENCIES_MET]
    assert engine.parent_results(c.pk) == {a.pk: {"from": "a"}, b.pk: {"from": "b"}}


def test_parents_ending_in_one_batch_release_their_child_once():
    a, b, c = engine.enqueue_many([spec("a"), spec("b"), spec("c", after=[0, 1])])
    claimed = engine.claim(worker_id=WORKER, limit=10)
    assert {t.id for t in claimed} == {a.pk, b.pk}
    engine.complete(worker_id=WORKER, outcomes=[outcome(t) for t in claimed])
    assert status(c.pk) == Status.QUEUED
    assert events(c.pk) == [Event.TASK_WAITING, Event.DEPENDENCIES_MET]


def test_depending_on_a_task_that_does_not_exist_is_refused_and_writes_nothing(counts):
    parent = enqueue()
    before = counts()
    with pytest.raises(InvalidTask) as caught:
        enqueue(depends_on=[parent.pk, 987654321])
    assert caught.value.errors == {"depends_on": ["Task 987654321 does not exist."]}
    with pytest.raises(InvalidTask) as caught:
        engine.enqueue_many([spec("x"), spec("y", depends_on=[987654321], after=[0])])
    assert caught.value.errors == {"1": {"depends_on": ["Task 987654321 does not exist."]}}
    assert counts() == before
    assert Task.objects.get(pk=parent.pk).has_dependents is False


@pytest.mark.parametrize(("fields", "errors"), [
    ({"depends_on": "12"}, {"depends_on": ["Must be a list."]}),
    ({"depends_on": [0]}, {"depends_on": ["Not a valid reference: 0."]}),
    ({"on_parent_failure": "maybe"}, {"on_parent_failure": ["Must be one of 'fail', 'run'."]}),
    ({"on_parent_failure": "run"},
     {"on_parent_failure": ["Only for a task with depends_on or after."]}),
    ({"after": [0]}, {"after": ["Only in enqueue_many: positions in the same request."]}),
])
def test_bad_dependency_fields_name_the_field(fields, errors, counts):
    before = counts()
    with pytest.raises(InvalidTask) as caught:
        enqueue(**fields)
    assert caught.value.errors == errors
    assert counts() == before


def test_after_must_name_an_earlier_task_of_the_request(counts):
    with pytest.raises(InvalidTask) as caught:
        engine.enqueue_many([spec("a", after=[1]), spec("b")])
    assert caught.value.errors == {"0": {"after": [
        "Position 1 is not an earlier task of this request."]}}
    assert counts() == (0, 0)


def test_a_parent_that_already_succeeded_counts_as_met_and_a_failed_one_is_refused():
    done = enqueue()
    run_ok(done.pk)
    child = enqueue(depends_on=[done.pk])
    assert child.status == Status.QUEUED and events(child.pk) == [Event.TASK_QUEUED]
    failed = enqueue(max_retries=0)
    run_fail(failed.pk)
    with pytest.raises(InvalidTask, match="is failed"):
        enqueue(depends_on=[failed.pk])
    anyway = enqueue(depends_on=[failed.pk], on_parent_failure="run")
    assert anyway.status == Status.QUEUED


def test_parents_are_limited_to_the_tasks_the_submitter_may_see(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    hers = engine.enqueue(name="hers", type="count", owner=alice)
    with pytest.raises(InvalidTask, match=f"Task {hers.pk} does not exist"):
        engine.enqueue(name="his", type="count", owner=bob, parent_scope=bob.pk,
                       depends_on=[hers.pk])
    mine = engine.enqueue(name="mine", type="count", owner=alice, parent_scope=alice.pk,
                          depends_on=[hers.pk])
    assert mine.status == Status.WAITING


def test_a_failed_parent_cancels_three_levels_and_a_retry_brings_them_back():
    p, c1, c2, c3 = engine.enqueue_many([
        spec("p", max_retries=0), spec("c1", after=[0]), spec("c2", after=[1]),
        spec("c3", after=[2])])
    run_fail(p.pk)
    assert status(p.pk) == Status.FAILED
    for child, parent in ((c1, p), (c2, c1), (c3, c2)):
        row = TaskHistory.objects.filter(task=child.pk).last()
        assert (row.event_type, row.status) == (Event.DEPENDENCY_FAILED, Status.CANCELLED)
        assert row.details == f"parent task {parent.pk} {'failed' if parent is p else 'cancelled'}"
        assert Task.objects.get(pk=child.pk).failed_parent_id == parent.pk

    engine.retry(p.pk)
    assert [status(t.pk) for t in (c1, c2, c3)] == [Status.WAITING] * 3
    assert events(c3.pk)[-1] == Event.TASK_WAITING
    for task in (p, c1, c2, c3):
        run_ok(task.pk)
    assert [status(t.pk) for t in (p, c1, c2, c3)] == [Status.SUCCEEDED] * 4


def test_a_retry_leaves_a_child_cancelled_while_another_parent_still_failed():
    a, b, c = engine.enqueue_many([spec("a", max_retries=0), spec("b", max_retries=0),
                                   spec("c", after=[0, 1])])
    run_fail(a.pk)
    run_fail(b.pk)
    assert status(c.pk) == Status.CANCELLED
    engine.retry(a.pk)
    assert status(c.pk) == Status.CANCELLED
    engine.retry(b.pk)
    assert status(c.pk) == Status.WAITING


def test_a_child_that_runs_anyway_is_released_when_its_parent_fails():
    p, child, strict = engine.enqueue_many([
        spec("p", max_retries=0), spec("c", after=[0], on_parent_failure="run"),
        spec("s", after=[0])])
    run_fail(p.pk)
    assert status(child.pk) == Status.QUEUED
    assert status(strict.pk) == Status.CANCELLED


def test_cancelling_a_waiting_parent_cancels_its_children_and_a_retry_rewaits_them():
    p, c, d = engine.enqueue_many([spec("p"), spec("c", after=[0]), spec("d", after=[1])])
    engine.cancel(c.pk)
    assert (status(c.pk), status(d.pk)) == (Status.CANCELLED, Status.CANCELLED)
    assert events(c.pk) == [Event.TASK_WAITING, Event.TASK_CANCELLED]
    assert events(d.pk) == [Event.TASK_WAITING, Event.DEPENDENCY_FAILED]
    engine.retry(c.pk)  # p has not run yet: c waits for it again, and d for c
    assert (status(c.pk), status(d.pk)) == (Status.WAITING, Status.WAITING)
    assert events(c.pk) == [Event.TASK_WAITING, Event.TASK_CANCELLED, Event.TASK_WAITING]
    run_ok(p.pk)
    assert (status(c.pk), status(d.pk)) == (Status.QUEUED, Status.WAITING)


def test_a_rescued_parent_that_failed_for_good_cancels_its_child():
    p, c = engine.enqueue_many([spec("p", max_retries=0), spec("c", after=[0])])
    engine.claim(worker_id=WORKER, limit=1)
    sql("UPDATE tasks SET locked_until = now() - interval '1 minute' WHERE id = %s", [p.pk])
    assert engine.rescue_expired() == {p.pk: Status.FAILED}
    assert status(c.pk) == Status.CANCELLED


def test_a_graph_enqueued_in_a_transaction_that_rolls_back_leaves_nothing(counts):
    parent = enqueue()
    before = counts()

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        engine.enqueue_many([spec("a", depends_on=[parent.pk]), spec("b", after=[0]),
                             spec("c", after=[0]), spec("d", after=[1, 2])])
        raise Undo
    assert counts() == before
    assert TaskDependency.objects.count() == 0
    assert Task.objects.get(pk=parent.pk).has_dependents is False


def test_ordinary_tasks_are_not_marked_as_having_dependents():
    a, b = engine.enqueue_many([spec("a"), spec("b")])
    c = enqueue(depends_on=[a.pk])
    stored = dict(Task.objects.values_list("pk", "has_dependents"))
    assert stored == {a.pk: True, b.pk: False, c.pk: False}


def test_snooze_requeues_later_without_using_a_retry():
    task = enqueue(max_retries=1)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    assert engine.snooze(worker_id=WORKER, outcomes=[outcome(claimed, delay=60)]) == {task.pk}
    row = Task.objects.get(pk=task.pk)
    assert (row.status, row.retry_count, row.locked_by) == (Status.QUEUED, 0, None)
    assert events(task.pk)[-1] == Event.TASK_SNOOZED
    assert engine.claim(worker_id=WORKER, limit=1) == []  # not due for a minute
    assert 55 < engine.next_due_in() <= 60


def test_progress_is_stored_fenced_on_the_run():
    task = enqueue()
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    assert engine.progress(worker_id=WORKER, task_id=task.pk, attempt=claimed.attempt,
                           done=3, total=10, message="three", at="t")
    assert Task.objects.get(pk=task.pk).progress == {"done": 3, "total": 10,
                                                     "message": "three", "at": "t",
                                                     "attempt": claimed.attempt}
    assert not engine.progress(worker_id="someone-else", task_id=task.pk,
                               attempt=claimed.attempt, done=4)
    assert Task.objects.get(pk=task.pk).progress["done"] == 3


# --- two transactions at once ------------------------------------------------------------


def test_a_child_enqueued_while_its_parent_completes_is_released():
    parent = enqueue()
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    with transaction.atomic():
        child = enqueue(depends_on=[parent.pk])  # holds the parent's row until commit
        completing = complete_elsewhere(claimed)
        wait_until(blocked_on_a_lock, timeout=10, message="the completion never waited")
    completing.join(timeout=10)
    assert status(parent.pk) == Status.SUCCEEDED
    assert status(child.pk) == Status.QUEUED, "the completion did not see its new child"


def test_two_parents_completing_at_once_in_two_transactions_release_their_child():
    a, b, c = engine.enqueue_many([spec("a"), spec("b"), spec("c", after=[0, 1])])
    claimed = {t.id: t for t in engine.claim(worker_id=WORKER, limit=2)}
    with transaction.atomic():
        engine.complete(worker_id=WORKER, outcomes=[outcome(claimed[a.pk])])  # locks c
        completing = complete_elsewhere(claimed[b.pk])
        wait_until(blocked_on_a_lock, timeout=10, message="the second completion never waited")
        assert status(c.pk) == Status.WAITING  # b has not succeeded as this transaction sees
    completing.join(timeout=10)
    assert status(b.pk) == Status.SUCCEEDED
    assert status(c.pk) == Status.QUEUED
    assert events(c.pk) == [Event.TASK_WAITING, Event.DEPENDENCIES_MET]


def test_two_retries_of_a_parent_with_its_child_at_once_queue_behind_each_other():
    p, c = engine.enqueue_many([spec("p", max_retries=0), spec("c", after=[0])])
    run_fail(p.pk)
    assert status(c.pk) == Status.CANCELLED
    ids = [p.pk, c.pk]
    elsewhere: dict = {}

    def body():
        try:
            elsewhere["result"] = engine.retry_many(ids)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            elsewhere["error"] = exc
        finally:
            connections.close_all()

    with transaction.atomic():
        steering.lock_for_retry(ids)  # this retry's first step
        other = threading.Thread(target=body)
        other.start()
        wait_until(blocked_on_a_lock, timeout=10, message="the other retry never waited")
        mine = engine.retry_many(ids)
    other.join(timeout=10)
    assert "error" not in elsewhere, elsewhere.get("error")
    assert mine.done == ids
    assert elsewhere["result"].skipped == {p.pk: "already queued", c.pk: "already waiting"}
    assert (status(p.pk), status(c.pk)) == (Status.QUEUED, Status.WAITING)
