"""`django_task`: runs a `django.tasks` @task function by its module path.

The payload is what `tasks.djtasks.backend.TaskServiceBackend.enqueue` stores:
`{"func": "pkg.mod.name", "args": [...], "kwargs": {...}, "takes_context": bool}`.
Only objects decorated with @task can run (a module-level django.tasks Task at that
path), never an arbitrary callable, and enqueue accepts only modules already imported by
the enqueuing process, so the API cannot name any function to call or module to import.

The run sends the framework's `task_started` and `task_finished` signals with a
TaskResult describing this run; a function that takes context gets a ServiceTaskContext,
the framework's TaskContext plus the engine's cancellation (`cancelled`, `sleep`,
`check`). The return value becomes our `result`; an exception propagates so the engine
retries or fails the task with its traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from traceback import format_exception
from typing import Any

from django.tasks.base import TaskContext as FrameworkContext
from django.tasks.base import TaskError, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from plugins.base import NotRunnableHere, PayloadError, Plugin, TaskCancelled, TaskContext
from tasks.djtasks import mapping
from tasks.djtasks import payload as payloads


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceTaskContext(FrameworkContext):
    """The framework's TaskContext plus the engine's view of the run.

    `sleep()` wakes early when the task is cancelled (or times out), so a long task that
    sleeps or loops through it stops cleanly: `if context.sleep(5): return`.
    """

    engine: TaskContext = field(repr=False)

    @property
    def cancelled(self) -> bool:
        return self.engine.cancelled

    @property
    def remaining(self) -> float:
        """Seconds left before the task's timeout."""
        return self.engine.remaining

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True (early) if the task was cancelled or timed out."""
        return self.engine.sleep(seconds)

    def check(self) -> None:
        """Raise TaskCancelled if the task was cancelled or timed out."""
        self.engine.check()


class DjangoTaskPlugin(Plugin):
    """Runs django.tasks @task functions enqueued through TaskServiceBackend."""

    description = "Runs a Django @task function (django.tasks) by its module path"
    # Only a function that sleeps or checks through its context stops early; the worker
    # abandons any other one after the cancel grace.
    supports_cancel = False

    def validate(self, payload: dict) -> dict:
        payload = super().validate(payload)
        errors: dict[str, str] = {}
        unknown = set(payload) - {"func", "args", "kwargs", "takes_context"}
        if unknown:
            errors["payload"] = f"Unknown fields: {', '.join(sorted(unknown))}."
        task = None
        try:
            task = payloads.load_task(payload.get("func"), loaded_only=True)
        except ValueError as exc:
            errors["func"] = str(exc)
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        if not isinstance(args, list):
            errors["args"] = "Must be a JSON array."
        if not isinstance(kwargs, dict):
            errors["kwargs"] = "Must be a JSON object."
        takes_context = payload.get("takes_context", False)
        if not isinstance(takes_context, bool):
            errors["takes_context"] = "Must be true or false."
        elif task is not None and takes_context != task.takes_context:
            errors["takes_context"] = (f"{payload['func']} has takes_context="
                                       f"{task.takes_context}.")
        if errors:
            raise PayloadError(errors)
        return {"func": payload["func"], "args": args, "kwargs": kwargs,
                "takes_context": takes_context}

    def run(self, payload: dict, ctx: TaskContext) -> Any:
        from tasks.models import Task as Row

        row = Row.objects.get(pk=ctx.task_id)
        try:
            function = payloads.load_task(payload["func"])
        except payloads.ModuleUnavailable as exc:
            # Another project's task (its module is not here): that project's workers run it.
            raise NotRunnableHere(str(exc)) from exc
        task = mapping.task_for_row(row, function)
        backend = task.get_backend()
        sender = type(backend)
        result = mapping.build_result(row, task=task, backend=backend.alias,
                                       history=mapping.read_history(row.pk))
        task_started.send(sender, task_result=result)
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        try:
            # The function's current definition decides; validate() checked they agree.
            if task.takes_context:
                context = ServiceTaskContext(task_result=result, engine=ctx)
                value = task.call(context, *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = normalize_json(value)
            json.dumps(value, allow_nan=False)  # our result column is JSON: fail loudly
            ctx.check()  # cancelled while it ran: report the run as failed, not successful
        except Exception as exc:
            _finish(result, TaskResultStatus.FAILED, error=exc)
            task_finished.send(sender, task_result=result)
            raise
        _finish(result, TaskResultStatus.SUCCESSFUL, value=value)
        task_finished.send(sender, task_result=result)
        return value


def _finish(result, status: TaskResultStatus, *, value: Any = None,
            error: BaseException | None = None) -> None:
    # TaskResult is frozen; the framework's own backends update it in place like this.
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    if error is not None:
        cls = type(error)
        if isinstance(error, TaskCancelled):
            cls = TaskCancelled
        result.errors.append(TaskError(
            exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
            traceback="".join(format_exception(error)),
        ))
    else:
        object.__setattr__(result, "_return_value", value)
