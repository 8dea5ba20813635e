"""NOTIFY rides in the same transaction as the change it announces, one per statement.

A separate psycopg connection LISTENs on the queue's channel, as a worker does. To prove
that *nothing* was sent, each test ends its action with a committed sentinel event and
reads everything that arrived before it: NOTIFYs are delivered in commit order.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import transaction

from tasks import engine
from tasks.exceptions import InvalidTask
from tasks.listener import connect_kwargs
from tasks.models import Task
from tests.integration.conftest import WORKER, enqueue, expire_lease, outcome, until_sentinel

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def pending(self, timeout: float = 0.2) -> list[dict]:
        """Whatever arrives within `timeout` (used to show nothing came before a commit)."""
        return [json.loads(n.payload) for n in self.conn.notifies(timeout=timeout)]

    def until_sentinel(self, timeout: float = 10.0) -> list[dict]:
        """Send a committed sentinel and return the events received before it."""
        return until_sentinel(self.conn, timeout)


@pytest.fixture
def listener():
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        conn.execute(f'LISTEN "{engine.CHANNEL}"')
        yield Listener(conn)


def test_a_rolled_back_enqueue_leaves_no_task_and_sends_nothing(listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(name="ghost")
        engine.enqueue_many([{"name": "ghost2", "type": "count"}])
        raise RuntimeError("the caller's transaction fails")
    assert not Task.objects.exists()
    assert listener.until_sentinel() == []


def test_a_committed_enqueue_sends_one_event_when_it_commits(listener):
    with transaction.atomic():
        task = enqueue(name="real", queue="mail", type="count")
        # Not committed yet: nobody has been told.
        assert listener.pending(timeout=0.3) == []
    events = listener.until_sentinel()
    assert events == [{"event": "task_queued", "count": 1, "ids": [task.pk], "queue": "mail",
                       "type": "count"}]
    # By the time the event arrives the task is visible to another session.
    row = listener.conn.execute("SELECT status FROM tasks WHERE id = %s", [task.pk]).fetchone()
    assert row == ("queued",)


def test_an_autocommit_enqueue_sends_one_event(listener):
    task = enqueue()
    assert [(e["event"], e["ids"]) for e in listener.until_sentinel()] == [
        ("task_queued", [task.pk])]


def test_an_existing_idempotency_key_or_an_invalid_task_sends_nothing(listener):
    enqueue(idempotency_key="once")
    listener.until_sentinel()
    again = enqueue(idempotency_key="once")
    assert again.was_created is False
    with pytest.raises(InvalidTask, match="name"):
        enqueue(name="")
    assert listener.until_sentinel() == []


def test_enqueue_many_sends_one_coalesced_event(listener):
    tasks = engine.enqueue_many([{"name": f"t{i}", "type": "count"} for i in range(500)])
    events = listener.until_sentinel()
    assert len(events) == 1
    event = events[0]
    assert (event["event"], event["count"]) == ("task_queued", 500)
    # At most 100 ids ride along (a NOTIFY payload is limited to 8000 bytes).
    assert event["ids"] == sorted(t.pk for t in tasks)[: engine.NOTIFY_MAX_IDS]


def test_claim_and_complete_of_a_batch_send_one_event_each(listener):
    engine.enqueue_many([{"name": f"t{i}", "type": "count"} for i in range(50)])
    listener.until_sentinel()
    claimed = engine.claim(worker_id=WORKER, limit=50)
    assert len(claimed) == 50
    started = listener.until_sentinel()
    assert [(e["event"], e["count"], e["worker"]) for e in started] == [
        ("task_started", 50, WORKER)]
    assert started[0]["ids"] == sorted(c.id for c in claimed)

    engine.complete(worker_id=WORKER, outcomes=[outcome(c, result=None) for c in claimed])
    done = listener.until_sentinel()
    assert [(e["event"], e["count"], e["worker"]) for e in done] == [
        ("task_succeeded", 50, WORKER)]


def test_an_empty_claim_or_a_fenced_out_completion_sends_nothing(listener):
    assert engine.claim(worker_id=WORKER, limit=10) == []
    task = enqueue()
    claimed = engine.claim(worker_id=WORKER, limit=1)
    listener.until_sentinel()
    assert engine.complete(worker_id="someone-else", outcomes=[outcome(claimed[0])]) == set()
    assert listener.until_sentinel() == []
    assert task.pk == claimed[0].id


def test_a_mixed_fail_sends_one_event_per_kind(listener):
    for retries in (3, 3, 0):
        enqueue(max_retries=retries)
    claimed = engine.claim(worker_id=WORKER, limit=3)
    listener.until_sentinel()
    result = engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="e") for c in claimed])
    events = {e["event"]: e for e in listener.until_sentinel()}
    assert set(events) == {"retry_scheduled", "task_failed"}
    assert events["retry_scheduled"]["count"] == 2
    assert events["task_failed"]["count"] == 1
    assert sorted(events["retry_scheduled"]["ids"] + events["task_failed"]["ids"]) == sorted(
        result)


def test_bulk_cancel_and_retry_of_a_mix_send_one_event_per_kind_of_change(listener):
    running, asked, done, failed = enqueue(), enqueue(), enqueue(), enqueue(max_retries=0)
    c_running, c_asked, c_done, c_failed = engine.claim(worker_id=WORKER, limit=4)
    engine.cancel(c_asked.id)
    engine.complete(worker_id=WORKER, outcomes=[outcome(c_done)])
    engine.fail(worker_id=WORKER, outcomes=[outcome(c_failed, error="boom")])
    waiting, waiting2 = enqueue(), enqueue()
    listener.until_sentinel()

    ids = [done.pk, waiting.pk, running.pk, 424242, asked.pk, failed.pk, "x", waiting2.pk]
    result = engine.cancel_many(ids, reason="bulk")
    assert result.done == [waiting.pk, running.pk, asked.pk, waiting2.pk]
    assert result.skipped == {done.pk: "already succeeded", 424242: "not found",
                              failed.pk: "already failed", "x": "not found"}
    events = sorted(listener.until_sentinel(), key=lambda e: e["event"])
    assert events == [
        {"event": "cancel_requested", "count": 2, "ids": sorted([running.pk, asked.pk])},
        {"event": "task_cancelled", "count": 2, "ids": sorted([waiting.pk, waiting2.pk])}]

    result = engine.retry_many([failed.pk, running.pk, 424242, waiting.pk, done.pk])
    assert result.done == [failed.pk, waiting.pk]
    assert result.skipped == {running.pk: "already running", 424242: "not found",
                              done.pk: "already succeeded"}
    assert listener.until_sentinel() == [
        {"event": "task_requeued", "count": 2, "ids": sorted([failed.pk, waiting.pk])}]


def test_person_actions_and_the_rescuer_send_their_events(listener):
    running, waiting, lost = enqueue(), enqueue(), enqueue()
    engine.claim(worker_id=WORKER, limit=1)  # `running` (FIFO)
    listener.until_sentinel()

    engine.cancel(running.pk)
    assert listener.until_sentinel() == [
        {"event": "cancel_requested", "count": 1, "ids": [running.pk], "worker": WORKER}]

    result = engine.cancel_many([waiting.pk, lost.pk])
    assert sorted(result.done) == sorted([waiting.pk, lost.pk])
    events = listener.until_sentinel()
    assert [(e["event"], sorted(e["ids"])) for e in events] == [
        ("task_cancelled", sorted([waiting.pk, lost.pk]))]

    engine.retry(lost.pk)
    assert [(e["event"], e["ids"]) for e in listener.until_sentinel()] == [
        ("task_requeued", [lost.pk])]

    engine.claim(worker_id=WORKER, limit=1)
    expire_lease(lost.pk)
    listener.until_sentinel()
    assert engine.rescue_expired() == {lost.pk: "retrying"}
    assert [(e["event"], e["ids"]) for e in listener.until_sentinel()] == [
        ("lease_expired", [lost.pk])]
    # lease_expired wakes idle workers: the task is due again.
    assert "lease_expired" in engine.WAKE_EVENTS


def test_worker_online_and_offline_events(listener):
    engine.register_worker(worker_id=WORKER, hostname="h", pid=1, queues=[], concurrency=1)
    engine.unregister_worker(worker_id=WORKER)
    assert [(e["event"], e["worker"]) for e in listener.until_sentinel()] == [
        ("worker_online", WORKER), ("worker_offline", WORKER)]
