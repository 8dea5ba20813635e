"""The worker's roles, driven in-process: a real Worker in a thread of the test process,
against the real test database, with the test plugins (tests/support/plugins.py) and three
defined here whose data the database cannot take. Tests wait on the worker's hooks
(tasks.worker.hooks) instead of sleeping, and `transactional_db` lets the worker's own
connections see the rows the test commits."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from plugins import registry
from tasks import engine
from tasks.models import Task
from tasks.models import Worker as WorkerRow
from tasks.worker import CANCEL_GRACE, Hooks
from tasks.worker.completer import Completer
from tasks.worker.slots import FAIL, OK
from tasks.worker.testing import Recorder, WorkerThread
from tests.integration.conftest import (
    OTHER_WORKER,
    WORKER,
    enqueue,
    events,
    expire_lease,
    make_due,
    outcome,
)
from tests.support.plugins import TEST_PLUGINS

# A file name that is not UTF-8, decoded the way Python decodes file names
# (surrogateescape): it holds a lone surrogate.
UNDECODABLE = os.fsdecode(b"report-\xff.csv")


def undecodable_file_name(payload, ctx):
    """Returns such a file name: the engine stores the lone surrogate as U+FFFD."""
    return {"file": UNDECODABLE}


def huge_number(payload, ctx):
    """Returns an int too long for Python to print (sys.get_int_max_str_digits())."""
    return {"n": 10**5000}


def missing_undecodable_file(payload, ctx):
    """Fails naming such a file: an error text that cannot be encoded as UTF-8 as it is."""
    raise FileNotFoundError(f"no such file: {UNDECODABLE}")


@pytest.fixture
def undecodable_plugins():
    """Three more plugins in this process (the worker runs here too), for one test."""
    base = {**django_settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS}
    registry.load({**base, "undecodable": f"{__name__}.undecodable_file_name",
                   "missing": f"{__name__}.missing_undecodable_file",
                   "huge": f"{__name__}.huge_number"})
    yield
    registry.load(base)


@pytest.fixture
def fast(settings):
    """Beats and polls in fractions of a second; the test rescues when it wants to."""
    settings.TASKS_ENGINE = {**django_settings.TASKS_ENGINE, "HEARTBEAT_INTERVAL": 0.2,
                             "POLL_INTERVAL": 0.2}


@pytest.fixture
def count_file(tmp_path, monkeypatch):
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("COUNT_FILE", str(path))
    return path


@pytest.fixture
def start_worker(transactional_db, fast, count_file):
    """Start Workers in threads; each still running is stopped (drained) at teardown."""
    started: list[WorkerThread] = []

    def start(**kwargs) -> WorkerThread:
        kwargs.setdefault("worker_id", WORKER)
        w = WorkerThread(**kwargs).start()
        started.append(w)
        return w

    yield start
    for w in started:
        if w.thread.is_alive():
            w.stop()


def task_row(task) -> Task:
    return Task.objects.get(pk=task.pk)


def test_stop_drains_the_running_task_and_returns(start_worker, count_file):
    w = start_worker(concurrency=2)
    task = enqueue(payload={"sleep": 0.5})
    w.events.wait("claimed", where=lambda info: task.pk in [t.id for t in info["tasks"]])
    assert w.stop() == 0
    # Drained, not released: the run finished and its outcome was written before stop()
    # returned, and the worker's row is gone.
    assert task_row(task).status == "succeeded"
    w.events.wait("run_returned", task_id=task.pk, reported=True)
    assert not WorkerRow.objects.filter(pk=WORKER).exists()


def test_the_monitor_ends_a_run_at_its_deadline(start_worker):
    w = start_worker(concurrency=1)
    task = enqueue(payload={"sleep": 60}, timeout_seconds=1, max_retries=0)
    ended = w.events.wait("ended_early", task_id=task.pk)
    assert ended["kind"] == "fail" and ended["error"] == "timed out after 1s"
    w.events.wait("completed_batch",
                  where=lambda info: task.pk in [o.task_id for _, o in info["outcomes"]])
    t = task_row(task)
    assert t.status == "failed" and t.last_error == "timed out after 1s"
    assert events(task.pk) == ["task_queued", "task_started", "task_failed"]
    # Ended at its deadline: not before the second was up, and long before the plugin's 60 s.
    assert 1.0 <= (t.finished_at - t.started_at).total_seconds() < 10


def test_a_plugin_that_never_returns_is_abandoned_and_a_cooperative_one_keeps_its_thread(
        start_worker):
    w = start_worker(concurrency=2)
    stuck = enqueue(type="block", payload={"seconds": 4}, timeout_seconds=1, max_retries=0)
    polite = enqueue(payload={"sleep": 60}, timeout_seconds=1, max_retries=0)

    assert w.events.wait("grace_over", task_id=polite.pk)["abandoned"] is False
    assert w.events.wait("grace_over", task_id=stuck.pk)["abandoned"] is True
    # ctx.sleep woke at the deadline: the cooperative plugin returned within the grace.
    w.events.wait("run_returned", task_id=polite.pk, reported=False)
    execution = w.worker.execution
    [stuck_thread] = execution.abandoned
    assert stuck_thread.is_alive()  # still inside Block's time.sleep
    assert len([t for t in execution.executors - execution.abandoned if t.is_alive()]) == 2
    for task in (stuck, polite):
        assert task_row(task).status == "failed"
        assert task_row(task).last_error == "timed out after 1s"

    # Both slots still run work while the abandoned thread sleeps on.
    after = [enqueue(type="simulate", payload={"duration": 0.2}) for _ in range(2)]
    for task in after:
        w.events.wait("run_returned", task_id=task.pk, reported=True)
    # When Block finally returns, its result is dropped and its thread exits.
    w.events.wait("run_returned", task_id=stuck.pk, reported=False, timeout=15)
    stuck_thread.join(timeout=5)
    assert not stuck_thread.is_alive() and stuck_thread not in execution.executors
    assert task_row(stuck).status == "failed"
    assert w.stop() == 0
    assert [task_row(t).status for t in after] == ["succeeded", "succeeded"]
    assert CANCEL_GRACE == 1.0  # the grace these waits were sized for


def test_a_lost_lease_stops_the_run_and_leaves_the_newer_run_alone(start_worker):
    w = start_worker(concurrency=1)
    task = enqueue(payload={"sleep": 60}, max_retries=1)
    w.events.wait("claimed", where=lambda info: task.pk in [t.id for t in info["tasks"]])

    # The worker stalls past its lease: the rescuer recovers the task and another
    # worker claims it, all in one transaction so no heartbeat slips in between.
    with transaction.atomic():
        expire_lease(task.pk)
        assert engine.rescue_expired() == {task.pk: "retrying"}
        make_due(task.pk)  # the rescue backed off; the other worker claims at once
        [newer] = engine.claim(worker_id=OTHER_WORKER, limit=1)
    assert newer.id == task.pk and newer.attempt == 2

    w.events.wait("lease_lost", task_id=task.pk)
    # The plugin was told (ctx.sleep woke) and its result was dropped, not written.
    w.events.wait("run_returned", task_id=task.pk, reported=False)
    assert w.stop() == 0
    assert not any(o.task_id == task.pk for batch in w.events.all("completed_batch")
                   for _, o in batch["outcomes"])
    t = task_row(task)
    assert (t.status, t.locked_by, t.attempts) == ("running", OTHER_WORKER, 2)
    assert events(task.pk) == ["task_queued", "task_started", "lease_expired", "task_started"]
    # The newer run completes normally.
    assert engine.complete(worker_id=OTHER_WORKER, outcomes=[outcome(newer, result=1)]) == {
        task.pk}


def test_a_batch_the_database_refuses_splits_and_the_rest_lands(transactional_db, count_file):
    """The engine makes every result and error storable, so no plugin output can make the
    statement fail; an outcome the database refuses is injected at the completer's
    boundary instead (an attempt number past PostgreSQL's integer range)."""
    tasks = [enqueue(max_retries=0) for _ in range(5)]
    claimed = engine.claim(worker_id=WORKER, limit=5)
    assert {c.id for c in claimed} == {t.pk for t in tasks}
    bad = claimed[2]
    hooks = Hooks()
    seen = Recorder(hooks)
    completer = Completer(worker_id=WORKER, hooks=hooks)
    for c in claimed:
        refused = outcome(c, result={"ran": c.id})
        if c is bad:
            refused.attempt = 2**40
        completer.submit(OK, refused)
    stopped = threading.Event()
    stopped.set()  # write what was submitted, then return
    completer.run(stopped)

    [batch] = seen.all("completed_batch")
    assert len(batch["outcomes"]) == 5  # one batch: the complete statement failed for all
    refusals = seen.all("write_refused")
    assert [(r["task_id"], r["kind"]) for r in refusals] == [(bad.id, OK), (bad.id, FAIL)]
    assert "out of range" in refusals[0]["error"]
    by_id = {t.pk: t for t in Task.objects.filter(pk__in=[c.id for c in claimed])}
    for c in claimed:
        if c is not bad:
            assert by_id[c.id].status == "succeeded" and by_id[c.id].result == {"ran": c.id}
    # Its lease is left to expire: the rescuer settles it once this worker stops renewing.
    assert by_id[bad.id].status == "running"
    assert events(bad.id) == ["task_queued", "task_started"]
    assert completer.pending == 0


def test_undecodable_results_and_errors_are_stored_and_the_rest_run(start_worker,
                                                                    undecodable_plugins):
    w = start_worker(concurrency=4)
    bad_result = enqueue(type="undecodable", max_retries=0)
    bad_error = enqueue(type="missing", max_retries=0)
    huge = enqueue(type="huge", max_retries=0)
    good = [enqueue() for _ in range(5)]
    for task in (bad_result, bad_error, huge, *good):
        w.events.wait("run_returned", task_id=task.pk)
    assert w.stop() == 0
    assert not w.events.all("thread_died")
    t = task_row(bad_result)
    assert (t.status, t.result) == ("succeeded", {"file": "report-\ufffd.csv"})
    t = task_row(bad_error)
    assert t.status == "failed"
    assert t.last_error.startswith("FileNotFoundError: no such file: report-\ufffd.csv")
    t = task_row(huge)
    assert (t.status, t.result) == ("succeeded", "<dict that is not JSON>")
    assert [task_row(t).status for t in good] == ["succeeded"] * 5


def test_a_side_thread_that_dies_stops_the_worker_loudly(start_worker, caplog):
    w = start_worker(concurrency=2)

    def completer_bug(**info):
        raise RuntimeError("bug in the completer")

    w.hooks.on("completed_batch", completer_bug)
    task = enqueue(type="simulate", payload={"duration": 0})
    died = w.events.wait("thread_died")
    assert died["name"] == "completer" and str(died["error"]) == "bug in the completer"
    assert w.join() == 1  # stopped by itself, without stop(); 1 like a failed process
    assert w.worker.died == "completer"
    [record] = [r for r in caplog.records if getattr(r, "action", "") == "thread_died"]
    assert record.levelno == logging.ERROR
    assert "the completer thread died (RuntimeError: bug in the completer)" in record.getMessage()
    # The batch before the bug was written; the worker's row is gone.
    assert task_row(task).status == "succeeded"
    assert not WorkerRow.objects.filter(pk=WORKER).exists()
