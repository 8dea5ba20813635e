"""Dependencies, progress and snooze with real `runworker` processes."""

from __future__ import annotations

import json
import signal
from collections import Counter

import psycopg
import pytest

from tasks import engine
from tasks.api.serializers import TaskSerializer
from tasks.listener import connect_kwargs
from tasks.models import Task, TaskHistory
from tests.acceptance.test_worker_processes import FAST, listening, running_on, runs
from tests.support.processes import wait_until

pytestmark = pytest.mark.process


@pytest.fixture
def count_file(tmp_path):
    path = tmp_path / "runs.txt"
    path.touch()
    return path


def status(task_id: int) -> str:
    return Task.objects.get(pk=task_id).status


def events(task_id: int) -> list[str]:
    return list(TaskHistory.objects.filter(task_id=task_id).order_by("id")
                .values_list("event_type", flat=True))


def history_ids(event: str) -> dict[int, int]:
    """{task id: id of its last `event` history row}. History ids come from one sequence
    as the rows are written, so they give the order of a parent's success and its child's
    start; the timestamps may not: now() is read when a statement is bound, before the
    snapshot it runs on, so a claim bound just before a parent's completion commits (and
    run just after) records a start up to a millisecond before that parent's finish."""
    return dict(TaskHistory.objects.filter(event_type=event).order_by("id")
                .values_list("task_id", "id"))


def started_after(child: Task, *parents: Task) -> bool:
    """Whether `child` started after every one of `parents` succeeded, by history order."""
    succeeded, started = history_ids("task_succeeded"), history_ids("task_started")
    return all(started[child.pk] > succeeded[p.pk] for p in parents)


def test_a_child_of_two_parallel_parents_starts_after_both_with_both_results(worker_factory):
    a, b, c = engine.enqueue_many([
        {"name": "a", "type": "parents", "payload": {"sleep": 1, "value": "from a"}},
        {"name": "b", "type": "parents", "payload": {"sleep": 1, "value": "from b"}},
        {"name": "c", "type": "parents", "payload": {"value": "c"}, "after": [0, 1]}])
    worker_factory("--concurrency", "4")
    wait_until(lambda: status(c.pk) == "succeeded", timeout=30)
    a, b, c = (Task.objects.get(pk=t.pk) for t in (a, b, c))
    assert b.started_at < a.finished_at and a.started_at < b.finished_at  # side by side
    assert started_after(c, a, b)
    assert c.result["parents"] == {str(a.pk): {"value": "from a", "parents": {}},
                                   str(b.pk): {"value": "from b", "parents": {}}}
    assert events(c.pk) == ["task_waiting", "dependencies_met", "task_started",
                            "task_succeeded"]


def test_1000_diamonds_under_four_workers_run_every_d_after_its_b_and_c(worker_factory,
                                                                        count_file):
    specs = []
    for i in range(1000):
        base = len(specs)
        specs += [{"name": f"a{i}", "type": "count"},
                  {"name": f"b{i}", "type": "count", "after": [base]},
                  {"name": f"c{i}", "type": "count", "after": [base]},
                  {"name": f"d{i}", "type": "count", "after": [base + 1, base + 2]}]
    tasks = engine.enqueue_many(specs)
    for _ in range(4):
        worker_factory("--concurrency", "8", COUNT_FILE=str(count_file))
    wait_until(lambda: Task.objects.filter(status="succeeded").count() == 4000, timeout=180,
               message=lambda: f"not all succeeded: {Counter(Task.objects.values_list(
                   'status', flat=True))}")
    rows = {t.pk: t for t in Task.objects.all()}
    succeeded, started = history_ids("task_succeeded"), history_ids("task_started")
    for i in range(1000):
        a, b, c, d = (t.pk for t in tasks[4 * i: 4 * i + 4])
        assert started[b] > succeeded[a] and started[c] > succeeded[a], f"diamond {i}"
        assert started[d] > max(succeeded[b], succeeded[c]), f"diamond {i}"
    ran = Counter(task_id for task_id, _ in runs(count_file))
    assert set(ran) == set(rows) and max(ran.values()) == 1
    started_by = set(TaskHistory.objects.filter(event_type="task_started")
                     .values_list("worker_id", flat=True))
    assert len(started_by) == 4


def test_kill_9_of_a_parents_worker_the_child_waits_then_runs(worker_factory, count_file):
    parent, child = engine.enqueue_many([
        {"name": "parent", "type": "count", "payload": {"sleep": 60, "only_attempt": 1}},
        {"name": "child", "type": "count", "after": [0]}])
    doomed = worker_factory("--worker-id", "doomed", COUNT_FILE=str(count_file), **FAST)
    wait_until(lambda: running_on(parent, "doomed"), timeout=20)
    # Claimed is not yet started: kill once the plugin has recorded its run.
    wait_until(lambda: runs(count_file), timeout=20)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert status(child.pk) == "waiting"
    worker_factory("--worker-id", "rescuer", COUNT_FILE=str(count_file), **FAST)
    wait_until(lambda: status(child.pk) == "succeeded", timeout=30)
    assert "lease_expired" in events(parent.pk)
    assert events(child.pk) == ["task_waiting", "dependencies_met", "task_started",
                                "task_succeeded"]
    assert started_after(child, parent)
    assert runs(count_file) == [(parent.pk, 1), (parent.pk, 2), (child.pk, 1)]


def test_an_idle_worker_is_woken_by_dependencies_met(worker_factory, count_file):
    parent, child = engine.enqueue_many([{"name": "parent", "type": "count"},
                                         {"name": "child", "type": "count", "after": [0]}])
    (claimed,) = engine.claim(worker_id="test-holder", limit=1, lease_seconds=600)
    # Polls every 60 s and finds nothing to claim (the child waits): only a NOTIFY wakes it.
    worker_factory("--worker-id", "idle", COUNT_FILE=str(count_file), TASKS_POLL_INTERVAL="60")
    wait_until(listening, timeout=20, message="the worker never LISTENed")
    engine.complete(worker_id="test-holder", outcomes=[
        engine.Outcome(task_id=claimed.id, attempt=claimed.attempt)])
    wait_until(lambda: status(child.pk) == "succeeded", timeout=30,
               message="the child was not run: the worker did not wake")
    assert events(child.pk) == ["task_waiting", "dependencies_met", "task_started",
                                "task_succeeded"]
    assert TaskHistory.objects.get(task_id=child.pk, event_type="task_started").worker_id \
        == "idle"
    assert runs(count_file) == [(child.pk, 1)]  # the parent was never the worker's


def test_cancelling_a_running_parent_cancels_its_children_once_the_worker_stops_it(
        worker_factory, count_file):
    parent, child, grandchild = engine.enqueue_many([
        {"name": "parent", "type": "count", "payload": {"sleep": 60}},
        {"name": "child", "type": "count", "after": [0]},
        {"name": "grandchild", "type": "count", "after": [1]}])
    worker_factory("--worker-id", "w1", COUNT_FILE=str(count_file))
    wait_until(lambda: running_on(parent, "w1"), timeout=20)
    engine.cancel(parent.pk)
    wait_until(lambda: status(grandchild.pk) == "cancelled", timeout=20)
    assert (status(parent.pk), status(child.pk)) == ("cancelled", "cancelled")
    assert events(parent.pk)[-2:] == ["cancel_requested", "task_cancelled"]
    cascaded = TaskHistory.objects.get(task_id=child.pk, event_type="dependency_failed")
    assert cascaded.details == f"parent task {parent.pk} cancelled"
    assert events(grandchild.pk) == ["task_waiting", "dependency_failed"]
    assert runs(count_file) == [(parent.pk, 1)]


def test_progress_reported_1000_times_in_a_second_is_written_a_few_times(worker_factory):
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        conn.execute(f'LISTEN "{engine.CHANNEL}"')
        task = engine.enqueue(name="chatty", type="chatty",
                              payload={"calls": 1000, "seconds": 1})
        worker_factory()
        wait_until(lambda: status(task.pk) == "succeeded", timeout=30)
        engine.notify("test_sentinel", [])
        written = []
        for note in conn.notifies(timeout=10):
            event = json.loads(note.payload)
            if event["event"] == "test_sentinel":
                break
            if event["event"] == "task_progress" and event["ids"] == [task.pk]:
                written.append(event["progress"])
    row = Task.objects.get(pk=task.pk)
    seconds = (row.finished_at - row.started_at).total_seconds()
    # One write a second at most, the first at once, and the last value at the end.
    assert 2 <= len(written) <= int(seconds) + 2, (len(written), seconds)
    assert (written[-1]["done"], written[-1]["total"], written[-1]["message"]) == (
        1000, 1000, "step 1000")
    shown = TaskSerializer(row).data["progress"]
    assert (shown["done"], shown["total"], shown["message"]) == (1000, 1000, "step 1000")


@pytest.mark.parametrize("raised", [False, True])
def test_a_snoozed_run_comes_back_later_without_using_a_retry(worker_factory, raised):
    task = engine.enqueue(name="nap", type="snoozer", max_retries=0,
                          payload={"seconds": 1, "raise": raised})
    worker_factory(TASKS_POLL_INTERVAL="0.2")
    wait_until(lambda: status(task.pk) == "succeeded", timeout=30)
    row = Task.objects.get(pk=task.pk)
    assert (row.retry_count, row.attempts, row.result) == (0, 2, {"attempt": 2})
    assert events(task.pk) == ["task_queued", "task_started", "task_snoozed", "task_started",
                               "task_succeeded"]
    snoozed = TaskHistory.objects.get(task_id=task.pk, event_type="task_snoozed")
    assert snoozed.details == "snoozed for 1.0s"
    assert (row.started_at - snoozed.created_at).total_seconds() >= 1.0
