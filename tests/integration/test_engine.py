"""Every transition and every guard of tasks/engine/ against the real PostgreSQL."""

from __future__ import annotations

import datetime
import threading
import time

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.engine.sql import QUERIES
from tasks.engine.submit import COPY_MIN_TASKS
from tasks.exceptions import IdempotencyConflict, InvalidTask, InvalidTransition, TaskNotFound
from tasks.listener import connect_kwargs
from tasks.models import Status, Task, TaskHistory, Worker
from tests.integration.conftest import (
    OTHER_WORKER,
    WORKER,
    claim_ids,
    db_now,
    enqueue,
    events,
    expire_lease,
    last_history,
    make_due,
    outcome,
    sql,
)

pytestmark = pytest.mark.django_db


def claim_one(worker: str = WORKER, **kwargs) -> engine.ClaimedTask:
    claimed = engine.claim(worker_id=worker, limit=1, **kwargs)
    assert len(claimed) == 1
    return claimed[0]


def fresh(task_or_id) -> Task:
    return Task.objects.get(pk=getattr(task_or_id, "pk", task_or_id))


@pytest.fixture
def backoff_settings():
    """Backoff base 10 s, cap 1000 s, so a retry's run_at is clearly in the future."""
    with override_settings(TASKS_ENGINE={**settings.TASKS_ENGINE, "BACKOFF_BASE": 10.0,
                                         "BACKOFF_CAP": 1000.0}):
        yield


# --- enqueue -------------------------------------------------------------------------


def test_enqueue_writes_the_task_and_one_history_row():
    task = enqueue(name="Count me", payload={"n": 1}, priority=5, queue="q1",
                   max_retries=2, timeout_seconds=30)
    assert task.was_created is True
    stored = fresh(task)
    assert (stored.name, stored.type, stored.status, stored.payload) == (
        "Count me", "count", Status.QUEUED, {"n": 1})
    assert (stored.priority, stored.queue, stored.max_retries, stored.timeout_seconds) == (
        5, "q1", 2, 30)
    assert (stored.retry_count, stored.attempts, stored.locked_by, stored.result) == (
        0, 0, None, None)
    assert stored.run_at == stored.created_at == db_now()
    history = list(TaskHistory.objects.filter(task=stored))
    assert [(h.event_type, h.status, h.attempt) for h in history] == [
        ("task_queued", "queued", 0)]


def test_enqueue_uses_the_configured_defaults():
    stored = fresh(enqueue())
    assert stored.max_retries == engine_settings().DEFAULT_MAX_RETRIES
    assert stored.timeout_seconds == engine_settings().DEFAULT_TIMEOUT
    assert (stored.priority, stored.queue, stored.payload) == (0, "default", {})


def test_enqueue_stores_the_cleaned_payload():
    task = enqueue(type="send_email", payload={"to": "a@example.com", "subject": "S",
                                               "body": "B"})
    assert fresh(task).payload["to"] == ["a@example.com"]


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"type": ""}, "type"),
        ({"type": "no_such_type"}, "type"),
        ({"payload": [1, 2]}, "payload"),
        ({"payload": {"bad": float("nan")}}, "payload"),
        ({"payload": {"text": "a\x00b"}}, "payload"),
        ({"type": "send_email", "payload": {"to": "nope", "subject": "s", "body": "b"}},
         "payload"),
        ({"priority": 1001}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"priority": True}, "priority"),
        ({"queue": ""}, "queue"),
        ({"queue": "has space"}, "queue"),
        ({"run_at": datetime.datetime(2030, 1, 1)}, "run_at"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 101}, "max_retries"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
    ],
)
def test_enqueue_validation_errors_name_the_field_and_write_nothing(spec, field, counts):
    before = counts()
    with pytest.raises(InvalidTask) as excinfo:
        enqueue(**spec)
    assert field in excinfo.value.errors
    assert counts() == before


def test_enqueue_reports_every_bad_field_at_once(counts):
    with pytest.raises(InvalidTask) as excinfo:
        enqueue(name="", type="count", priority=5000, queue="bad queue")
    assert set(excinfo.value.errors) == {"name", "priority", "queue"}
    assert counts() == (0, 0)


def test_enqueue_of_an_unknown_type_lists_the_known_ones():
    with pytest.raises(InvalidTask) as excinfo:
        enqueue(type="nope")
    assert "simulate" in excinfo.value.errors["type"][0]


def test_enqueue_rejects_an_oversized_payload(counts):
    limit = engine_settings().MAX_PAYLOAD_BYTES
    with pytest.raises(InvalidTask, match="Too large"):
        enqueue(payload={"blob": "x" * limit})
    assert counts() == (0, 0)


def test_idempotency_key_with_the_same_fields_returns_the_existing_task(counts):
    first = enqueue(name="first", payload={"n": 1}, idempotency_key="order-42")
    before = counts()
    again = enqueue(name="first", payload={"n": 1}, idempotency_key="order-42")
    assert again.was_created is False
    assert again.pk == first.pk
    assert counts() == before
    assert events(first.pk) == ["task_queued"]


def test_idempotency_key_with_other_fields_is_a_conflict_naming_the_task(counts):
    first = enqueue(name="first", idempotency_key="order-42")
    before = counts()
    with pytest.raises(IdempotencyConflict) as excinfo:
        enqueue(name="second", payload={"different": True}, idempotency_key="order-42")
    assert excinfo.value.task_id == first.pk
    assert str(first.pk) in str(excinfo.value)
    assert counts() == before


def test_idempotency_keys_are_per_owner(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    mallory = django_user_model.objects.create_user("mallory")
    squatted = enqueue(name="squat", idempotency_key="invoice-7", owner=mallory)
    mine = enqueue(name="mine", idempotency_key="invoice-7", owner=alice)
    system = enqueue(name="system", idempotency_key="invoice-7")
    assert len({squatted.pk, mine.pk, system.pk}) == 3
    assert all(t.was_created for t in (squatted, mine, system))
    assert (mine.owner_id, system.owner_id) == (alice.pk, None)
    again = enqueue(name="mine", idempotency_key="invoice-7", owner=alice.pk)
    assert (again.pk, again.was_created) == (mine.pk, False)
    assert enqueue(name="system", idempotency_key="invoice-7").pk == system.pk


def test_idempotency_key_still_returns_a_finished_task():
    first = enqueue(idempotency_key="once")
    c = claim_one()
    engine.complete(worker_id=WORKER, outcomes=[outcome(c, result=1)])
    again = enqueue(idempotency_key="once")
    assert (again.pk, again.was_created, again.status) == (first.pk, False, Status.SUCCEEDED)


def test_enqueue_inside_a_rolled_back_transaction_leaves_no_task(counts):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(name="ghost")
        assert Task.objects.filter(name="ghost").exists()
        raise RuntimeError("the caller's work failed")
    assert counts() == (0, 0)


# --- enqueue_many --------------------------------------------------------------------


def test_enqueue_many_keeps_the_input_order():
    specs = [{"name": f"t{i}", "type": "count", "priority": i % 3} for i in range(20)]
    tasks = engine.enqueue_many(specs)
    assert [t.name for t in tasks] == [f"t{i}" for i in range(20)]
    assert [t.pk for t in tasks] == sorted(t.pk for t in tasks)
    assert all(t.was_created for t in tasks)
    assert Task.objects.count() == 20
    assert TaskHistory.objects.filter(event_type="task_queued").count() == 20
    assert [t.priority for t in tasks] == [i % 3 for i in range(20)]


def test_enqueue_many_of_nothing_writes_nothing(counts):
    assert engine.enqueue_many([]) == []
    assert counts() == (0, 0)


def test_enqueue_many_idempotency_within_and_across_batches(counts):
    existing = enqueue(name="old", idempotency_key="k-old")
    tasks = engine.enqueue_many([
        {"name": "a", "type": "count", "idempotency_key": "k-new"},
        {"name": "b", "type": "count"},
        {"name": "old", "type": "count", "idempotency_key": "k-old"},
        {"name": "c", "type": "count"},
    ])
    assert [t.name for t in tasks] == ["a", "b", "old", "c"]
    assert tasks[2].pk == existing.pk and tasks[2].was_created is False
    assert tasks[0].was_created and tasks[1].was_created and tasks[3].was_created
    assert Task.objects.count() == 4
    assert TaskHistory.objects.count() == 4
    assert events(tasks[0].pk) == ["task_queued"]

    # A later batch with the same keys and fields creates nothing.
    again = engine.enqueue_many([{"name": "a", "type": "count", "idempotency_key": "k-new"},
                                 {"name": "old", "type": "count", "idempotency_key": "k-old"}])
    assert [(t.pk, t.was_created) for t in again] == [(tasks[0].pk, False),
                                                      (existing.pk, False)]
    assert (Task.objects.count(), TaskHistory.objects.count()) == (4, 4)

    # A key repeated inside one batch is refused, naming both places; nothing is written.
    before = counts()
    with pytest.raises(InvalidTask) as excinfo:
        engine.enqueue_many([{"name": "z", "type": "count", "idempotency_key": "dup"},
                             {"name": "z", "type": "count"},
                             {"name": "z", "type": "count", "idempotency_key": "dup"}])
    assert excinfo.value.errors == {"2": {"idempotency_key": [
        "Repeats the key of task 0 in this request."]}}
    # A reused key with other fields refuses the whole batch, even in autocommit.
    with pytest.raises(IdempotencyConflict) as conflict:
        engine.enqueue_many([{"name": "fresh", "type": "count"},
                             {"name": "changed", "type": "count", "idempotency_key": "k-old"}])
    assert conflict.value.task_id == existing.pk
    assert counts() == before


def test_enqueue_many_rejects_the_whole_batch_keyed_by_index(counts):
    enqueue(name="before")
    before = counts()
    with pytest.raises(InvalidTask) as excinfo:
        engine.enqueue_many([
            {"name": "fine", "type": "count"},
            {"name": "", "type": "count"},
            {"name": "fine too", "type": "count"},
            {"name": "x", "type": "nope", "priority": 99999},
            "not an object",
            {"name": "x", "type": "count", "colour": "red"},
        ])
    errors = excinfo.value.errors
    assert set(errors) == {"1", "3", "4", "5"}
    assert set(errors["1"]) == {"name"}
    assert set(errors["3"]) == {"type", "priority"}
    assert "non_field_errors" in errors["4"]
    assert "colour" in errors["5"]["non_field_errors"][0]
    assert counts() == before


# --- claim ---------------------------------------------------------------------------


def test_claim_marks_the_task_running_and_writes_task_started():
    task = enqueue(max_retries=4, timeout_seconds=60, payload={"k": "v"})
    claimed = engine.claim(worker_id=WORKER, limit=5, lease_seconds=45)
    assert len(claimed) == 1
    c = claimed[0]
    assert (c.id, c.type, c.payload, c.attempt, c.retry_count, c.max_retries,
            c.timeout_seconds) == (task.pk, "count", {"k": "v"}, 1, 0, 4, 60)
    stored = fresh(task)
    now = db_now()
    assert stored.status == Status.RUNNING
    assert stored.locked_by == WORKER
    assert stored.locked_until == now + datetime.timedelta(seconds=45)
    assert stored.attempts == 1
    assert stored.started_at == now
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.attempt, h.worker_id) == (
        "task_started", "running", 1, WORKER)
    assert events(task.pk) == ["task_queued", "task_started"]


def test_claim_order_is_priority_then_run_at_then_id():
    now = db_now()

    def at(minutes: int):
        return now + datetime.timedelta(minutes=minutes)

    a = enqueue(name="a", priority=0, run_at=at(-10))
    b = enqueue(name="b", priority=5, run_at=at(-1))
    c = enqueue(name="c", priority=5, run_at=at(-5))
    d = enqueue(name="d", priority=0, run_at=at(-20))
    e = enqueue(name="e", priority=9, run_at=at(60))  # not due
    f = enqueue(name="f", priority=1, run_at=at(-3))
    g = enqueue(name="g", priority=1, run_at=at(-3))  # same run_at as f: by id
    h = enqueue(name="h", priority=-5)
    order = [claim_one().id for _ in range(7)]
    assert order == [c.pk, b.pk, f.pk, g.pk, d.pk, a.pk, h.pk]
    assert engine.claim(worker_id=WORKER, limit=10) == []
    assert fresh(e).status == Status.QUEUED


def test_a_batch_claim_takes_the_first_k_in_claim_order():
    low = [enqueue(name=f"low{i}", priority=0) for i in range(3)]
    high = [enqueue(name=f"high{i}", priority=10) for i in range(3)]
    ids = claim_ids(limit=4)
    assert len(ids) == 4
    assert set(ids) == {t.pk for t in high} | {low[0].pk}
    assert ids[:3] == [t.pk for t in high]


def test_claim_only_takes_due_tasks():
    later = enqueue(run_at=timezone.now() + datetime.timedelta(hours=1))
    assert claim_ids() == []
    make_due(later.pk)
    assert claim_ids() == [later.pk]


def test_claim_filters_by_queue():
    a = enqueue(queue="a")
    b = enqueue(queue="b")
    default = enqueue()
    assert claim_ids(queues=["nothing-here"]) == []
    assert claim_ids(queues=["a"]) == [a.pk]
    assert claim_ids(queues=["b", "default"]) == [b.pk, default.pk]


def test_claim_respects_the_limit():
    for _ in range(5):
        enqueue()
    assert claim_ids(limit=0) == []
    assert len(claim_ids(limit=2)) == 2
    assert len(claim_ids(limit=2)) == 2
    assert len(claim_ids(limit=2)) == 1
    assert claim_ids(limit=2) == []


def test_two_claims_never_return_the_same_task():
    for _ in range(6):
        enqueue()
    first = claim_ids(WORKER, limit=4)
    second = claim_ids(OTHER_WORKER, limit=10)
    assert len(first) == 4 and len(second) == 2
    assert not set(first) & set(second)
    assert Task.objects.filter(locked_by=WORKER).count() == 4
    assert Task.objects.filter(locked_by=OTHER_WORKER).count() == 2


def test_running_succeeded_failed_and_cancelled_tasks_are_not_claimed():
    for _ in range(3):
        enqueue(max_retries=0)
    running, succeeded, failed = engine.claim(worker_id=WORKER, limit=3)
    engine.complete(worker_id=WORKER, outcomes=[outcome(succeeded)])
    engine.fail(worker_id=WORKER, outcomes=[outcome(failed, error="x")])
    cancelled = enqueue()
    engine.cancel(cancelled.pk)
    sql("UPDATE tasks SET run_at = now() - interval '1 hour'")
    assert sorted(Task.objects.values_list("status", flat=True)) == [
        "cancelled", "failed", "running", "succeeded"]
    assert claim_ids(OTHER_WORKER) == []
    assert fresh(running.id).locked_by == WORKER


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_from_threads_never_overlap():
    total = 120
    engine.enqueue_many([{"name": f"t{i}", "type": "count"} for i in range(total)])
    barrier = threading.Barrier(4)
    results: dict[str, list[int]] = {}
    failures: list[BaseException] = []

    def work(worker: str) -> None:
        from django.db import connection as thread_connection

        mine: list[int] = []
        try:
            barrier.wait(timeout=10)
            while True:
                got = claim_ids(worker, limit=7)
                if not got:
                    break
                mine.extend(got)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            results[worker] = mine
            thread_connection.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    claimed = [tid for ids in results.values() for tid in ids]
    assert len(claimed) == len(set(claimed)) == total
    assert Task.objects.filter(status=Status.RUNNING).count() == total
    assert TaskHistory.objects.filter(event_type="task_started").count() == total
    for worker, ids in results.items():
        assert set(Task.objects.filter(locked_by=worker).values_list("id", flat=True)) == set(ids)


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_another_transaction_is_skipped_not_waited_for():
    first, second = enqueue(), enqueue()
    with psycopg.connect(**connect_kwargs()) as other:
        # Another session holds the first task's row lock (as an in-flight claim would).
        other.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", [first.pk])
        assert claim_ids(limit=10) == [second.pk]
        other.rollback()
    assert claim_ids(limit=10) == [first.pk]


# --- complete: fenced by worker and attempt -------------------------------------------


def test_complete_marks_succeeded_with_the_result():
    task = enqueue()
    c = claim_one()
    applied = engine.complete(worker_id=WORKER, outcomes=[outcome(c, result={"answer": 42})])
    assert applied == {task.pk}
    stored = fresh(task)
    assert stored.status == Status.SUCCEEDED
    assert stored.result == {"answer": 42}
    assert stored.finished_at == db_now()
    assert (stored.locked_by, stored.locked_until) == (None, None)
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.attempt, h.worker_id) == (
        "task_succeeded", "succeeded", 1, WORKER)


def test_complete_of_a_batch_in_one_call():
    for _ in range(5):
        enqueue()
    claimed = engine.claim(worker_id=WORKER, limit=5)
    applied = engine.complete(worker_id=WORKER,
                              outcomes=[outcome(c, result=c.id) for c in claimed])
    assert applied == {c.id for c in claimed}
    assert {t.pk: t.result for t in Task.objects.all()} == {c.id: c.id for c in claimed}
    assert TaskHistory.objects.filter(event_type="task_succeeded").count() == 5


def test_complete_stores_an_unserialisable_result_as_text():
    enqueue()
    c = claim_one()
    engine.complete(worker_id=WORKER, outcomes=[outcome(c, result={1, 2})])
    assert isinstance(fresh(c.id).result, str)


def _assert_untouched(task_id: int, before: Task, history_len: int) -> None:
    after = fresh(task_id)
    assert (after.status, after.locked_by, after.attempts, after.result, after.finished_at) == (
        before.status, before.locked_by, before.attempts, before.result, before.finished_at)
    assert TaskHistory.objects.filter(task_id=task_id).count() == history_len


def test_complete_by_the_wrong_worker_changes_nothing():
    task = enqueue()
    c = claim_one()
    before, n = fresh(task), len(events(task.pk))
    assert engine.complete(worker_id=OTHER_WORKER, outcomes=[outcome(c, result=1)]) == set()
    assert engine.fail(worker_id=OTHER_WORKER, outcomes=[outcome(c, error="x")]) == {}
    assert engine.finish_cancelled(worker_id=OTHER_WORKER, outcomes=[outcome(c)]) == set()
    assert engine.release(worker_id=OTHER_WORKER, outcomes=[outcome(c)]) == set()
    _assert_untouched(task.pk, before, n)


def test_complete_of_a_stale_attempt_changes_nothing():
    task = enqueue()
    first = claim_one()
    expire_lease(task.pk)
    assert engine.rescue_expired() == {task.pk: Status.RETRYING}
    make_due(task.pk)  # past the backoff
    second = claim_one()  # the same worker wins the task again: attempt 2
    assert second.attempt == first.attempt + 1
    before, n = fresh(task), len(events(task.pk))
    assert engine.complete(worker_id=WORKER, outcomes=[outcome(first, result="stale")]) == set()
    assert engine.fail(worker_id=WORKER, outcomes=[outcome(first, error="stale")]) == {}
    assert engine.release(worker_id=WORKER, outcomes=[outcome(first)]) == set()
    _assert_untouched(task.pk, before, n)
    # The current attempt still completes.
    assert engine.complete(worker_id=WORKER, outcomes=[outcome(second, result="ok")]) == {task.pk}


def test_complete_after_the_task_was_taken_over_changes_nothing():
    task = enqueue()
    first = claim_one(WORKER)
    expire_lease(task.pk)
    engine.rescue_expired()
    make_due(task.pk)
    claim_one(OTHER_WORKER)
    before, n = fresh(task), len(events(task.pk))
    assert engine.complete(worker_id=WORKER, outcomes=[outcome(first, result=1)]) == set()
    _assert_untouched(task.pk, before, n)
    assert fresh(task).locked_by == OTHER_WORKER


def test_complete_of_a_finished_task_changes_nothing():
    task = enqueue()
    c = claim_one()
    engine.complete(worker_id=WORKER, outcomes=[outcome(c, result="first")])
    before, n = fresh(task), len(events(task.pk))
    assert engine.complete(worker_id=WORKER, outcomes=[outcome(c, result="second")]) == set()
    _assert_untouched(task.pk, before, n)
    assert fresh(task).result == "first"


def test_complete_applies_the_valid_part_of_a_mixed_batch():
    a, b = enqueue(), enqueue()
    ca, cb = engine.claim(worker_id=WORKER, limit=2)
    stale = engine.Outcome(task_id=cb.id, attempt=cb.attempt + 7)
    assert engine.complete(worker_id=WORKER, outcomes=[outcome(ca), stale]) == {ca.id}
    assert fresh(cb.id).status == Status.RUNNING
    assert {a.pk, b.pk} == {ca.id, cb.id}


# --- fail: retry with backoff, or fail for good --------------------------------------


def test_fail_schedules_a_retry_with_backoff(backoff_settings):
    task = enqueue(max_retries=3)
    c = claim_one()
    applied = engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="Boom: it broke")],
                          rand=lambda: 0.5)
    assert applied == {task.pk: Status.RETRYING}
    stored = fresh(task)
    now = db_now()
    assert stored.status == Status.RETRYING
    assert stored.retry_count == 1
    assert stored.last_error == "Boom: it broke"
    assert stored.run_at == now + datetime.timedelta(seconds=10)  # base * 2**0, no jitter
    assert (stored.locked_by, stored.locked_until, stored.finished_at) == (None, None, None)
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.attempt, h.worker_id) == (
        "retry_scheduled", "retrying", 1, WORKER)
    assert "retry 1 of 3" in h.details and "Boom: it broke" in h.details
    # Not due yet: nobody claims it until its backoff has passed.
    assert claim_ids() == []

    make_due(task.pk)
    c2 = claim_one()
    assert (c2.attempt, c2.retry_count) == (2, 1)
    engine.fail(worker_id=WORKER, outcomes=[outcome(c2, error="again")], rand=lambda: 0.0)
    stored = fresh(task)
    assert stored.retry_count == 2
    # Second retry: base * 2**1 = 20 s, jitter at its low end (-25 %) = 15 s.
    assert stored.run_at == db_now() + datetime.timedelta(seconds=15)


def test_fail_with_the_default_jitter_stays_in_bounds(backoff_settings):
    for _ in range(10):
        enqueue()
    claimed = engine.claim(worker_id=WORKER, limit=10)
    engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="e") for c in claimed])
    now = db_now()
    for task in Task.objects.all():
        delay = (task.run_at - now).total_seconds()
        assert 7.5 <= delay <= 12.5


def test_fail_with_no_retries_left_fails_for_good():
    task = enqueue(max_retries=0)
    c = claim_one()
    assert engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="fatal")]) == {
        task.pk: Status.FAILED}
    stored = fresh(task)
    assert stored.status == Status.FAILED
    assert stored.last_error == "fatal"
    assert stored.retry_count == 0
    assert stored.finished_at == db_now()
    assert stored.locked_by is None
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.attempt) == ("task_failed", "failed", 1)
    assert "failed after 1 attempts: fatal" in h.details
    assert claim_ids() == []


def test_fail_uses_up_the_retries_then_fails():
    task = enqueue(max_retries=2)
    for _ in range(3):
        make_due(task.pk)
        engine.fail(worker_id=WORKER, outcomes=[outcome(claim_one(), error="nope")])
    stored = fresh(task)
    assert (stored.status, stored.retry_count, stored.attempts) == (Status.FAILED, 2, 3)
    assert events(task.pk) == ["task_queued", "task_started", "retry_scheduled",
                               "task_started", "retry_scheduled", "task_started",
                               "task_failed"]


def test_fail_replaces_nul_characters_in_the_error():
    enqueue()
    c = claim_one()
    engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="bad\x00byte")])
    assert fresh(c.id).last_error == "bad\ufffdbyte"


def test_fail_of_a_task_with_a_requested_cancel_ends_cancelled():
    task = enqueue(max_retries=3)
    c = claim_one()
    engine.cancel(task.pk)
    engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="raised while stopping")])
    assert fresh(task).status == Status.CANCELLED


# --- finish_cancelled and release ----------------------------------------------------


def test_finish_cancelled_ends_a_running_task_cancelled():
    task = enqueue()
    c = claim_one()
    engine.cancel(task.pk, reason="user asked")
    applied = engine.finish_cancelled(worker_id=WORKER,
                                      outcomes=[outcome(c, error="cancelled while running")])
    assert applied == {task.pk}
    stored = fresh(task)
    assert stored.status == Status.CANCELLED
    assert stored.finished_at == db_now()
    assert stored.locked_by is None
    assert stored.cancel_requested_at is not None
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id, h.details) == (
        "task_cancelled", "cancelled", WORKER, "cancelled while running")
    assert events(task.pk) == ["task_queued", "task_started", "cancel_requested",
                               "task_cancelled"]


def test_release_puts_the_task_back_in_the_queue():
    task = enqueue()
    c = claim_one()
    applied = engine.release(worker_id=WORKER,
                             outcomes=[outcome(c, error="released: worker shutting down")])
    assert applied == {task.pk}
    stored = fresh(task)
    assert stored.status == Status.QUEUED
    assert (stored.locked_by, stored.locked_until, stored.finished_at) == (None, None, None)
    assert stored.retry_count == 0
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id) == ("task_released", "queued", WORKER)
    again = claim_one(OTHER_WORKER)
    assert (again.id, again.attempt) == (task.pk, 2)


def test_release_of_a_task_with_a_requested_cancel_does_not_lose_the_cancel():
    task = enqueue()
    c = claim_one()
    engine.cancel(task.pk)
    engine.release(worker_id=WORKER, outcomes=[outcome(c, error="worker shutting down")])
    assert fresh(task).status == Status.CANCELLED


# --- cancel --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["queued", "retrying"])
def test_cancel_of_a_waiting_task_cancels_it_now(status, backoff_settings):
    task = enqueue()
    if status == "retrying":
        engine.fail(worker_id=WORKER, outcomes=[outcome(claim_one(), error="e")])
    assert fresh(task).status == status
    returned = engine.cancel(task.pk, reason="not needed")
    assert returned.status == Status.CANCELLED
    stored = fresh(task)
    assert stored.status == Status.CANCELLED
    assert stored.finished_at is not None
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.details) == ("task_cancelled", "cancelled", "not needed")
    make_due(task.pk)
    assert claim_ids() == []


def test_cancel_of_a_running_task_requests_it_once():
    task = enqueue()
    claim_one()
    returned = engine.cancel(task.pk)
    assert returned.status == Status.RUNNING
    stored = fresh(task)
    assert stored.status == Status.RUNNING
    assert stored.cancel_requested_at is not None
    assert stored.locked_by == WORKER
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id) == ("cancel_requested", "running", WORKER)
    requested_at = stored.cancel_requested_at

    engine.cancel(task.pk)  # asking twice is harmless and writes nothing new
    assert events(task.pk).count("cancel_requested") == 1
    assert fresh(task).cancel_requested_at == requested_at


@pytest.mark.parametrize("final", ["succeeded", "failed", "cancelled"])
def test_cancel_of_a_finished_task_is_an_invalid_transition(final):
    task = enqueue(max_retries=0)
    if final == "cancelled":
        engine.cancel(task.pk)
    else:
        c = claim_one()
        if final == "succeeded":
            engine.complete(worker_id=WORKER, outcomes=[outcome(c)])
        else:
            engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="e")])
    n = len(events(task.pk))
    with pytest.raises(InvalidTransition) as excinfo:
        engine.cancel(task.pk)
    assert excinfo.value.status == final
    assert f"Cannot cancel task {task.pk}: it is {final}" in str(excinfo.value)
    assert fresh(task).status == final
    assert len(events(task.pk)) == n


def test_cancel_and_retry_of_an_unknown_task():
    with pytest.raises(TaskNotFound):
        engine.cancel(999999)
    with pytest.raises(TaskNotFound):
        engine.retry(999999)
    with pytest.raises(TaskNotFound):
        engine.cancel("abc")


def _wait_until_a_session_waits_for_a_lock(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("no session started waiting for a lock")


@pytest.mark.django_db(transaction=True)
def test_a_cancel_waits_for_a_claim_in_flight_then_asks_its_worker():
    task = enqueue()
    outcome_of: dict[str, object] = {}

    def cancel() -> None:
        from django.db import connection as thread_connection

        try:
            outcome_of["task"] = engine.cancel(task.pk, reason="stop it")
        except BaseException as exc:  # reported by the main thread
            outcome_of["error"] = exc
        finally:
            thread_connection.close()

    with psycopg.connect(**connect_kwargs()) as other:
        # Another session's claim holds the row, uncommitted: to others it is still queued.
        other.execute(QUERIES["claim_any"], {"worker": WORKER, "lease": 60, "limit": 1,
                                                "types": None, "skip": []})
        thread = threading.Thread(target=cancel)
        thread.start()
        _wait_until_a_session_waits_for_a_lock()
        assert thread.is_alive()  # neither skipped the row nor acted on its old status
        other.commit()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in outcome_of
    assert outcome_of["task"].status == Status.RUNNING
    stored = fresh(task)
    assert (stored.status, stored.locked_by) == (Status.RUNNING, WORKER)
    assert stored.cancel_requested_at is not None
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id, h.details) == (
        "cancel_requested", "running", WORKER, "stop it")
    assert events(task.pk) == ["task_queued", "task_started", "cancel_requested"]


# --- retry (a person re-runs a task) -------------------------------------------------


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_retry_requeues_a_failed_or_cancelled_task(final):
    task = enqueue(max_retries=1)
    if final == "failed":
        for _ in range(2):
            make_due(task.pk)
            engine.fail(worker_id=WORKER, outcomes=[outcome(claim_one(), error="e")])
    else:
        engine.cancel(task.pk)
    assert fresh(task).status == final
    returned = engine.retry(task.pk, reason="try again")
    assert returned.status == Status.QUEUED
    stored = fresh(task)
    assert stored.status == Status.QUEUED
    assert stored.retry_count == 0
    assert (stored.finished_at, stored.cancel_requested_at, stored.locked_by,
            stored.result) == (None, None, None, None)
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.details) == ("task_requeued", "queued", "try again")


@pytest.mark.parametrize("current", ["queued", "running", "succeeded"])
def test_retry_of_an_unfinished_or_succeeded_task_is_an_invalid_transition(current):
    task = enqueue()
    if current != "queued":
        c = claim_one()
        if current == "succeeded":
            engine.complete(worker_id=WORKER, outcomes=[outcome(c)])
    n = len(events(task.pk))
    with pytest.raises(InvalidTransition, match=f"Cannot retry task {task.pk}: it is {current}"):
        engine.retry(task.pk)
    assert fresh(task).status == current
    assert len(events(task.pk)) == n


# --- cancel_many / retry_many --------------------------------------------------------


def test_cancel_many_reports_done_and_skipped():
    enqueue(), enqueue()
    c_running, c_done = engine.claim(worker_id=WORKER, limit=2)
    queued = enqueue()
    engine.complete(worker_id=WORKER, outcomes=[outcome(c_done)])
    result = engine.cancel_many([queued.pk, c_running.id, c_done.id, 424242], reason="bulk")
    assert sorted(result.done) == sorted([queued.pk, c_running.id])
    assert result.skipped == {c_done.id: "already succeeded", 424242: "not found"}
    assert fresh(queued).status == Status.CANCELLED
    assert fresh(c_running.id).cancel_requested_at is not None
    assert last_history(c_running.id).event_type == "cancel_requested"
    assert fresh(c_done.id).status == Status.SUCCEEDED


def test_retry_many_reports_done_and_skipped():
    failed, cancelled, queued = enqueue(max_retries=0), enqueue(), enqueue()
    engine.fail(worker_id=WORKER, outcomes=[outcome(claim_one(), error="e")])
    engine.cancel(cancelled.pk)
    result = engine.retry_many([failed.pk, cancelled.pk, queued.pk, 31337])
    assert sorted(result.done) == sorted([failed.pk, cancelled.pk])
    assert result.skipped == {queued.pk: "already queued", 31337: "not found"}
    assert fresh(failed).status == fresh(cancelled).status == Status.QUEUED
    assert last_history(failed.pk).event_type == "task_requeued"
    assert events(queued.pk) == ["task_queued"]


# --- heartbeat -----------------------------------------------------------------------


def test_heartbeat_renews_leases_and_reports_cancel_requests():
    mine = [enqueue().pk for _ in range(2)]
    theirs = enqueue().pk
    assert set(claim_ids(WORKER, limit=2)) == set(mine)
    assert claim_ids(OTHER_WORKER) == [theirs]
    engine.cancel(mine[1])
    for task_id in (*mine, theirs):
        expire_lease(task_id)
    n = TaskHistory.objects.count()

    beat = engine.heartbeat(worker_id=WORKER, lease_seconds=90)
    assert beat.held == set(mine)
    assert beat.cancel_requested == {mine[1]}
    assert beat.registered is False  # no Worker row yet
    now = db_now()
    for task_id in mine:
        assert fresh(task_id).locked_until == now + datetime.timedelta(seconds=90)
    assert fresh(theirs).locked_until < now  # someone else's lease is not touched
    assert TaskHistory.objects.count() == n  # bookkeeping, not a state change
    assert engine.cancel_requested_ids(worker_id=WORKER) == {mine[1]}


def test_heartbeat_updates_the_worker_row():
    engine.register_worker(worker_id=WORKER, hostname="host-a", pid=101, queues=["a"],
                           concurrency=4)
    sql("UPDATE task_workers SET last_seen = now() - interval '1 hour'")
    beat = engine.heartbeat(worker_id=WORKER)
    assert beat.registered is True
    assert beat.held == set()
    assert Worker.objects.get(pk=WORKER).last_seen == db_now()


# --- rescue and reap -------------------------------------------------------------------


def test_rescue_requeues_an_expired_lease_naming_the_lost_worker():
    task = enqueue(max_retries=2)
    claim_one(WORKER)
    assert engine.rescue_expired() == {}  # the lease is still valid
    expire_lease(task.pk)
    assert engine.rescue_expired() == {task.pk: Status.RETRYING}
    stored = fresh(task)
    assert stored.status == Status.RETRYING
    assert stored.retry_count == 1
    assert stored.locked_by is None and stored.locked_until is None
    assert WORKER in stored.last_error
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id, h.attempt) == (
        "lease_expired", "retrying", WORKER, 1)
    assert f"worker {WORKER} lost" in h.details and "requeued" in h.details
    # Due after the backoff, like a failed run; then another worker picks it up.
    assert stored.run_at > db_now()
    make_due(task.pk)
    assert claim_one(OTHER_WORKER).attempt == 2


def test_rescue_fails_an_expired_task_with_no_retries_left():
    task = enqueue(max_retries=0)
    claim_one()
    expire_lease(task.pk)
    assert engine.rescue_expired() == {task.pk: Status.FAILED}
    stored = fresh(task)
    assert stored.status == Status.FAILED
    assert stored.finished_at is not None
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id) == ("lease_expired", "failed", WORKER)
    assert "no retries left" in h.details


def test_rescue_cancels_an_expired_task_whose_cancel_was_requested():
    task = enqueue(max_retries=3)
    claim_one()
    engine.cancel(task.pk)
    expire_lease(task.pk)
    assert engine.rescue_expired() == {task.pk: Status.CANCELLED}
    stored = fresh(task)
    assert stored.status == Status.CANCELLED
    assert stored.retry_count == 0
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id) == ("lease_expired", "cancelled", WORKER)
    assert "cancelled as requested" in h.details


def test_rescue_leaves_other_tasks_alone():
    queued = enqueue()
    running = enqueue()
    done = enqueue()
    c_run, c_done = engine.claim(worker_id=WORKER, limit=2)
    engine.complete(worker_id=WORKER, outcomes=[outcome(c_done)])
    expire_lease(c_done.id)
    before = {t.pk: (t.status, t.updated_at) for t in Task.objects.all()}
    assert engine.rescue_expired() == {}
    assert {t.pk: (t.status, t.updated_at) for t in Task.objects.all()} == before
    assert {queued.pk, running.pk, done.pk} == set(before)


def test_rescue_respects_its_limit():
    for _ in range(3):
        enqueue()
    for task_id in claim_ids(limit=3):
        expire_lease(task_id)
    assert len(engine.rescue_expired(limit=2)) == 2
    assert len(engine.rescue_expired(limit=2)) == 1


@pytest.mark.django_db(transaction=True)
def test_rescue_skips_a_task_another_session_holds_and_takes_it_once_free():
    task = enqueue()
    claim_one()
    expire_lease(task.pk)
    with psycopg.connect(**connect_kwargs()) as other:  # e.g. another rescuer mid-batch
        other.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", [task.pk])
        assert engine.rescue_expired() == {}
        assert fresh(task).status == Status.RUNNING
        assert "lease_expired" not in events(task.pk)
        other.rollback()
    assert engine.rescue_expired() == {task.pk: Status.RETRYING}


def test_reap_deletes_stale_worker_rows():
    engine.register_worker(worker_id="gone:1:x", hostname="gone", pid=1, queues=[],
                           concurrency=1)
    engine.register_worker(worker_id="alive:2:y", hostname="alive", pid=2, queues=["a"],
                           concurrency=2)
    sql("UPDATE task_workers SET last_seen = now() - interval '10 minutes' "
        "WHERE id = 'gone:1:x'")
    assert engine.reap_workers(window=60) == ["gone:1:x"]
    assert list(Worker.objects.values_list("id", flat=True)) == ["alive:2:y"]


def test_unregister_worker_removes_its_row():
    engine.register_worker(worker_id=WORKER, hostname="h", pid=1, queues=[], concurrency=1)
    engine.unregister_worker(worker_id=WORKER)
    assert not Worker.objects.exists()


# --- get -----------------------------------------------------------------------------


def test_get_returns_the_task():
    task = enqueue(name="findme")
    assert engine.get(task.pk).name == "findme"
    assert engine.get(str(task.pk)).pk == task.pk


@pytest.mark.parametrize("bad", [0, 987654321, "abc", "", None, "1.5", 2**70, [1]])
def test_get_of_an_unknown_or_malformed_id_raises_task_not_found(bad):
    with pytest.raises(TaskNotFound) as excinfo:
        engine.get(bad)
    assert excinfo.value.task_id == bad


# --- the lifecycle in one story ------------------------------------------------------


def test_history_tells_the_whole_story():
    task = enqueue(max_retries=1)
    engine.fail(worker_id=WORKER, outcomes=[outcome(claim_one(), error="first try")])
    make_due(task.pk)
    c = claim_one(OTHER_WORKER)
    engine.complete(worker_id=OTHER_WORKER, outcomes=[outcome(c, result="ok")])
    history = list(TaskHistory.objects.filter(task_id=task.pk).order_by("id"))
    assert [(h.event_type, h.status, h.attempt, h.worker_id) for h in history] == [
        ("task_queued", "queued", 0, ""),
        ("task_started", "running", 1, WORKER),
        ("retry_scheduled", "retrying", 1, WORKER),
        ("task_started", "running", 2, OTHER_WORKER),
        ("task_succeeded", "succeeded", 2, OTHER_WORKER),
    ]
    assert connection.vendor == "postgresql"


# --- guards against input PostgreSQL cannot store -------------------------------------


@pytest.mark.parametrize("spec, field", [({"name": "a\x00b"}, "name"),
                                         ({"idempotency_key": "k\x00"}, "idempotency_key")])
def test_enqueue_rejects_nul_characters_in_text_fields(spec, field, counts):
    with pytest.raises(InvalidTask) as excinfo:
        enqueue(**spec)
    assert field in excinfo.value.errors
    assert counts() == (0, 0)


def test_enqueue_accepts_the_literal_text_backslash_u0000():
    task = enqueue(payload={"text": "escape it as \\u0000 in JSON"})
    assert fresh(task).payload == {"text": "escape it as \\u0000 in JSON"}


def test_complete_with_a_result_containing_nul_still_completes():
    a, b = enqueue(), enqueue()
    ca, cb = engine.claim(worker_id=WORKER, limit=2)
    applied = engine.complete(worker_id=WORKER, outcomes=[
        outcome(ca, result={"text": "a\x00b"}), outcome(cb, result="fine")])
    assert applied == {a.pk, b.pk}
    assert fresh(a).status == Status.SUCCEEDED
    assert fresh(b).result == "fine"


def test_cancel_many_reports_a_malformed_id_as_not_found():
    task = enqueue()
    result = engine.cancel_many([task.pk, "abc"])
    assert result.done == [task.pk]
    assert result.skipped == {"abc": "not found"}


def test_get_of_a_fractional_id_is_not_found():
    task = enqueue()
    with pytest.raises(TaskNotFound):
        engine.get(task.pk + 0.5)


@pytest.mark.django_db(transaction=True)
def test_concurrent_enqueues_with_one_idempotency_key_make_one_task():
    barrier = threading.Barrier(4)
    ids: list[int] = []
    created: list[bool] = []
    failures: list[BaseException] = []

    def work(i: int) -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait(timeout=10)
            task = enqueue(name="racer", idempotency_key="the-one")
            ids.append(task.pk)
            created.append(task.was_created)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not failures
    assert len(set(ids)) == 1 and len(ids) == 4
    assert sorted(created) == [False, False, False, True]
    assert Task.objects.count() == 1
    assert TaskHistory.objects.count() == 1


# --- next_due_in (how long an idle worker may sleep) ----------------------------------


def test_next_due_in():
    assert engine.next_due_in() is None
    later = enqueue(queue="a", run_at=db_now() + datetime.timedelta(seconds=60))
    assert engine.next_due_in() == pytest.approx(60.0)
    assert engine.next_due_in(["a"]) == pytest.approx(60.0)
    assert engine.next_due_in(["b"]) is None
    enqueue(queue="b", run_at=db_now() - datetime.timedelta(seconds=5))
    assert engine.next_due_in() == 0.0  # overdue counts as due now, never negative
    assert engine.next_due_in(["b"]) == 0.0
    claim_ids(queues=["b"])
    assert engine.next_due_in() == pytest.approx(60.0)  # running tasks are not waiting
    assert fresh(later).status == Status.QUEUED


def test_enqueue_many_returns_stored_tasks():
    tasks = engine.enqueue_many([
        {"name": "a", "type": "send_email", "payload": {"to": "x@example.com", "subject": "s",
                                                        "body": "b"}},
        {"name": "b", "type": "count", "queue": "q", "priority": 3, "max_retries": 0,
         "timeout_seconds": 9},
    ])
    assert tasks[0].payload == {"to": ["x@example.com"], "subject": "s", "body": "b"}
    stored = fresh(tasks[1])
    assert (stored.queue, stored.priority, stored.max_retries, stored.timeout_seconds,
            stored.status) == ("q", 3, 0, 9, Status.QUEUED)
    assert (tasks[1].queue, tasks[1].priority, tasks[1].status) == ("q", 3, Status.QUEUED)


def test_a_large_batch_is_stored_as_a_small_one_is():
    """From COPY_MIN_TASKS keyless tasks on, a batch is copied in: the same rows, history
    and returned tasks as the statement that stores small batches."""
    later = timezone.now() + datetime.timedelta(hours=2)
    user = get_user_model().objects.create(username="bulk-owner")

    def batch(n):
        return [{"name": f"t{i}", "type": "count", "payload": {"i": i, "s": "é"},
                 "priority": i % 5, "queue": "q" if i % 2 else "default",
                 "run_at": later if i == 1 else None, "max_retries": i % 4,
                 "timeout_seconds": 30 + i} for i in range(n)]

    small = engine.enqueue_many(batch(3), owner=user, origin="api")
    large = engine.enqueue_many(batch(COPY_MIN_TASKS), owner=user, origin="api")
    fields = [f.attname for f in Task._meta.concrete_fields if f.attname != "id"]
    for tasks in (small, large):
        assert [t.name for t in tasks] == [f"t{i}" for i in range(len(tasks))]
        assert [t.pk for t in tasks] == sorted(t.pk for t in tasks)
        for t in tasks:
            stored = fresh(t)
            assert {f: getattr(t, f) for f in fields} == {f: getattr(stored, f)
                                                          for f in fields}
            assert t.was_created and t.parent_ids == []
        assert tasks[1].run_at == later and tasks[2].run_at == tasks[2].created_at
        assert {(h.status, h.event_type) for t in tasks for h in fresh(t).history.all()} == {
            ("queued", "task_queued")}
    assert (large[0].owner_id, large[0].origin) == (user.pk, "api")
    assert TaskHistory.objects.count() == 3 + COPY_MIN_TASKS


def test_a_large_batch_in_a_rolled_back_transaction_leaves_nothing(counts):
    specs = [{"name": f"t{i}", "type": "count"} for i in range(COPY_MIN_TASKS * 2)]
    with pytest.raises(RuntimeError), transaction.atomic():
        assert len(engine.enqueue_many(specs)) == len(specs)
        raise RuntimeError("the caller's work failed")
    assert counts() == (0, 0)
    # And one bad task refuses a large batch before anything is written.
    with pytest.raises(InvalidTask) as excinfo:
        engine.enqueue_many([*specs, {"name": "x", "type": "count", "priority": "high"}])
    assert set(excinfo.value.errors) == {str(len(specs))}
    assert counts() == (0, 0)
    # Bad tasks early and late: each is named, and what was copied before them is undone.
    bad = [dict(s) for s in specs]
    bad[3]["name"], bad[-1]["timeout_seconds"] = "", 0
    with pytest.raises(InvalidTask) as excinfo:
        engine.enqueue_many(bad)
    assert excinfo.value.errors == {"3": {"name": ["Required: a non-empty string."]},
                                    str(len(bad) - 1): {"timeout_seconds": [
                                        "Must be between 1 and 604800, got 0."]}}
    assert counts() == (0, 0)


def test_deleting_a_task_deletes_its_history():
    task = enqueue()
    claim_one()
    Task.objects.filter(pk=task.pk).delete()
    assert not TaskHistory.objects.exists()


def test_a_run_ending_with_unstorable_or_huge_error_text_is_still_recorded():
    """A plugin's exception text may hold NUL, unpaired surrogates or megabytes."""
    enqueue(name="bad text", max_retries=0)
    enqueue(name="huge text", max_retries=0)
    first, second = engine.claim(worker_id=WORKER, limit=2)
    huge = "RuntimeError: " + "x" * 1_000_000 + " the end"
    applied = engine.fail(worker_id=WORKER, outcomes=[
        outcome(first, error="RuntimeError: a\udcff b\x00 c"),
        outcome(second, error=huge)])
    assert applied == {first.id: "failed", second.id: "failed"}
    bad = Task.objects.get(pk=first.id)
    assert bad.last_error == "RuntimeError: a\ufffd b\ufffd c"
    long = Task.objects.get(pk=second.id)
    assert len(long.last_error) <= 8000
    assert long.last_error.startswith("RuntimeError: xxx") and long.last_error.endswith(
        "the end")
    assert "characters cut" in long.last_error


@pytest.mark.parametrize(("asked", "retry_count", "max_retries", "expected"), [
    (False, 0, 3, "retrying"), (False, 2, 3, "retrying"), (False, 3, 3, "failed"),
    (False, 0, 0, "failed"), (True, 0, 3, "cancelled"), (True, 3, 3, "cancelled"),
])
def test_the_after_failure_rule_exists_once_in_the_database(asked, retry_count, max_retries,
                                                            expected):
    """fail_runs and rescue_expired both call this function (tasks/engine/queries.sql)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT task_status_after_failure(CASE WHEN %s THEN now() END, %s, %s)",
                       [asked, retry_count, max_retries])
        assert cursor.fetchone()[0] == expected
    from tasks.engine.sql import QUERIES

    for name in ("fail_runs", "rescue_expired"):
        assert "task_status_after_failure(" in QUERIES[name]
        assert "retry_count < t.max_retries" not in QUERIES[name]


def test_a_claim_takes_only_the_types_asked_for_and_skips_the_ids_given():
    plain, odd, other = (enqueue(name=n) for n in ("plain", "odd", "other"))
    # Type names travel as one array literal: quotes, backslashes, commas and braces too.
    Task.objects.filter(pk=odd.pk).update(type='we"ird\\,{type} NULL')
    Task.objects.filter(pk=other.pk).update(type="other")
    assert claim_ids(types=['we"ird\\,{type} NULL']) == [odd.pk]
    assert claim_ids(types=["count", "other"], skip=[plain.pk]) == [other.pk]
    assert claim_ids(types=[]) == []
    assert claim_ids(types=None) == [plain.pk]
