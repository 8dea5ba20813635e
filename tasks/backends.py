"""A `django.tasks` backend: `@task` functions from any Django project run on the engine.

    TASKS = {"default": {"BACKEND": "tasks.backends.TaskServiceBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"MAX_RETRIES": 5, "TIMEOUT": 120}}}

`enqueue` stores a task of type `django_task` through `tasks.queue.enqueue`, so it gets
history, events, leases, retries, the admin and the API like any other task; a worker
runs it through `plugins.django_task`. Mapping onto the engine:

- result id: our task id, as a string;
- priority: the framework's -100..100 times PRIORITY_SCALE (10), so the framework's range
  covers the engine's whole -1000..1000 and @task(priority=100) outranks every API task
  below 1000;
- `run_after` -> `run_at`; `queue_name` -> `queue` (it must be one of QUEUES);
- per-task extras (max retries, timeout in seconds, idempotency key) are fields of
  `TaskServiceTask`, this backend's `task_class`: `@task(max_retries=5, timeout=30)` or
  `my_task.using(idempotency_key="order-42").enqueue(...)`. OPTIONS MAX_RETRIES and
  TIMEOUT are the defaults; without them the engine's own defaults apply. The backoff
  between retries is the engine's (TASKS_BACKOFF_BASE / TASKS_BACKOFF_CAP of the workers).

`get_result` maps our states onto the framework's: queued/retrying -> READY, running ->
RUNNING, succeeded -> SUCCESSFUL, failed/cancelled -> FAILED, with one `TaskError` per
failed run (and one for a cancellation), `worker_ids` one per run started (so
`attempts` is our `attempts`), and `return_value` from our `result`.
"""

from __future__ import annotations

import builtins
import datetime
import json
import re
import sys
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from django.core import checks
from django.db import transaction
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import (
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    Task,
    TaskError,
    TaskResult,
    TaskResultStatus,
)
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

TASK_TYPE = "django_task"
PRIORITY_SCALE = 10  # framework -100..100 -> engine -1000..1000
OPTION_NAMES = {"MAX_RETRIES", "TIMEOUT"}
_PG_BIGINT_MAX = 2**63 - 1

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


# --- the task class: the framework's Task plus our per-task extras --------------------


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


# --- helpers shared with plugins.django_task ----------------------------------------


def load_task(path: str, *, loaded_only: bool = False) -> Task:
    """The framework Task object at dotted `path`; ValueError naming the problem.

    `loaded_only` refuses modules this process has not imported, so a payload from the
    API cannot make the service import (and run the top level of) an arbitrary module.
    """
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"{path!r} is not a dotted path to a @task function.")
    module = path.rpartition(".")[0]
    if loaded_only and module not in sys.modules:
        raise ValueError(f"Module {module!r} is not loaded in this process: enqueue "
                         "django_task tasks with the @task's .enqueue() from code that "
                         "imports it.")
    try:
        obj = import_string(path)
    except ImportError as exc:
        raise ValueError(f"Cannot import {path!r}: {exc}") from None
    if not isinstance(obj, Task):
        raise ValueError(
            f"{path!r} is a {type(obj).__name__}, not a django.tasks Task: decorate the "
            "module-level function with @task and keep the decorated object under its name."
        )
    return obj


def json_arguments(args: Any, kwargs: Any) -> tuple[list, dict]:
    """args/kwargs as they will come back from the database, or InvalidTask naming the
    first argument that does not survive a JSON round trip."""
    checked: list = []
    for label, value in [*((f"args[{i}]", v) for i, v in enumerate(args)),
                         *((f"kwargs[{k!r}]", v) for k, v in dict(kwargs).items())]:
        try:
            normal = normalize_json(value)
            text = json.dumps(normal, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidTask(
                f"Task argument {label} is not JSON-serialisable: {exc}."
            ) from None
        if json.loads(text) != normal:
            # e.g. {1: "a"} comes back as {"1": "a"}: the task would see other values.
            raise InvalidTask(
                f"Task argument {label} does not survive a JSON round trip "
                f"(mapping keys must be strings): {value!r}."
            )
        checked.append(normal)
    return checked[: len(args)], dict(zip(dict(kwargs), checked[len(args):], strict=True))


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


# --- the backend --------------------------------------------------------------------


class TaskServiceBackend(BaseTaskBackend):
    task_class = TaskServiceTask

    # run_after maps onto our run_at.
    supports_defer = True
    # Workers run coroutine functions with async_to_sync in their executor threads.
    supports_async_task = True
    # Results live in PostgreSQL: readable from any process.
    supports_get_result = True
    # Priority is scaled onto ours; the claim orders by it.
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.default_max_retries = self.options.get("MAX_RETRIES")
        self.default_timeout = self.options.get("TIMEOUT")

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if task.func.__module__ == "__main__":
            raise InvalidTask("Task function must live in an importable module, not "
                              "__main__: workers import it by its module path.")
        from tasks.conf import engine

        cfg = engine()
        for name, value, low, high in (
            ("max_retries", getattr(task, "max_retries", None), 0, cfg.MAX_RETRIES_LIMIT),
            ("timeout", getattr(task, "timeout", None), 1, cfg.MAX_TIMEOUT),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= high):
                raise InvalidTask(f"{name} must be a whole number between {low} and {high}, "
                                  f"got {value!r}.")
        key = getattr(task, "idempotency_key", None)
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
            raise InvalidTask("idempotency_key must be a string of 1 to 255 characters.")

    def enqueue(self, task: Task, args, kwargs) -> TaskResult:
        from tasks import engine
        from tasks.exceptions import IdempotencyConflict
        from tasks.exceptions import InvalidTask as EngineInvalidTask
        from tasks.models import Origin

        self.validate_task(task)
        # The worker imports the task by path: it must find this very Task there (a
        # module-level function whose decorated object kept its name).
        try:
            found = load_task(task.module_path)
        except ValueError as exc:
            raise InvalidTask(f"Task function must be a module-level @task: {exc}") from None
        if found.func is not task.func:
            raise InvalidTask(f"{task.module_path!r} names another function than this task's: "
                              "the worker would run that one.")
        args, kwargs = json_arguments(args, kwargs)
        max_retries = getattr(task, "max_retries", None)
        timeout = getattr(task, "timeout", None)
        try:
            row = engine.enqueue(
                name=task.module_path[:255],
                type=TASK_TYPE,
                payload={"func": task.module_path, "args": args, "kwargs": kwargs,
                         "takes_context": task.takes_context},
                priority=task.priority * PRIORITY_SCALE,
                queue=task.queue_name,
                run_at=task.run_after,
                max_retries=self.default_max_retries if max_retries is None else max_retries,
                timeout_seconds=self.default_timeout if timeout is None else timeout,
                idempotency_key=getattr(task, "idempotency_key", None),
                origin=Origin.DJANGO_TASKS,
            )
        except (EngineInvalidTask, IdempotencyConflict) as exc:
            raise InvalidTask(f"The task service rejected {task.module_path}: {exc}") from exc
        if not row.was_created:
            # The idempotency key names an existing task: that one is the result.
            return build_result(row, task=task, backend=self.alias,
                                history=read_history(row.pk))
        result = build_result(row, task=task, backend=self.alias, history=[])
        # Inside a caller's transaction the task exists only once it commits.
        transaction.on_commit(partial(task_enqueued.send, type(self), task_result=result))
        return result

    def get_result(self, result_id) -> TaskResult:
        from tasks.models import Task as Row

        try:
            pk = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        if not 0 < pk <= _PG_BIGINT_MAX:
            raise TaskResultDoesNotExist(result_id)
        row = Row.objects.filter(pk=pk, type=TASK_TYPE).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            task = task_for_row(row)
        except ValueError as exc:
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from None
        return build_result(row, task=task, backend=self.alias, history=read_history(pk))

    def check(self, **kwargs) -> list[checks.CheckMessage]:
        from django.apps import apps

        errors = []
        if not apps.is_installed("tasks"):
            errors.append(checks.Error(
                f"TASKS[{self.alias!r}] uses TaskServiceBackend, but 'tasks' is not in "
                "INSTALLED_APPS.", id="taskservice.E601"))
        unknown = set(self.options) - OPTION_NAMES
        if unknown:
            errors.append(checks.Error(
                f"TASKS[{self.alias!r}]['OPTIONS'] has unknown keys: "
                f"{', '.join(sorted(unknown))}. Known: {', '.join(sorted(OPTION_NAMES))}.",
                id="taskservice.E602"))
        for name, low in (("MAX_RETRIES", 0), ("TIMEOUT", 1)):
            value = self.options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < low):
                errors.append(checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS'][{name!r}] must be a whole number of "
                    f"at least {low}, got {value!r}.", id="taskservice.E603"))
        return errors

