"""Pauses and cluster-wide limits under real `runworker` processes: three workers share a
queue, and the claim alone keeps them within what the operator set."""

from __future__ import annotations

import time

import pytest

from tasks import engine
from tasks.models import Task, TaskHistory
from tests.support.processes import wait_until

pytestmark = pytest.mark.process


def three_workers(worker_factory, *args: str, **env: str) -> list:
    procs = [worker_factory("--concurrency", "16", *args, **env) for _ in range(3)]
    wait_until(lambda: _online() == 3, timeout=30, message="three workers did not start")
    return procs


def _online() -> int:
    from tasks.models import Worker

    return Worker.objects.count()


def _succeeded(queue: str) -> int:
    return Task.objects.filter(queue=queue, status="succeeded").count()


def test_a_paused_queue_holds_its_tasks_under_three_workers_until_resumed(worker_factory):
    engine.pause_queue("held", actor="ops")
    tasks = engine.enqueue_many([{"name": f"h{i}", "type": "simulate", "queue": "held",
                                  "payload": {"duration": 0}} for i in range(20)])
    procs = three_workers(worker_factory)
    # Work of another queue runs meanwhile: the workers are claiming, just not these.
    canary = engine.enqueue(name="canary", type="simulate", payload={"duration": 0})
    wait_until(lambda: Task.objects.get(pk=canary.pk).status == "succeeded", timeout=30)
    time.sleep(2)  # several poll intervals of three claiming workers
    assert set(Task.objects.filter(queue="held").values_list("status", flat=True)) == {"queued"}
    assert not TaskHistory.objects.filter(task__queue="held", event_type="task_started").exists()
    engine.resume_queue("held", actor="ops")
    wait_until(lambda: _succeeded("held") == len(tasks), timeout=30,
               message="the resumed queue's tasks did not all run")
    assert all(p.poll() is None for p in procs)


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda p: (p[0], p[1]))
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def test_concurrency_limit_2_holds_across_three_workers_of_16_slots(worker_factory):
    engine.set_queue_limits("api", concurrency_limit=2, actor="ops")
    engine.enqueue_many([{"name": f"c{i}", "type": "simulate", "queue": "api",
                          "payload": {"duration": 1}} for i in range(30)])
    three_workers(worker_factory)
    wait_until(lambda: _succeeded("api") == 30, timeout=60,
               message=lambda: f"{_succeeded('api')} of 30 succeeded")
    spans = [(s.timestamp(), f.timestamp()) for s, f in
             Task.objects.filter(queue="api").values_list("started_at", "finished_at")]
    assert _overlap(spans) == 2
    # Held-back tasks were claimed by all three workers, not one that got lucky.
    assert TaskHistory.objects.filter(event_type="task_started").values("worker_id") \
        .distinct().count() >= 2
    assert Task.objects.filter(queue="api", attempts=1).count() == 30


def test_rate_limit_10_per_second_holds_across_three_workers(worker_factory):
    engine.set_queue_limits("paced", rate_limit=10, actor="ops")
    engine.enqueue_many([{"name": f"r{i}", "type": "simulate", "queue": "paced",
                          "payload": {"duration": 0}} for i in range(100)])
    three_workers(worker_factory)
    wait_until(lambda: _succeeded("paced") == 100, timeout=60,
               message=lambda: f"{_succeeded('paced')} of 100 succeeded")
    starts = sorted(s.timestamp() for s in
                    Task.objects.filter(queue="paced").values_list("started_at", flat=True))
    # The bucket holds one token at 10/s (engine.queues.burst): any one-second window
    # [t, t + 1) sees at most 10 starts.
    most = max(sum(1 for s in starts[i:] if s < start + 1.0) for i, start in enumerate(starts))
    assert most == 10
    assert starts[-1] - starts[0] >= 9.0  # 100 starts at 10/s: a token each 0.1 s
