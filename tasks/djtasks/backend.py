"""TaskServiceBackend: the `django.tasks` backend whose tasks run on the engine.

Set it in a host project's TASKS as "tasks.djtasks.backend.TaskServiceBackend"; the
mapping onto the engine is described in tasks/djtasks/__init__.py.
"""

from __future__ import annotations

from functools import partial

from django.core import checks
from django.db import transaction
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskResult
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued

from tasks.djtasks.mapping import (
    PRIORITY_SCALE,
    TASK_TYPE,
    TaskServiceTask,
    build_result,
    read_history,
    task_for_row,
)
from tasks.djtasks.payload import json_arguments, load_task
from tasks.states import parse_id

OPTION_NAMES = {"MAX_RETRIES", "TIMEOUT"}


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

        pk = parse_id(result_id)
        if pk is None:
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

