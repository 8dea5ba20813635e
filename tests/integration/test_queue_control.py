"""Queues an operator steers, in the engine: pause, resume, limits; the claim honours them,
each change leaves an audit row and sends an event. Real PostgreSQL, no worker processes
(tests/acceptance/test_queue_limits.py runs real workers)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.db import connection

from tasks import engine, selectors
from tasks.exceptions import InvalidInput
from tasks.listener import connect_kwargs
from tasks.models import AuditEntry, Queue, Task
from tests.integration.conftest import OTHER_WORKER, WORKER, enqueue, next_events, outcome

pytestmark = pytest.mark.django_db(transaction=True)


def claim(limit: int = 10, worker: str = WORKER, queues=None) -> list[engine.ClaimedTask]:
    return engine.claim(worker_id=worker, limit=limit, queues=queues)


def test_a_paused_queue_keeps_and_takes_tasks_but_none_is_claimed_until_resumed():
    held = enqueue(queue="mail")
    engine.pause_queue("mail", actor="alice")
    later = enqueue(queue="mail")
    other = enqueue(queue="default")
    assert [c.id for c in claim()] == [other.pk]
    assert claim(queues=["mail"]) == []
    assert set(Task.objects.filter(queue="mail").values_list("status", flat=True)) == {"queued"}
    assert engine.idle_hint() == (None, False)  # nothing to wake for: no spinning
    engine.resume_queue("mail", actor="bob")
    assert sorted(c.id for c in claim()) == sorted([held.pk, later.pk])
    audit = list(AuditEntry.objects.values_list("actor", "action", "target"))
    assert audit == [("alice", "queue_paused", "mail"), ("bob", "queue_resumed", "mail")]


def test_the_concurrency_limit_counts_running_tasks_across_workers():
    tasks = [enqueue(queue="api") for _ in range(5)]
    engine.set_queue_limits("api", concurrency_limit=2, actor="ops")
    first = claim(10)
    assert [c.id for c in first] == [tasks[0].pk, tasks[1].pk]
    assert claim(10, worker=OTHER_WORKER) == []
    due, held = engine.idle_hint()
    assert due is None and held  # wait for a finished run, not a timer
    engine.complete(worker_id=WORKER, outcomes=[outcome(first[0])])
    assert [c.id for c in claim(10, worker=OTHER_WORKER)] == [tasks[2].pk]
    engine.set_queue_limits("api", concurrency_limit=None)
    assert len(claim(10)) == 2


def test_limited_and_plain_queues_are_claimed_together():
    plain = [enqueue() for _ in range(3)]
    limited = [enqueue(queue="api") for _ in range(3)]
    engine.set_queue_limits("api", concurrency_limit=1)
    got = {c.id for c in claim(10)}
    assert got == {t.pk for t in plain} | {limited[0].pk}


def test_the_rate_limit_spends_a_token_per_start_and_says_when_the_next_is_due():
    for _ in range(5):
        enqueue(queue="slow")
    engine.set_queue_limits("slow", rate_limit=0.5)  # one start per 2 s; a bucket of 1
    assert len(claim(10)) == 1
    assert claim(10) == []
    due, held = engine.idle_hint()
    assert 1.0 < due <= 2.0 and not held


def test_two_workers_racing_never_exceed_the_concurrency_limit():
    for _ in range(20):
        enqueue(queue="api")
    engine.set_queue_limits("api", concurrency_limit=3)
    got: list[int] = []
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        from django.db import connection as own

        try:
            barrier.wait()
            for _ in range(5):
                got.extend(c.id for c in engine.claim(worker_id=name, limit=2))
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 3 == len(set(got))
    assert Task.objects.filter(status="running").count() == 3


@pytest.mark.parametrize("kwargs,field", [
    ({"concurrency_limit": 0}, "concurrency_limit"),
    ({"concurrency_limit": "2"}, "concurrency_limit"),
    ({"rate_limit": -1}, "rate_limit"),
    ({"rate_limit": float("nan")}, "rate_limit"),
    ({}, "non_field_errors"),
])
def test_bad_limits_name_the_field_and_change_nothing(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        engine.set_queue_limits("api", **kwargs)
    assert field in caught.value.errors
    assert not Queue.objects.exists() and not AuditEntry.objects.exists()


def test_a_bad_queue_name_is_refused():
    with pytest.raises(InvalidInput) as caught:
        engine.pause_queue("no spaces")
    assert "name" in caught.value.errors


def test_each_change_sends_an_event_naming_the_queue_and_who():
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        conn.execute(f'LISTEN "{engine.CHANNEL}"')
        engine.pause_queue("mail", actor="alice")
        engine.set_queue_limits("mail", rate_limit=5, actor="alice")
        received = next_events(conn, 2)
    assert [(e["event"], e["queue"], e["actor"]) for e in received] == [
        ("queue_paused", "mail", "alice"), ("queue_limits_changed", "mail", "alice")]
    assert received[1]["rate_limit"] == 5.0 and received[1]["paused"] is True


def test_the_queue_overview_shows_depth_running_age_pauses_and_limits():
    enqueue(queue="mail")
    enqueue(queue="mail", run_at=_later())
    running = enqueue(queue="api")
    assert [c.id for c in claim(1, queues=["api"])] == [running.pk]
    engine.pause_queue("mail")
    engine.set_queue_limits("idle", concurrency_limit=4)
    rows = {q["name"]: q for q in selectors.queues()}
    assert set(rows) == {"mail", "api", "idle"}
    assert rows["mail"] | {"oldest_due_age": None} == {
        "name": "mail", "due": 1, "deferred": 1, "running": 0, "oldest_due_age": None,
        "paused": True, "concurrency_limit": None, "rate_limit": None}
    assert rows["mail"]["oldest_due_age"] >= 0
    assert (rows["api"]["running"], rows["api"]["due"]) == (1, 0)
    assert rows["idle"]["concurrency_limit"] == 4 and rows["idle"]["due"] == 0


def _later():
    import datetime

    from django.utils import timezone

    return timezone.now() + datetime.timedelta(hours=1)


def test_a_resumed_queue_is_claimed_by_the_plain_claim_again():
    enqueue()
    engine.pause_queue("mail")
    engine.resume_queue("mail")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM task_queues WHERE paused OR "
                       "concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL")
        assert cursor.fetchone()[0] == 0
    assert len(claim()) == 1


def _counting_claims(monkeypatch) -> list[int]:
    """Count the claims a worker makes (a spy: each call still runs the real claim)."""
    calls: list[int] = []
    real = engine.claim

    def claim(**kwargs):
        calls.append(1)
        return real(**kwargs)

    monkeypatch.setattr(engine, "claim", claim)
    return calls


@pytest.mark.parametrize("limits", [{"concurrency_limit": 1}, {"rate_limit": 0.2}, "pause"])
def test_a_worker_held_back_sleeps_instead_of_spinning(monkeypatch, limits):
    from tasks.worker.testing import WorkerThread

    for _ in range(5):
        enqueue(queue="api", type="simulate", payload={"duration": 30})
    if limits == "pause":
        engine.pause_queue("api")
    else:
        engine.set_queue_limits("api", **limits)
    calls = _counting_claims(monkeypatch)
    with WorkerThread(concurrency=4, shutdown_grace=0) as w:
        if limits != "pause":
            w.events.wait("claimed")
        before = len(calls)
        finished = threading.Event()
        finished.wait(2.0)  # two poll intervals of a worker with 3 free slots
        during = len(calls) - before
        running = Task.objects.filter(status="running").count()
    # Held back, the worker claims on wake-ups and polls (about once a second), not in a
    # loop (thousands of claims in two seconds).
    assert during <= 6, during
    assert running == (0 if limits == "pause" else 1)
