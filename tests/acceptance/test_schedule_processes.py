"""Schedules fired by the elected maintainer of real `runworker` processes: each tick once,
whoever leads, and through the leader's kill -9."""

from __future__ import annotations

import datetime
import signal
import time
from collections import Counter

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from tasks import engine
from tasks.listener import connect_kwargs
from tasks.models import Schedule, Task, TaskHistory, Worker
from tests.support.processes import wait_until

pytestmark = pytest.mark.process

FAST = {"TASKS_SCHEDULE_INTERVAL": "0.2", "TASKS_MAINTAINER_ELECTION_INTERVAL": "0.2"}


def start_workers(worker_factory, n: int) -> list:
    procs = [worker_factory("--concurrency", "4", **FAST) for _ in range(n)]
    wait_until(lambda: Worker.objects.count() == n, timeout=30, message="workers not up")
    return procs


def leader_pid() -> int | None:
    """The process id of the worker whose maintainer holds the leader lock."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT a.application_name FROM pg_locks l
            JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND a.application_name LIKE 'taskservice maintainer %%'""")
        row = cursor.fetchone()
    return int(row[0].rsplit(" ", 1)[1]) if row else None


def ticks_of(schedule: Schedule) -> list[datetime.datetime]:
    return sorted(Task.objects.filter(name=schedule.name).values_list("run_at", flat=True))


def test_an_interval_of_2s_under_three_workers_makes_10_tasks_in_20s(worker_factory):
    procs = start_workers(worker_factory, 3)
    schedule = engine.schedules.create(name="every-2s", type="simulate",
                                       payload={"duration": 0}, interval_seconds=2)
    time.sleep(20)
    engine.schedules.pause(schedule.pk)  # no tick after the 20 s, then let the last ones run
    wait_until(lambda: not Task.objects.filter(name="every-2s").exclude(
        status="succeeded").exists(), timeout=30, message="the ticks' tasks did not all run")
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=30)
    tasks = ticks_of(schedule)
    assert 9 <= len(tasks) <= 11, tasks
    assert len(set(tasks)) == len(tasks)  # no tick twice
    steps = {b - a for a, b in zip(tasks, tasks[1:], strict=False)}
    assert steps == {datetime.timedelta(seconds=2)}  # and none left out
    assert set(Task.objects.values_list("status", flat=True)) == {"succeeded"}
    first = TaskHistory.objects.filter(task__name="every-2s").order_by("id").first()
    assert first.details.startswith("scheduled by 'every-2s'")


# The columns enqueue_tick fills: the test's own uncommitted task holding one tick's key.
_HOLD_TICK = """
INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                   max_retries, timeout_seconds, attempts, last_error, idempotency_key,
                   owner_id, origin, created_at, updated_at)
VALUES ('held', 'simulate', 'queued', '{}', 0, 'default', now(), 0, 0, 60, 0, '', %s,
        NULL, 'schedule', now(), now())
"""


def blocked_by(holder_pid: int) -> tuple | None:
    """The backend waiting on the holder's lock: (has it written, its statement)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT backend_xid IS NOT NULL, query FROM pg_stat_activity "
                       "WHERE %s = ANY(pg_blocking_pids(pid))", [holder_pid])
        return cursor.fetchone()


def test_kill_9_of_the_leader_mid_tick_loses_and_doubles_nothing(worker_factory):
    """The leader is killed inside its scheduler's transaction, deterministically: the
    test holds the key of the batch's last tick in a transaction of its own, so the
    leader's batch has written the other ticks (uncommitted) and waits on that one."""
    procs = start_workers(worker_factory, 2)
    made = [engine.schedules.create(name=f"s{i}", type="simulate", payload={"duration": 0},
                                    interval_seconds=3600) for i in range(30)]
    tick = timezone.now().replace(microsecond=0) - datetime.timedelta(seconds=10)
    last = made[-1]
    pending = {s.pk: tick for s in made} | {last.pk: tick + datetime.timedelta(milliseconds=1)}
    pid = wait_until(leader_pid, timeout=10)
    (leader,) = [p for p in procs if p.pid == pid]
    with psycopg.connect(**connect_kwargs()) as holder:
        holder.execute(_HOLD_TICK, [engine.schedules.tick_key(last.pk, pending[last.pk])])
        holder_pid = holder.info.backend_pid
        # All 30 due at once, the held one last in the batch's order.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE task_schedules SET next_run_at = CASE WHEN id = %s "
                           "THEN %s ELSE %s END", [last.pk, pending[last.pk], tick])
        written, statement = wait_until(lambda: blocked_by(holder_pid), timeout=10,
                                        message="the leader's scheduler never reached the "
                                                "held tick")
        assert written and "INSERT INTO tasks" in statement  # mid-tick: ticks written
        assert not Task.objects.filter(origin="schedule").exists()  # none committed
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=10)
        wait_until(lambda: leader_pid() not in (None, pid), timeout=30,
                   message="no new leader after the kill")
        holder.rollback()  # the dead leader's backend finds its client gone and aborts
    wait_until(lambda: Task.objects.filter(origin="schedule").count() >= 30, timeout=30,
               message="the new leader did not fire the ticks")
    time.sleep(1)  # a few more passes of the new leader: none may add a task
    keys = Counter(Task.objects.values_list("idempotency_key", flat=True))
    assert max(keys.values()) == 1
    assert {name: ticks_of(s) for name, s in ((s.name, s) for s in made)} == {
        s.name: [pending[s.pk]] for s in made}
    assert not Task.objects.filter(name="held").exists()
