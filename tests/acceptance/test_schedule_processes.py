"""Schedules fired by the elected maintainer of real `runworker` processes: each tick once,
whoever leads, and through the leader's kill -9."""

from __future__ import annotations

import datetime
import signal
import time
from collections import Counter

import pytest
from django.db import connection

from tasks import engine
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


def test_kill_9_of_the_leader_mid_tick_loses_and_doubles_nothing(worker_factory):
    procs = start_workers(worker_factory, 2)
    made = [engine.schedules.create(name=f"s{i}", type="simulate", payload={"duration": 0},
                                    interval_seconds=2) for i in range(30)]
    wait_until(lambda: Task.objects.count() >= 60, timeout=30)  # two ticks each
    pid = wait_until(leader_pid, timeout=10)
    (leader,) = [p for p in procs if p.pid == pid]
    # Kill it while its scheduler works through the batch of 30 (each tick takes a while).
    first = Task.objects.count()
    wait_until(lambda: Task.objects.count() > first, timeout=10, interval=0.005)
    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)
    wait_until(lambda: leader_pid() not in (None, pid), timeout=30,
               message="no new leader after the kill")
    time.sleep(5)  # ticks under the new leader
    keys = Counter(Task.objects.values_list("idempotency_key", flat=True))
    assert max(keys.values()) == 1
    for schedule in made:
        tasks = ticks_of(schedule)
        steps = {b - a for a, b in zip(tasks, tasks[1:], strict=False)}
        assert steps == {datetime.timedelta(seconds=2)}, (schedule.name, tasks)
