"""django.tasks end to end: @task functions enqueued here, run by real `runworker`
processes, read back through the framework's TaskResult."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

from plugins.base import TaskCancelled
from tasks import engine
from tasks.models import Worker
from tests.djtasks_app import tasks as app
from tests.djtasks_app.tasks import DjTaskError
from tests.support.processes import wait_until

pytestmark = pytest.mark.process

TIMEOUT = 30


def _finished(*results) -> bool:
    for result in results:
        result.refresh()
    return all(r.is_finished for r in results)


def _lines(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().splitlines() if path.exists() else []


def _worker(worker_factory, folder: Path, *args: str):
    proc = worker_factory("--concurrency", *args, DJTASKS_DIR=str(folder),
                          TASKS_BACKOFF_BASE="0.1", TASKS_POLL_INTERVAL="0.2")
    wait_until(lambda: Worker.objects.filter(pid=proc.pid).exists(), timeout=TIMEOUT,
               message=f"worker did not start; log: {proc.log_path.read_text()[-2000:]}")
    return proc, Worker.objects.get(pid=proc.pid).id


def test_results_errors_retries_context_and_signals(worker_factory, tmp_path):
    proc, worker_id = _worker(worker_factory, tmp_path, "4")
    added = app.add.enqueue(2, b=3)
    awaited = app.async_add.enqueue(3, 4)
    failed = app.fails.using(max_retries=0).enqueue("it broke")
    flaky = app.flaky.using(max_retries=3).enqueue("flaky-1", 2)
    context = app.with_context.enqueue("ctx")

    wait_until(lambda: _finished(added, awaited, failed, flaky, context), timeout=TIMEOUT,
               message=f"tasks did not finish; log: {proc.log_path.read_text()[-2000:]}")

    assert added.status == TaskResultStatus.SUCCESSFUL and added.return_value == 5
    assert added.worker_ids == [worker_id] and added.attempts == 1 and added.errors == []
    assert added.enqueued_at <= added.started_at <= added.finished_at
    assert awaited.return_value == 7

    assert failed.status == TaskResultStatus.FAILED and failed.attempts == 1
    [error] = failed.errors
    assert error.exception_class is DjTaskError
    assert "raise DjTaskError(message)" in error.traceback
    assert "DjTaskError: it broke" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value

    assert flaky.status == TaskResultStatus.SUCCESSFUL
    assert flaky.return_value == "ok after 3 runs"
    assert flaky.attempts == 3 and flaky.worker_ids == [worker_id] * 3
    assert [e.exception_class_path for e in flaky.errors] == [
        "tests.djtasks_app.tasks.DjTaskError"] * 2
    assert "run 2 of flaky-1 fails on purpose" in flaky.errors[1].traceback

    # The function saw a TaskContext describing its own run.
    assert context.return_value == {"label": "ctx", "id": context.id, "attempt": 1,
                                    "worker_ids": [worker_id], "status": "RUNNING"}

    # The framework's signals were sent in the worker, once per run, from our backend.
    signals = _lines(tmp_path, "signals")
    assert f"started {added.id} RUNNING TaskServiceBackend" in signals
    assert f"finished {added.id} SUCCESSFUL " in signals
    assert f"finished {failed.id} FAILED tests.djtasks_app.tasks.DjTaskError" in signals
    assert [s.split()[0] for s in signals if s.split()[1] == flaky.id] == [
        "started", "finished"] * 3


def test_priority_order_and_deferred_run(worker_factory, tmp_path):
    later_at = timezone.now() + datetime.timedelta(seconds=2)
    later = app.record.using(priority=100, run_after=later_at).enqueue("later")
    results = [app.record.using(priority=p).enqueue(label)
               for p, label in ((-5, "low"), (0, "mid-1"), (50, "high"), (0, "mid-2"))]

    proc, _ = _worker(worker_factory, tmp_path, "1")
    wait_until(lambda: _finished(later, *results), timeout=TIMEOUT,
               message=f"tasks did not finish; log: {proc.log_path.read_text()[-2000:]}")

    # Highest priority first, FIFO within one.
    order = _lines(tmp_path, "order")
    assert [label for label in order if label != "later"] == ["high", "mid-1", "mid-2", "low"]
    # The deferred task, though highest of all, waited for its run_after.
    assert "later" in order and later.started_at >= later_at
    assert later.return_value == "later"
    assert [r.return_value for r in results] == ["low", "mid-1", "high", "mid-2"]


def test_cancellation_and_timeout_read_as_failed(worker_factory, tmp_path):
    proc, worker_id = _worker(worker_factory, tmp_path, "2")
    running = app.slow.using(max_retries=0).enqueue(60)
    waiting = app.add.using(run_after=timezone.now() + datetime.timedelta(minutes=5)) \
        .enqueue(1, 2)
    overrun = app.slow.using(max_retries=0, timeout=1).enqueue(60)

    def is_running():
        running.refresh()
        return running.status == TaskResultStatus.RUNNING

    wait_until(is_running, timeout=TIMEOUT, message="the slow task never started")
    engine.cancel(int(running.id), reason="stop it")
    engine.cancel(int(waiting.id))
    wait_until(lambda: _finished(running, waiting, overrun), timeout=TIMEOUT,
               message=f"tasks did not finish; log: {proc.log_path.read_text()[-2000:]}")

    # Cancelled while running: the function woke from context.sleep and stopped.
    assert running.status == TaskResultStatus.FAILED
    assert running.worker_ids == [worker_id]
    assert running.errors[-1].exception_class is TaskCancelled
    assert running.errors[-1].traceback == "stop it: cancelled while running"
    assert f"finished {running.id} FAILED plugins.base.TaskCancelled" in \
        _lines(tmp_path, "signals")
    # Cancelled before it ran: failed, never started.
    assert waiting.status == TaskResultStatus.FAILED and waiting.worker_ids == []
    assert waiting.errors[-1].exception_class is TaskCancelled
    # Timed out: failed with a TimeoutError after its one second.
    assert overrun.status == TaskResultStatus.FAILED
    assert overrun.errors[-1].exception_class is TimeoutError
    assert "timed out after 1s" in overrun.errors[-1].traceback
