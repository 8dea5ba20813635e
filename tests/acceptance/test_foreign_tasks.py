"""Two projects share one database: the service's worker and a host project's worker.

The host's `@task` module imports only in the host's worker. Whichever worker sees the task
first, it succeeds on the host's worker with no retry used and one attempt; the service's
worker hands it back (a history row says why) and does not claim it again. A worker that
cannot run a type at all (run_query without its database) never claims its tasks."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
from django.tasks import TaskResultStatus

from tasks import engine
from tasks.live import dashboard
from tasks.models import Task, TaskHistory, Worker
from tests.support.processes import ROOT, database_url, wait_until
from tests.support.query_db import configured

pytestmark = pytest.mark.process

TIMEOUT = 30
SHOP = '''
from django.tasks import task


@task
def add(a, b):
    return a + b
'''


@pytest.fixture
def shop(tmp_path):
    """The host project's code: importable here (to enqueue) and by the host's worker."""
    package = tmp_path / "host" / "shop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(SHOP)
    sys.path.insert(0, str(package.parent))
    try:
        yield package.parent, importlib.import_module("shop.tasks")
    finally:
        sys.path.remove(str(package.parent))
        for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
            del sys.modules[name]


def _start(worker_factory, **env):
    proc = worker_factory("--concurrency", "2", TASKS_POLL_INTERVAL="0.2", **env)
    wait_until(lambda: Worker.objects.filter(pid=proc.pid).exists(), timeout=TIMEOUT,
               message=lambda: f"worker did not start: {proc.log_path.read_text()[-2000:]}")
    return Worker.objects.get(pid=proc.pid).id


def _host_worker(worker_factory, host_path):
    return _start(worker_factory, PYTHONPATH=os.pathsep.join([str(ROOT), str(host_path)]))


def _events(task_id: int, worker: str, event: str) -> int:
    return TaskHistory.objects.filter(task_id=task_id, worker_id=worker,
                                      event_type=event).count()


def _succeeded_on(result, host_id: str) -> None:
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.worker_ids == [host_id] and result.attempts == 1
    row = Task.objects.get(pk=int(result.id))
    assert (row.retry_count, row.attempts, row.locked_by) == (0, 1, None)


def test_the_service_worker_hands_a_host_task_to_the_host_worker(worker_factory, shop):
    host_path, tasks = shop
    service_id = _start(worker_factory)
    result = tasks.add.enqueue(2, 3)
    task_id = int(result.id)
    wait_until(lambda: _events(task_id, service_id, "task_released"), timeout=TIMEOUT,
               message="the service's worker did not hand the task back")
    declined = TaskHistory.objects.get(task_id=task_id, event_type="task_released")
    assert declined.error_class == "plugins.base.NotRunnableHere"
    assert "No module named 'shop'" in declined.error_message
    assert Task.objects.get(pk=task_id).status == "queued"

    host_id = _host_worker(worker_factory, host_path)
    wait_until(lambda: Task.objects.get(pk=task_id).status == "succeeded", timeout=TIMEOUT,
               message="the host's worker did not run the task")
    _succeeded_on(result, host_id)
    # Claimed once by the service's worker, never again: no hot loop of claims.
    assert _events(task_id, service_id, "task_started") == 1


def test_host_tasks_succeed_on_the_host_worker_whoever_sees_them_first(worker_factory, shop):
    host_path, tasks = shop
    service_id = _start(worker_factory)
    host_id = _host_worker(worker_factory, host_path)
    results = [tasks.add.enqueue(2, 3) for _ in range(6)]
    ids = [int(r.id) for r in results]
    wait_until(lambda: Task.objects.filter(pk__in=ids, status="succeeded").count() == len(ids),
               timeout=TIMEOUT, message="the host's tasks did not all succeed")
    for result in results:
        _succeeded_on(result, host_id)
    for task_id in ids:
        assert _events(task_id, service_id, "task_started") <= 1
        assert _events(task_id, service_id, "task_released") == _events(
            task_id, service_id, "task_started")


def test_a_worker_leaves_the_types_it_cannot_run_queued_for_one_that_can(worker_factory):
    # Enqueued where run_query has a query database (judged from settings alone)...
    with configured(database_url(name="reports_elsewhere")):
        report = engine.enqueue(name="report", type="run_query", queue="reports",
                                payload={"sql": "SELECT 1"}, max_retries=0)
    probe = engine.enqueue(name="probe", type="noop", queue="reports")
    # ...and run by a worker that has none, as a host project's worker has.
    worker_id = _start(worker_factory, TASKS_QUERY_DATABASE_URL="")
    worker = Worker.objects.get(id=worker_id)
    assert "run_query" not in worker.types and "noop" in worker.types
    # The probe came after the report in the same queue: once it has run, the worker has
    # had every chance to claim the report first.
    wait_until(lambda: Task.objects.get(pk=probe.pk).status == "succeeded", timeout=TIMEOUT,
               message="the worker did not run the probe")
    row = Task.objects.get(pk=report.pk)
    assert (row.status, row.attempts, row.retry_count, row.locked_by) == ("queued", 0, 0, None)
    assert list(TaskHistory.objects.filter(task_id=report.pk).values_list(
        "event_type", flat=True)) == ["task_queued"]
    queues = {q["queue"]: q for q in dashboard.snapshot(include_throughput=False)["queues"]}
    assert queues["reports"]["unrunnable"] == 1
