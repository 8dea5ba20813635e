"""The maintainer and its services against a real PostgreSQL: the leader lock and its
failover, the rescuer's backoff, the reaper, retention (pruner) and `prunetasks`."""

from __future__ import annotations

import io
import json
import threading
import time

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from tasks import engine
from tasks.listener import connect_kwargs
from tasks.maintenance import Maintainer
from tasks.maintenance.pruner import Pruner, PrunerConfig
from tasks.maintenance.reaper import Reaper, ReaperConfig
from tasks.maintenance.rescuer import Rescuer, RescuerConfig
from tasks.maintenance.service import Service, ServiceConfig
from tasks.models import Status, Task, TaskHistory, Worker
from tests.integration.conftest import (
    WORKER,
    db_now,
    enqueue,
    events,
    expire_lease,
    last_history,
    make_due,
    outcome,
    sql,
)
from tests.support.processes import wait_until

TEST_LOCK = 0x7465737431  # not the production key: a stray maintainer cannot interfere


def engine_settings(**values):
    return override_settings(TASKS_ENGINE={**settings.TASKS_ENGINE, **values})


def make_finished(n: int, status: str = "succeeded", ago: str = "1 hour",
                  history: int = 3) -> list[int]:
    """`n` tasks that finished `ago`, with `history` rows each, written directly (setup)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH t AS (
                   INSERT INTO tasks (name, type, status, payload, priority, queue, run_at,
                       retry_count, max_retries, timeout_seconds, attempts, last_error,
                       created_at, updated_at, started_at, finished_at)
                   SELECT 'old ' || g, 'count', %(status)s, '{}', 0, 'default', now(), 0, 3,
                          300, 1, '', now() - %(ago)s::interval - interval '1 minute',
                          now() - %(ago)s::interval, now() - %(ago)s::interval,
                          now() - %(ago)s::interval
                   FROM generate_series(1, %(n)s) g RETURNING id
               ), h AS (
                   INSERT INTO task_history (task_id, status, event_type, attempt, worker_id,
                                             details, created_at)
                   SELECT t.id, %(status)s, 'task_queued', 1, '', '', now()
                   FROM t, generate_series(1, %(history)s)
               )
               SELECT id FROM t ORDER BY id""",
            {"status": status, "ago": ago, "n": n, "history": history})
        return [r[0] for r in cursor.fetchall()]


def history_count(ids) -> int:
    return TaskHistory.objects.filter(task_id__in=list(ids)).count()


def lock_holder(key: int = TEST_LOCK) -> int | None:
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND ((classid::bigint << 32) | objid::bigint) = %s", [key]).fetchone()
    return row[0] if row else None


@pytest.fixture
def maintainers():
    started: list[Maintainer] = []

    def make(services=(), **kwargs) -> Maintainer:
        m = Maintainer(list(services), election_interval=kwargs.pop("election_interval", 0.1),
                       lock_key=TEST_LOCK, **kwargs)
        started.append(m)
        m.start()
        return m

    yield make
    for m in started:
        m.stop()


# --- the leader lock ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_maintainer_leads_and_the_other_takes_over_when_it_stops(maintainers):
    first = maintainers(name="first")
    assert first.leading.wait(5)
    second = maintainers(name="second")
    time.sleep(0.5)  # five election rounds
    assert not second.leading.is_set()
    first.stop()
    assert not first.leading.is_set()
    assert second.leading.wait(5)
    assert lock_holder() is not None


@pytest.mark.django_db(transaction=True)
def test_a_leader_whose_session_dies_is_replaced_and_follows_after_reconnecting(maintainers):
    first = maintainers(name="first")
    assert first.leading.wait(5)
    second = maintainers(name="second")
    old = lock_holder()
    with psycopg.connect(autocommit=True, **connect_kwargs()) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [old])  # as if the leader died
    assert second.leading.wait(5)
    wait_until(lambda: not first.leading.is_set(), timeout=5)
    assert lock_holder() != old
    time.sleep(0.5)  # the old leader has reconnected by now, as a follower
    assert not first.leading.is_set() and second.leading.is_set()


@pytest.mark.django_db(transaction=True)
def test_only_the_leader_runs_services_and_stopping_frees_the_lock(maintainers):
    make_finished(3, ago="2 hours")
    with engine_settings(RETENTION_SUCCEEDED=3600, PRUNE_INTERVAL=60):
        leader = maintainers([Pruner()], name="leader")
        assert leader.leading.wait(5)
        follower_pruner = Pruner()
        follower = maintainers([follower_pruner], name="follower")
    wait_until(lambda: not Task.objects.exists(), timeout=10)
    assert follower_pruner.last.total == 0 and not follower.leading.is_set()
    leader.stop()
    follower.stop()
    assert lock_holder() is None


class Probe(Service):
    """A service that records which database session ran each batch."""

    name = "probe"

    def __init__(self):
        super().__init__(ServiceConfig(interval=0.05, batch_size=1))
        self.pids: list[int] = []

    def run_batch(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pids.append(cursor.fetchone()[0])
        return 0


@pytest.mark.django_db(transaction=True)
def test_a_service_carries_on_after_losing_its_connection():
    probe, stop = Probe(), threading.Event()
    thread = threading.Thread(target=probe.loop, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: probe.pids, timeout=5)
        first = probe.pids[0]
        with psycopg.connect(autocommit=True, **connect_kwargs()) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [first])
        wait_until(lambda: any(pid != first for pid in probe.pids), timeout=5)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


# --- rescuer -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_rescued_task_is_retried_after_the_same_backoff_as_a_failed_run():
    task = enqueue(max_retries=3)
    half = lambda: 0.5  # noqa: E731 - no jitter: delay = base * 2**retry_count
    with engine_settings(BACKOFF_BASE=100.0, BACKOFF_CAP=3600.0):
        first = engine.claim(worker_id=WORKER, limit=1)[0]
        engine.fail(worker_id=WORKER, outcomes=[outcome(first, error="boom")], rand=half)
        make_due(task.pk)
        engine.claim(worker_id=WORKER, limit=1)
        expire_lease(task.pk)
        assert Rescuer(rand=half).run_once() == 1
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.retry_count) == (Status.RETRYING, 2)
    # retry_count was 1: 100 * 2**1 seconds from now, as fail() would have scheduled.
    assert (stored.run_at - db_now()).total_seconds() == 200.0
    h = last_history(task.pk)
    assert (h.event_type, h.status, h.worker_id) == ("lease_expired", "retrying", WORKER)
    assert "retry 2 of 3 in 200.0s" in h.details
    assert engine.claim(worker_id=WORKER, limit=1) == []  # not due yet


@pytest.mark.django_db
def test_the_rescuer_works_in_batches_until_a_short_one():
    for _ in range(5):
        enqueue(max_retries=0)
    for claimed in engine.claim(worker_id=WORKER, limit=5):
        expire_lease(claimed.id)
    rescuer = Rescuer(RescuerConfig(interval=1, batch_size=2))
    assert rescuer.run_once() == 5
    assert set(Task.objects.values_list("status", flat=True)) == {Status.FAILED}
    assert rescuer.run_once() == 0


# --- reaper ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_reaper_forgets_silent_workers_with_a_worker_offline_event():
    for name in ("gone:1:a", "gone:2:b", "alive:3:c"):
        engine.register_worker(worker_id=name, hostname="h", pid=1, queues=[], concurrency=1)
    sql("UPDATE task_workers SET last_seen = now() - interval '10 minutes' "
        "WHERE id LIKE 'gone:%%'")
    with psycopg.connect(autocommit=True, **connect_kwargs()) as listen:
        listen.execute(f'LISTEN "{engine.CHANNEL}"')
        assert Reaper(ReaperConfig(interval=1, batch_size=1, window=60)).run_once() == 2
        heard = [json.loads(n.payload) for n in listen.notifies(timeout=1, stop_after=2)]
    assert list(Worker.objects.values_list("id", flat=True)) == ["alive:3:c"]
    assert sorted((e["event"], e["worker"]) for e in heard) == [
        ("worker_offline", "gone:1:a"), ("worker_offline", "gone:2:b")]


# --- retention ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_retention_prunes_50000_finished_tasks_within_two_intervals_and_keeps_the_rest(
        maintainers):
    old = make_finished(50_000, ago="1 hour")
    failed = make_finished(20, status="failed", ago="1 day")
    active = [enqueue().pk for _ in range(3)]
    engine.claim(worker_id=WORKER, limit=1)  # one of them running
    interval = 10.0
    with engine_settings(RETENTION_SUCCEEDED=1, PRUNE_INTERVAL=interval, PRUNE_BATCH_SIZE=5000):
        # Resting as long as it works (the default rests 4x as long): 10 batches of 5,000
        # fit in one interval on a busy test machine.
        leader = maintainers([Pruner(PrunerConfig.from_settings(rest=1.0))], name="pruning")
    started = time.monotonic()
    wait_until(lambda: not Task.objects.filter(status=Status.SUCCEEDED).exists(),
               timeout=2 * interval, interval=0.2)
    assert time.monotonic() - started < 2 * interval
    assert leader.leading.is_set()
    assert history_count(old) == 0
    assert set(Task.objects.values_list("pk", flat=True)) == {*failed, *active}
    assert history_count(failed) == 60
    assert all(events(pk) for pk in active)


@pytest.mark.django_db
def test_recent_tasks_and_statuses_kept_forever_stay():
    old = make_finished(4, ago="2 hours")
    recent = make_finished(2, ago="10 minutes")
    old_failed = make_finished(2, status="failed", ago="2 hours")
    pruner = Pruner(PrunerConfig(interval=1, batch_size=3, rest=0,
                                 retention={"succeeded": 3600, "failed": 0}))
    assert pruner.count().tasks == {"succeeded": 4}
    assert pruner.run_once() == 4
    assert pruner.last.history == {"succeeded": 12}
    assert set(Task.objects.values_list("pk", flat=True)) == {*recent, *old_failed}
    assert history_count(old) == 0 and history_count(recent) == 6


@pytest.mark.django_db
def test_a_task_retried_after_locking_is_not_deleted_by_the_re_check():
    ids = make_finished(3, status="failed", ago="2 hours")
    window = engine.lock_prunable(status="failed", age=3600, limit=10)
    assert (window.ids, window.scanned) == (ids, 3)
    # Retried by this same transaction (another would wait for the lock): the deleting
    # statement re-checks each task's status and age itself.
    engine.retry(ids[1], reason="a person retried it")
    batch = engine.prune_locked(window.ids, status="failed", retention={"failed": 3600})
    assert (batch.tasks, batch.history) == ({"failed": 2}, {"failed": 6})
    survivor = Task.objects.get()
    assert (survivor.pk, survivor.status) == (ids[1], Status.QUEUED)
    assert events(ids[1])[-1] == "task_requeued" and history_count([ids[1]]) == 4


@pytest.mark.django_db(transaction=True)
def test_a_task_locked_by_someone_else_is_skipped_and_taken_by_the_next_full_walk():
    ids = make_finished(3, ago="2 hours")
    pruner = Pruner(PrunerConfig(interval=1, batch_size=10, retention={"succeeded": 3600}))
    with psycopg.connect(**connect_kwargs()) as other:  # e.g. a retry in progress
        other.execute("SET lock_timeout = '5s'")
        other.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", [ids[0]])
        started = time.monotonic()
        assert pruner.run_once() == 2
        assert time.monotonic() - started < 2
        other.rollback()
    assert list(Task.objects.values_list("pk", flat=True)) == [ids[0]]
    # The next run goes on from where this one stopped, past the skipped task ...
    newer = make_finished(2, ago="90 minutes")
    assert pruner.run_once() == 2 and set(pruner.last.tasks) == {"succeeded"}
    assert list(Task.objects.values_list("pk", flat=True)) == [ids[0]]
    assert newer[0] not in Task.objects.values_list("pk", flat=True)
    # ... and the next full walk, from the oldest, takes it.
    full = Pruner(PrunerConfig(interval=1, batch_size=10, retention={"succeeded": 3600},
                               sweep=0))
    assert full.run_once() == 1 and not Task.objects.exists()


@pytest.mark.django_db
def test_a_run_reads_only_what_finished_since_the_last_and_a_sweep_reads_everything():
    make_finished(5, ago="3 hours")
    pruner = Pruner(PrunerConfig(interval=1, batch_size=2, rest=0,
                                 retention={"succeeded": 3600}))
    assert pruner.run_once() == 5
    first = pruner.position["succeeded"]
    assert pruner.run_once() == 0 and pruner.position["succeeded"] == first
    kept = make_finished(1, status="failed", ago="2 hours")  # retained: failed kept forever
    make_finished(2, ago="2 hours")
    assert pruner.run_once() == 2 and pruner.position["succeeded"] > first
    assert list(Task.objects.values_list("pk", flat=True)) == kept


@pytest.mark.django_db(transaction=True)
def test_each_batch_sends_one_tasks_pruned_event():
    make_finished(5, status="cancelled", ago="2 hours")
    pruner = Pruner(PrunerConfig(interval=1, batch_size=2, rest=0,
                                 retention={"cancelled": 60}))
    with psycopg.connect(autocommit=True, **connect_kwargs()) as listen:
        listen.execute(f'LISTEN "{engine.CHANNEL}"')
        assert pruner.run_once() == 5
        heard = [json.loads(n.payload) for n in listen.notifies(timeout=1, stop_after=3)]
    assert [(e["event"], e["status"], e["count"], e["history"], len(e["ids"]))
            for e in heard] == [("tasks_pruned", "cancelled", 2, 6, 2),
                                ("tasks_pruned", "cancelled", 2, 6, 2),
                                ("tasks_pruned", "cancelled", 1, 3, 1)]


# --- prunetasks --------------------------------------------------------------------------


def prunetasks(*args: str) -> str:
    out = io.StringIO()
    call_command("prunetasks", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_prunetasks_dry_run_counts_and_deletes_nothing():
    make_finished(3, ago="3 days")
    make_finished(2, status="failed", ago="3 days", history=5)
    make_finished(1, ago="1 hour")
    out = prunetasks("--dry-run", "--older-than", "2d")
    assert "succeeded: would delete 3 task(s) and 9 history row(s)" in out
    assert "failed: would delete 2 task(s) and 10 history row(s)" in out
    assert "cancelled: would delete 0 task(s)" in out
    assert "total: would delete 5 task(s) (dry run: nothing was deleted)" in out
    assert Task.objects.count() == 6 and TaskHistory.objects.count() == 22


@pytest.mark.django_db
def test_prunetasks_deletes_the_chosen_statuses_past_the_given_age():
    make_finished(3, ago="3 days")
    kept_failed = make_finished(2, status="failed", ago="3 days")
    kept_recent = make_finished(1, ago="1 hour")
    out = prunetasks("--older-than", "48h", "--status", "succeeded")
    assert "succeeded: deleted 3 task(s) and 9 history row(s), finished more than 2d ago" in out
    assert "failed" not in out
    assert set(Task.objects.values_list("pk", flat=True)) == {*kept_failed, *kept_recent}


@pytest.mark.django_db
def test_prunetasks_uses_the_configured_retention_and_names_what_is_kept_forever():
    make_finished(2, ago="8 days")
    make_finished(2, status="cancelled", ago="60 days")
    with engine_settings(RETENTION_CANCELLED=0):
        out = prunetasks()
    assert "succeeded: deleted 2 task(s) and 6 history row(s), finished more than 7d ago" in out
    assert "cancelled: kept forever (its retention is 0)" in out
    assert set(Task.objects.values_list("status", flat=True)) == {Status.CANCELLED}


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (["--older-than", "soon"], "--older-than must be a positive duration"),
    (["--older-than", "0"], "--older-than must be a positive duration"),
    (["--older-than=-3d"], "--older-than must be a positive duration"),
    (["--older-than", "3y"], "--older-than must be a positive duration"),
    (["--status", "running"], "--status must be one of succeeded, failed, cancelled"),
])
def test_prunetasks_bad_arguments_are_a_command_error_and_change_nothing(args, message):
    make_finished(2, ago="60 days")
    with pytest.raises(CommandError, match=message):
        prunetasks(*args)
    assert Task.objects.count() == 2 and TaskHistory.objects.count() == 6


def test_the_default_services_are_built_from_the_settings(settings):
    settings.TASKS_ENGINE = {**settings.TASKS_ENGINE, "RESCUE_INTERVAL": 2.0,
                             "REAP_INTERVAL": 3.0, "PRUNE_INTERVAL": 4.0,
                             "SCHEDULE_INTERVAL": 0.5}
    from tasks.maintenance.maintainer import default_services

    assert [(s.name, s.config.interval) for s in default_services()] == [
        ("rescuer", 2.0), ("reaper", 3.0), ("pruner", 4.0), ("scheduler", 0.5)]
