"""The worker as a process: real `manage.py runworker` children against the test database."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from django.db import connection, transaction

from tasks import engine
from tasks.models import Task, TaskHistory
from tasks.models import Worker as WorkerRow
from tests.support.processes import wait_until

pytestmark = pytest.mark.process

# Short leases and intervals so recovery happens in seconds, not minutes.
FAST = {
    "TASKS_LEASE_SECONDS": "2",
    "TASKS_HEARTBEAT_INTERVAL": "0.5",
    "TASKS_RESCUE_INTERVAL": "0.5",
    "TASKS_MAINTAINER_ELECTION_INTERVAL": "0.2",
    "TASKS_BACKOFF_BASE": "0.1",
    "TASKS_BACKOFF_CAP": "0.5",
}


@pytest.fixture
def count_file(tmp_path):
    path = tmp_path / "runs.txt"
    path.touch()
    return path


def runs(path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def status(task) -> str:
    return Task.objects.get(pk=task.pk).status


def events(task) -> list[str]:
    return list(TaskHistory.objects.filter(task_id=task.pk).order_by("id")
                .values_list("event_type", flat=True))


def running_on(task, worker_id: str) -> bool:
    t = Task.objects.get(pk=task.pk)
    return t.status == "running" and t.locked_by == worker_id


def listening() -> bool:
    """Some session of this database has run LISTEN (a worker's listener is in place)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND query LIKE 'LISTEN%%'")
        return cursor.fetchone()[0] > 0


def test_four_workers_drain_2000_tasks_each_exactly_once(worker_factory, count_file):
    procs = [worker_factory("--concurrency", "8", COUNT_FILE=str(count_file))
             for _ in range(4)]
    # All four up before the work arrives: a fast first worker would drain it alone.
    wait_until(lambda: WorkerRow.objects.count() == 4, timeout=60, message="workers not up")
    tasks = engine.enqueue_many([{"name": f"n{i}", "type": "count"} for i in range(2000)])
    wait_until(lambda: Task.objects.filter(status="succeeded").count() == 2000, timeout=90,
               message="2000 tasks did not all succeed")
    seen = Counter(task_id for task_id, _ in runs(count_file))
    assert len(seen) == 2000
    assert set(seen) == {t.pk for t in tasks}
    assert max(seen.values()) == 1, "a task ran more than once"
    # The work was shared: every worker started some of it.
    started_by = set(TaskHistory.objects.filter(event_type="task_started")
                     .values_list("worker_id", flat=True))
    assert len(started_by) == 4
    assert TaskHistory.objects.filter(event_type="task_succeeded").count() == 2000
    assert all(p.poll() is None for p in procs)


def test_kill_9_mid_task_is_recovered_by_the_rescuer(worker_factory, count_file):
    task = engine.enqueue(name="long", type="count", payload={"sleep": 60, "only_attempt": 1})
    doomed = worker_factory("--worker-id", "doomed", COUNT_FILE=str(count_file), **FAST)
    wait_until(lambda: running_on(task, "doomed"), timeout=20)
    # Claimed is not yet started: kill once the plugin has recorded its run.
    wait_until(lambda: count_file.exists() and runs(count_file), timeout=20)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    worker_factory("--worker-id", "rescuer", COUNT_FILE=str(count_file), **FAST)
    wait_until(lambda: status(task) == "succeeded", timeout=30)
    history = events(task)
    assert "lease_expired" in history
    assert history[-1] == "task_succeeded"
    lost = TaskHistory.objects.get(task_id=task.pk, event_type="lease_expired")
    assert lost.worker_id == "doomed" and "doomed lost" in lost.details
    assert runs(count_file) == [(task.pk, 1), (task.pk, 2)]
    assert Task.objects.get(pk=task.pk).locked_by is None


def test_sigterm_lets_the_running_task_finish_and_exits_0(worker_factory, count_file):
    task = engine.enqueue(name="finish me", type="count", payload={"sleep": 1.5})
    proc = worker_factory("--worker-id", "w1", COUNT_FILE=str(count_file))
    wait_until(lambda: running_on(task, "w1"), timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert status(task) == "succeeded"
    assert not Task.objects.filter(status="running").exists()
    # A clean exit removes the worker's row.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM task_workers WHERE id = 'w1'")
        assert cursor.fetchone()[0] == 0


def test_sigterm_past_the_grace_period_releases_the_task(worker_factory, count_file):
    task = engine.enqueue(name="too long", type="block", payload={"seconds": 60})
    proc = worker_factory("--worker-id", "w1", TASKS_SHUTDOWN_GRACE="1")
    wait_until(lambda: running_on(task, "w1"), timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    t = Task.objects.get(pk=task.pk)
    assert t.status == "queued" and t.locked_by is None
    assert events(task)[-1] == "task_released"


def test_a_second_signal_exits_at_once(worker_factory):
    task = engine.enqueue(name="stuck", type="block", payload={"seconds": 60})
    proc = worker_factory("--worker-id", "w1", TASKS_SHUTDOWN_GRACE="60")
    wait_until(lambda: running_on(task, "w1"), timeout=20)
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stop claiming" in proc.log_path.read_text(), timeout=10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) != 0
    # The task is left to its lease; nothing pretends it finished.
    assert status(task) == "running"


def test_timeout_retries_then_fails_even_if_the_plugin_never_returns(worker_factory):
    task = engine.enqueue(name="hangs", type="block", payload={"seconds": 3600},
                          timeout_seconds=1, max_retries=1)
    proc = worker_factory("--concurrency", "1", **FAST)
    wait_until(lambda: status(task) == "failed", timeout=20)
    assert events(task) == ["task_queued", "task_started", "retry_scheduled", "task_started",
                            "task_failed"]
    t = Task.objects.get(pk=task.pk)
    assert t.last_error == "timed out after 1s" and t.retry_count == 1 and t.attempts == 2
    # The stuck thread's slot was replaced: the single-slot worker still runs work.
    after = engine.enqueue(name="after", type="simulate", payload={"duration": 0})
    wait_until(lambda: status(after) == "succeeded", timeout=15)
    assert proc.poll() is None
    assert "its thread is abandoned" in proc.log_path.read_text()


def test_a_plugin_that_stops_on_timeout_keeps_its_thread(worker_factory, count_file):
    task = engine.enqueue(name="sleepy", type="count", payload={"sleep": 60},
                          timeout_seconds=1, max_retries=0)
    proc = worker_factory("--concurrency", "1", COUNT_FILE=str(count_file), **FAST)
    wait_until(lambda: status(task) == "failed", timeout=15)
    assert Task.objects.get(pk=task.pk).last_error == "timed out after 1s"
    after = engine.enqueue(name="after", type="simulate", payload={"duration": 0})
    wait_until(lambda: status(after) == "succeeded", timeout=15)
    # ctx.sleep woke at the deadline, so the thread returned and was reused.
    assert "abandoned" not in proc.log_path.read_text()


@pytest.mark.parametrize("kind,payload", [
    ("count", {"sleep": 60}),  # honours ctx.sleep: stops at once
    ("block", {"seconds": 60}),  # ignores cancellation: abandoned after the grace
])
def test_cancel_of_a_running_task_ends_cancelled_within_2s(worker_factory, count_file,
                                                           kind, payload):
    task = engine.enqueue(name="cancel me", type=kind, payload=payload)
    worker_factory("--worker-id", "w1", COUNT_FILE=str(count_file))
    wait_until(lambda: running_on(task, "w1"), timeout=20)
    engine.cancel(task.pk)
    wait_until(lambda: status(task) == "cancelled", timeout=2.0, interval=0.02,
               message="a cancelled running task was still running after 2 s")
    assert events(task)[-2:] == ["cancel_requested", "task_cancelled"]


def test_cancel_without_listen_is_polled(worker_factory, count_file):
    task = engine.enqueue(name="cancel me", type="count", payload={"sleep": 60})
    worker_factory("--worker-id", "w1", "--no-listen", COUNT_FILE=str(count_file),
                   TASKS_POLL_INTERVAL="0.3")
    wait_until(lambda: running_on(task, "w1"), timeout=20)
    engine.cancel(task.pk)
    wait_until(lambda: status(task) == "cancelled", timeout=2.0, interval=0.02)


def test_priority_order_then_fifo(worker_factory, count_file):
    specs = [("low-a", 0), ("high-a", 10), ("low-b", 0), ("mid", 5), ("high-b", 10),
             ("neg", -5)]
    tasks = {name: engine.enqueue(name=name, type="count", priority=p) for name, p in specs}
    worker_factory("--concurrency", "1", "--batch", COUNT_FILE=str(count_file))
    wait_until(lambda: Task.objects.filter(status="succeeded").count() == len(specs), timeout=30)
    order = [task_id for task_id, _ in runs(count_file)]
    expected = ["high-a", "high-b", "mid", "low-a", "low-b", "neg"]
    assert order == [tasks[name].pk for name in expected]


def test_listen_wakes_the_worker_and_a_rolled_back_enqueue_leaves_nothing(worker_factory):
    # Poll every 60 s: anything picked up sooner was woken by NOTIFY.
    worker_factory("--worker-id", "w1", TASKS_POLL_INTERVAL="60")
    wait_until(listening, timeout=20, message="the worker never LISTENed")
    with pytest.raises(RuntimeError), transaction.atomic():
        engine.enqueue(name="never", type="simulate", payload={"duration": 0})
        raise RuntimeError("roll back")
    assert not Task.objects.filter(name="never").exists()
    task = engine.enqueue(name="now", type="simulate", payload={"duration": 0})
    wait_until(lambda: status(task) == "succeeded", timeout=5)
    assert Task.objects.count() == 1


def test_a_task_enqueued_before_listen_is_in_place_is_not_missed(worker_factory):
    # Enqueued before the worker starts; LISTEN comes up after the first claim attempt.
    task = engine.enqueue(name="early", type="simulate", payload={"duration": 0})
    worker_factory(TASKS_POLL_INTERVAL="60")
    wait_until(lambda: status(task) == "succeeded", timeout=15)


def test_deferred_task_runs_when_due(worker_factory):
    from datetime import timedelta

    from django.utils import timezone

    task = engine.enqueue(name="later", type="simulate", payload={"duration": 0},
                          run_at=timezone.now() + timedelta(seconds=1.5))
    worker_factory(TASKS_POLL_INTERVAL="60")
    wait_until(lambda: status(task) == "succeeded", timeout=10)
    t = Task.objects.get(pk=task.pk)
    assert t.started_at >= t.run_at


def test_worker_survives_losing_its_database_connections(worker_factory, count_file):
    tasks = engine.enqueue_many([{"name": f"n{i}", "type": "count", "payload": {"sleep": 0.01}}
                                 for i in range(300)])
    worker_factory("--worker-id", "w1", "--concurrency", "4", COUNT_FILE=str(count_file),
                   **FAST)
    done = 0
    for _ in range(6):  # cut every connection of the worker, again and again
        wait_until(lambda n=done: Task.objects.filter(status="succeeded").count() > n,
                   timeout=30)
        done = Task.objects.filter(status="succeeded").count()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    wait_until(lambda: Task.objects.filter(status="succeeded").count() == 300, timeout=60,
               message="tasks were lost after the connections were cut")
    ran = Counter(task_id for task_id, _ in runs(count_file))
    assert set(ran) == {t.pk for t in tasks}


def test_batch_and_max_tasks_exit_by_themselves(worker_factory):
    engine.enqueue_many([{"name": f"n{i}", "type": "simulate", "payload": {"duration": 0}}
                         for i in range(5)])
    proc = worker_factory("--max-tasks", "2", "--concurrency", "1")
    assert proc.wait(timeout=30) == 0
    assert Task.objects.filter(status="succeeded").count() == 2
    proc = worker_factory("--batch")
    assert proc.wait(timeout=30) == 0
    assert Task.objects.filter(status="succeeded").count() == 5
