"""TaskServiceBackend against real PostgreSQL, in-process: what enqueue stores, how our
states read back through get_result, and bad input refused with nothing stored."""

from __future__ import annotations

import datetime
import sys

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import TaskResultStatus, task, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued
from django.test import override_settings
from django.utils import timezone

from plugins.base import TaskCancelled
from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.djtasks.backend import TaskServiceBackend
from tasks.djtasks.mapping import TaskServiceTask
from tasks.exceptions import InvalidTask as EngineInvalidTask
from tasks.exceptions import WorkerLost
from tasks.models import Task, TaskHistory
from tasks.worker import describe_error
from tests.djtasks_app import tasks as app
from tests.djtasks_app.tasks import DjTaskError
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db

BACKEND = "tasks.djtasks.backend.TaskServiceBackend"


def _row(result) -> Task:
    return Task.objects.get(pk=int(result.id))


@pytest.fixture
def enqueued():
    """Task results sent with task_enqueued while the test runs."""
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result))

    task_enqueued.connect(receiver)
    yield seen
    task_enqueued.disconnect(receiver)


# --- enqueue ------------------------------------------------------------------------


def test_the_default_backend_is_ours_and_decorates_with_its_task_class():
    backend = task_backends["default"]
    assert isinstance(backend, TaskServiceBackend)
    assert type(app.add) is TaskServiceTask
    assert (backend.supports_defer, backend.supports_priority,
            backend.supports_get_result) == (True, True, True)


def test_enqueue_stores_a_django_task_through_the_engine(
        enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = app.add.enqueue(2, b=3)

    row = _row(result)
    assert (row.type, row.name, row.status, row.queue, row.priority) == (
        "django_task", "tests.djtasks_app.tasks.add", "queued", "default", 0)
    assert row.payload == {"func": "tests.djtasks_app.tasks.add", "args": [2],
                           "kwargs": {"b": 3}, "takes_context": False}
    assert list(row.history.values_list("event_type", flat=True)) == ["task_queued"]
    assert result.id == str(row.pk)
    assert result.status == TaskResultStatus.READY
    assert result.task.func is app.add.func
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert result.enqueued_at == row.created_at
    assert result.worker_ids == [] and result.errors == [] and result.attempts == 0
    assert [(s, r.id) for s, r in enqueued] == [(TaskServiceBackend, result.id)]


def test_task_enqueued_waits_for_the_callers_commit(enqueued,
                                                    django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            app.add.enqueue(1, 1)
            raise RuntimeError("roll back")
    assert Task.objects.count() == 0
    assert enqueued == []


def test_priority_queue_and_run_after_map_onto_the_engine():
    when = timezone.now() + datetime.timedelta(hours=1)
    high = app.add.using(priority=7, run_after=when).enqueue(1, 2)
    low = app.add.using(priority=-100).enqueue(1, 2)

    assert _row(high).priority == 70 and _row(low).priority == -1000
    assert _row(high).run_at == when
    again = task_backends["default"].get_result(high.id)
    assert again.task.priority == 7 and again.task.queue_name == "default"
    assert task_backends["default"].get_result(low.id).task.priority == -100


def test_options_set_defaults_and_tasks_override_them():
    cfg = engine_settings()
    plain = app.add.enqueue(1, 1)
    assert (_row(plain).max_retries, _row(plain).timeout_seconds) == (
        cfg.DEFAULT_MAX_RETRIES, cfg.DEFAULT_TIMEOUT)
    with override_settings(TASKS={"default": {"BACKEND": BACKEND,
                                              "OPTIONS": {"MAX_RETRIES": 7, "TIMEOUT": 42}}}):
        defaulted = app.add.enqueue(1, 1)
        own = app.add.using(max_retries=1, timeout=5).enqueue(1, 1)
        read = app.add.get_result(own.id)
    assert (_row(defaulted).max_retries, _row(defaulted).timeout_seconds) == (7, 42)
    assert (_row(own).max_retries, _row(own).timeout_seconds) == (1, 5)
    assert (read.task.max_retries, read.task.timeout) == (1, 5)


def test_an_idempotency_key_returns_the_existing_task(enqueued,
                                                      django_capture_on_commit_callbacks):
    keyed = app.add.using(idempotency_key="order-42")
    with django_capture_on_commit_callbacks(execute=True):
        first = keyed.enqueue(1, 2)
        second = keyed.enqueue(1, 2)
    assert first.id == second.id
    assert Task.objects.count() == 1
    assert len(enqueued) == 1  # only the enqueue that stored something
    assert app.add.get_result(first.id).task.idempotency_key == "order-42"


def test_the_async_api_enqueues_and_reads_too():
    result = async_to_sync(app.add.aenqueue)(4, 5)
    assert _row(result).payload["args"] == [4, 5]
    read = async_to_sync(app.add.aget_result)(result.id)
    assert (read.id, read.status) == (result.id, TaskResultStatus.READY)


# --- get_result: our states, read as the framework's ----------------------------------


def _claim(worker: str = "w-1"):
    return engine.claim(worker_id=worker, limit=1)[0]


def test_get_result_follows_the_lifecycle_to_success():
    result = app.add.enqueue(2, 3)
    claimed = _claim("w-1")

    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    assert result.worker_ids == ["w-1"] and result.attempts == 1
    assert result.started_at == result.last_attempted_at == _row(result).started_at
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value

    engine.complete(worker_id="w-1", outcomes=[
        engine.Outcome(task_id=claimed.id, attempt=claimed.attempt, result=5)])
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.finished_at == _row(result).finished_at is not None


def _raise(message: str) -> dict[str, str]:
    try:
        raise DjTaskError(message)
    except DjTaskError as exc:
        return describe_error(exc)


def test_failures_read_as_errors_with_class_path_and_traceback(settings):
    settings.TASKS_ENGINE = {**settings.TASKS_ENGINE, "BACKOFF_BASE": 0.0}  # retry due now
    result = app.fails.using(max_retries=1).enqueue("first")
    for worker, message in (("w-1", "first try"), ("w-2", "second try")):
        claimed = _claim(worker)
        engine.fail(worker_id=worker, outcomes=[engine.Outcome(
            task_id=claimed.id, attempt=claimed.attempt, retry_count=claimed.retry_count,
            **_raise(message))])
        if worker == "w-1":
            result.refresh()
            assert result.status == TaskResultStatus.READY  # retrying

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.worker_ids == ["w-1", "w-2"] and result.attempts == 2
    assert [e.exception_class_path for e in result.errors] == [
        "tests.djtasks_app.tasks.DjTaskError"] * 2
    assert result.errors[-1].exception_class is DjTaskError
    assert "first try" in result.errors[0].traceback
    assert result.errors[-1].traceback.startswith("Traceback (most recent call last)")
    assert "second try" in result.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value


def test_a_cancelled_task_reads_as_failed_with_the_reason():
    result = app.add.enqueue(1, 2)
    engine.cancel(int(result.id), reason="not needed any more")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.worker_ids == []
    [error] = result.errors
    assert error.exception_class is TaskCancelled
    assert "not needed any more" in error.traceback


def test_a_task_waiting_for_its_parent_reads_as_ready_until_it_runs():
    parent = app.add.enqueue(1, 2)
    # A graph of django.tasks functions, through the engine (the framework has no parents).
    child = engine.enqueue(name="tests.djtasks_app.tasks.add", type="django_task",
                           payload={"func": "tests.djtasks_app.tasks.add", "args": [3, 4],
                                    "kwargs": {}, "takes_context": False},
                           depends_on=[int(parent.id)])
    assert child.status == "waiting"
    read = task_backends["default"].get_result(str(child.pk))
    assert (read.status, read.args, read.worker_ids, read.started_at) == (
        TaskResultStatus.READY, [3, 4], [], None)
    assert app.add.get_result(str(child.pk)).status == TaskResultStatus.READY

    claimed = _claim("w-1")  # the parent: a waiting task is not claimable
    assert claimed.id == int(parent.id)
    engine.complete(worker_id="w-1", outcomes=[
        engine.Outcome(task_id=claimed.id, attempt=claimed.attempt, result=3)])
    read.refresh()
    assert (_row(read).status, read.status) == ("queued", TaskResultStatus.READY)
    assert _claim("w-1").id == child.pk
    read.refresh()
    assert read.status == TaskResultStatus.RUNNING


@pytest.mark.django_db(transaction=True)  # the rescue compares leases with now()
def test_a_lost_worker_reads_as_a_worker_lost_error():
    result = app.add.enqueue(1, 2)
    engine.claim(worker_id="w-gone", limit=1, lease_seconds=0.01)
    assert wait_until(engine.rescue_expired, timeout=5) == {int(result.id): "retrying"}
    result.refresh()
    assert result.status == TaskResultStatus.READY and result.worker_ids == ["w-gone"]
    [error] = result.errors
    assert error.exception_class is WorkerLost
    assert "worker w-gone lost" in error.traceback


def test_errors_come_from_the_history_columns_not_the_text():
    result = app.fails.enqueue("x")
    claimed = _claim("w-1")
    engine.fail(worker_id="w-1", outcomes=[engine.Outcome(
        task_id=claimed.id, attempt=claimed.attempt, error="a human line that names no class",
        error_class="builtins.KeyError", error_message="'k'", traceback="the stored trace")])
    result.refresh()
    [error] = result.errors
    assert error.exception_class is KeyError
    assert error.traceback == "the stored trace"


def test_get_result_of_unknown_ids_raises_the_frameworks_error():
    other = engine.enqueue(name="not a django task", type="simulate", payload={})
    real = app.add.enqueue(1, 2)
    # Only the one id parser's ids (tasks.states.parse_id): no sign, no other digits.
    for bad in ("999999999", "abc", str(2**70), "-1", str(other.pk), f"+{real.id}",
                f"{real.id}.0", "\u0663", None):
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result(bad)
    fails = app.fails.enqueue("x")
    with pytest.raises(TaskResultMismatch):
        app.add.get_result(fails.id)


# --- bad input: the framework's own exception, a clear message, nothing stored --------


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ([object()], {}, r"args\[0\] is not JSON-serialisable"),
    ([], {"b": {1, 2}}, r"kwargs\['b'\] is not JSON-serialisable"),
    ([float("nan")], {}, r"args\[0\] is not JSON-serialisable"),
    ([{1: "a"}], {}, r"args\[0\] does not survive a JSON round trip"),
])
def test_non_json_arguments_are_refused(args, kwargs, message):
    with pytest.raises(InvalidTask, match=message):
        app.add.enqueue(*args, **kwargs)
    assert Task.objects.count() == 0


def test_an_unknown_queue_is_refused():
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        app.add.using(queue_name="nope")
    with override_settings(TASKS={"default": {"BACKEND": BACKEND,
                                              "QUEUES": ["default", "emails"]}}):
        emails = app.add.using(queue_name="emails")
    # The configured queues shrank since: enqueue validates again.
    with pytest.raises(InvalidTask, match="Queue 'emails' is not valid"):
        emails.enqueue(1, 2)
    assert Task.objects.count() == 0


def test_a_priority_out_of_range_is_refused():
    for priority in (101, -101):
        with pytest.raises(InvalidTask, match="priority must be a whole number between -100"):
            app.add.using(priority=priority)
    with pytest.raises(InvalidTask, match="priority"):
        task(priority=500)(app.plain)
    assert Task.objects.count() == 0


def test_a_function_that_is_not_a_module_level_task_is_refused():
    def local(x):
        return x

    with pytest.raises(InvalidTask, match="module level"):
        task(local)
    with pytest.raises(InvalidTask, match="is a function, not a django.tasks Task"):
        app.plain_task.enqueue(1)
    assert Task.objects.count() == 0


def test_bad_extras_are_refused():
    with pytest.raises(InvalidTask, match="max_retries must be a whole number between 0"):
        app.add.using(max_retries=-1)
    with pytest.raises(InvalidTask, match="timeout must be a whole number between 1"):
        app.add.using(timeout=0)
    with pytest.raises(InvalidTask, match="idempotency_key"):
        app.add.using(idempotency_key="x" * 256)
    assert Task.objects.count() == 0


def test_the_plugin_runs_only_task_objects_even_through_the_engine():
    """The API can enqueue `django_task` directly: the func must be a @task object."""
    for func, message in (("os.system", "not a django.tasks Task"),
                          ("no.such.module.fn", "is not loaded in this process"),
                          ("antigravity.fly", "is not loaded in this process"),
                          ("tests.djtasks_app.tasks.plain", "not a django.tasks Task")):
        with pytest.raises(EngineInvalidTask, match=message):
            engine.enqueue(name="x", type="django_task",
                           payload={"func": func, "args": ["rm -rf /"]})
    with pytest.raises(EngineInvalidTask, match="takes_context"):
        engine.enqueue(name="x", type="django_task", payload={
            "func": "tests.djtasks_app.tasks.add", "args": [1, 2], "takes_context": True})
    assert Task.objects.count() == 0 and TaskHistory.objects.count() == 0
    assert "antigravity" not in sys.modules


def test_system_checks_name_bad_options():
    backend = TaskServiceBackend("bad", {"OPTIONS": {"MAX_RETRIES": -1, "RETRIES": 2}})
    ids = sorted(e.id for e in backend.check())
    assert ids == ["taskservice.E602", "taskservice.E603"]
    assert TaskServiceBackend("good", {"OPTIONS": {"TIMEOUT": 30}}).check() == []
