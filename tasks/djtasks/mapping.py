"""Between the engine and the framework: statuses, priorities, errors and results."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from typing import Any

from django.tasks.base import (
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    Task,
    TaskError,
    TaskResult,
    TaskResultStatus,
)
from django.tasks.exceptions import InvalidTask

from plugins.base import NotRunnableHere, TaskCancelled
from tasks.djtasks.payload import load_task
from tasks.states import Status

TASK_TYPE = "django_task"
PRIORITY_SCALE = 10  # framework -100..100 -> engine -1000..1000

STATUS_MAP = {
    Status.WAITING: TaskResultStatus.READY,  # the framework has no "blocked": not yet running
    Status.QUEUED: TaskResultStatus.READY,
    Status.RETRYING: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskServiceTask(Task):
    """A framework Task with the engine's per-task extras (None: the backend default)."""

    max_retries: int | None = None
    timeout: int | None = None  # seconds
    idempotency_key: str | None = None

    def using(self, *, priority: int | None = None, queue_name: str | None = None,
              run_after: datetime.datetime | None = None, backend: str | None = None,
              max_retries: int | None = None, timeout: int | None = None,
              idempotency_key: str | None = None) -> TaskServiceTask:
        """The framework's `using`, plus max_retries, timeout and idempotency_key."""
        # Explicit base call: zero-argument super() does not work in slots dataclasses.
        task = Task.using(self, priority=priority, queue_name=queue_name,
                          run_after=run_after, backend=backend)
        extras = {"max_retries": max_retries, "timeout": timeout,
                  "idempotency_key": idempotency_key}
        extras = {k: v for k, v in extras.items() if v is not None}
        return replace(task, **extras) if extras else task


_FALLBACK_CLASS = "builtins.Exception"  # a row written before errors were stored as data
_CANCELLED_CLASS = f"{TaskCancelled.__module__}.{TaskCancelled.__qualname__}"


def _errors(history: list[tuple]) -> list[TaskError]:
    """One TaskError per run that ended in error, read from the history row's columns."""
    errors: list[TaskError] = []
    reason = ""
    for event, _worker, details, _at, error_class, message, trace in history:
        if event == "cancel_requested":
            reason = details  # why a person cancelled the running task
        elif event in ("retry_scheduled", "task_failed", "lease_expired"):
            errors.append(TaskError(exception_class_path=error_class or _FALLBACK_CLASS,
                                    traceback=trace or message or details))
        elif event == "task_cancelled":
            # Why it was cancelled matters more than where the plugin stopped (the history
            # row keeps that traceback): the person's reason, then how the run ended.
            text = message or details
            if reason and reason not in text:
                text = f"{reason}: {text}" if text else reason
            errors.append(TaskError(
                exception_class_path=error_class or _CANCELLED_CLASS,
                traceback=text or "cancelled"))
    return errors


def build_result(row, *, task: Task, backend: str, history: list[tuple]) -> TaskResult:
    """A framework TaskResult for our Task `row`; `history` is read_history's rows of that
    task (event, worker, details, created_at, error_class, error_message, traceback),
    oldest first."""
    starts = _runs_started(history)
    payload = row.payload or {}
    result = TaskResult(
        task=task,
        id=str(row.pk),
        status=STATUS_MAP[row.status],
        enqueued_at=row.created_at,
        started_at=starts[0][1] if starts else None,
        finished_at=row.finished_at,
        last_attempted_at=starts[-1][1] if starts else None,
        args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}),
        backend=backend,
        errors=_errors(history),
        worker_ids=[worker for worker, _at in starts],
    )
    if row.status == Status.SUCCEEDED:
        object.__setattr__(result, "_return_value", row.result)
    return result


_HISTORY_EVENTS = ("task_started", "retry_scheduled", "task_failed", "lease_expired",
                   "cancel_requested", "task_cancelled", "task_released")
_DECLINED_CLASS = f"{NotRunnableHere.__module__}.{NotRunnableHere.__qualname__}"


def _runs_started(history: list[tuple]) -> list[tuple]:
    """(worker, started at) of every run, less the claims a worker handed straight back
    because it could not run the task (not an attempt)."""
    starts: list[tuple] = []
    for event, worker, _details, at, error_class, *_ in history:
        if event == "task_started":
            starts.append((worker, at))
        elif (event == "task_released" and error_class == _DECLINED_CLASS and starts
              and starts[-1][0] == worker):
            starts.pop()
    return starts


def read_history(task_id: int) -> list[tuple]:
    from tasks.models import TaskHistory

    return list(TaskHistory.objects.filter(task_id=task_id, event_type__in=_HISTORY_EVENTS)
                .order_by("created_at", "id")
                .values_list("event_type", "worker_id", "details", "created_at",
                             "error_class", "error_message", "traceback"))


def task_for_row(row, task: Task | None = None) -> Task:
    """The framework Task a row describes: its function, queue and priority, and for a
    TaskServiceTask its extras. Raises ValueError if the function cannot be loaded."""
    task = task or load_task((row.payload or {}).get("func"))
    changes: dict[str, Any] = {
        "priority": max(TASK_MIN_PRIORITY,
                        min(TASK_MAX_PRIORITY, round(row.priority / PRIORITY_SCALE))),
        "queue_name": row.queue,
    }
    if isinstance(task, TaskServiceTask):
        changes.update(max_retries=row.max_retries, timeout=row.timeout_seconds,
                       idempotency_key=row.idempotency_key)
    try:
        return task.using(**changes)
    except InvalidTask:
        return task  # e.g. its queue left QUEUES since: describe the row as it can
