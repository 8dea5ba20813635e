"""Between the engine and the framework: statuses, priorities, errors and results."""

from __future__ import annotations

import builtins
import datetime
import re
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

from tasks.djtasks.payload import load_task

TASK_TYPE = "django_task"
PRIORITY_SCALE = 10  # framework -100..100 -> engine -1000..1000

STATUS_MAP = {
    "queued": TaskResultStatus.READY,
    "retrying": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}


class WorkerLost(Exception):  # noqa: N818 - reads as what happened, like TaskCancelled
    """The worker running the task was lost: its lease expired (reported in `errors`)."""


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


def exception_path(error: str) -> str:
    """The dotted class path of the exception an engine error text describes.

    The worker stores "Name: message\\n\\n<traceback>"; the traceback's last exception
    line carries the module ("pkg.mod.Name: message", bare for builtins). Engine texts
    that are not exceptions map onto the nearest class.
    """
    head, _, tb = error.partition("\n\n")
    if head.startswith("timed out after") or head == "stopped: timeout":
        return "builtins.TimeoutError"
    if head.startswith("cancelled"):
        return "plugins.base.TaskCancelled"
    if head.startswith(("stopped:", "worker ")):
        return f"{__name__}.WorkerLost"
    if head.startswith("type: Unknown task type"):
        return "tasks.exceptions.UnknownTaskType"
    match = _EXC_LINE.match(head)
    if match:
        name = match.group(1)
        for line in reversed(tb.splitlines()):
            found = _EXC_LINE.match(line)
            if found and (found.group(1) == name or found.group(1).endswith("." + name)):
                name = found.group(1)
                break
        if "." in name:
            return name
        obj = getattr(builtins, name, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return f"builtins.{name}"
    return "builtins.Exception"


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
# engine.fail() writes these prefixes before the (shortened) error in history details.
_DETAIL_PREFIX = re.compile(r"^(?:retry \d+ of \d+ in [\d.]+s|failed after \d+ attempts): ")


def _task_error(error: str) -> TaskError:
    _, sep, tb = error.partition("\n\n")
    return TaskError(exception_class_path=exception_path(error),
                     traceback=tb if sep and tb.lstrip().startswith("Traceback") else error)


def _errors(row, history: list[tuple]) -> list[TaskError]:
    errors: list[tuple[str, TaskError]] = []
    reason = ""
    for event, _worker, details, _at in history:
        if event == "cancel_requested":
            reason = details  # why a person cancelled the running task
        elif event in ("retry_scheduled", "task_failed"):
            text = _DETAIL_PREFIX.sub("", details, count=1)
            errors.append((text, _task_error(text)))
        elif event == "lease_expired":
            errors.append((details, TaskError(exception_class_path=f"{__name__}.WorkerLost",
                                              traceback=details)))
        elif event == "task_cancelled":
            text = f"{reason}: {details}" if reason and reason != details else details
            errors.append((details, TaskError(exception_class_path="plugins.base.TaskCancelled",
                                              traceback=text or "cancelled")))
    # History keeps the first 4000 characters of each error; last_error keeps the whole
    # latest one, whose end (the failing line) matters most.
    if errors and row.last_error and row.last_error.startswith(errors[-1][0]):
        errors[-1] = (row.last_error, _task_error(row.last_error))
    return [e for _, e in errors]


def build_result(row, *, task: Task, backend: str, history: list[tuple]) -> TaskResult:
    """A framework TaskResult for our Task `row`; `history` is (event, worker, details,
    created_at) rows of that task, oldest first."""
    starts = [(worker, at) for event, worker, _d, at in history if event == "task_started"]
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
        errors=_errors(row, history),
        worker_ids=[worker for worker, _at in starts],
    )
    if row.status == "succeeded":
        object.__setattr__(result, "_return_value", row.result)
    return result


_HISTORY_EVENTS = ("task_started", "retry_scheduled", "task_failed", "lease_expired",
                   "cancel_requested", "task_cancelled")


def read_history(task_id: int) -> list[tuple]:
    from tasks.models import TaskHistory

    return list(TaskHistory.objects.filter(task_id=task_id, event_type__in=_HISTORY_EVENTS)
                .order_by("created_at", "id")
                .values_list("event_type", "worker_id", "details", "created_at"))


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
