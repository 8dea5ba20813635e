"""Errors raised by the task engine. The API maps them to 400/404/409."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from taskcli.errortext import flatten as _flatten


class TaskServiceError(Exception):
    """Base class for every error of the Task Service."""


class InvalidTask(TaskServiceError):
    """A task submitted for enqueue is not valid; `errors` maps field -> messages."""

    def __init__(self, errors: dict[str, Any] | str):
        if isinstance(errors, str):
            errors = {"non_field_errors": [errors]}
        self.errors = errors
        super().__init__(_flatten(errors))


class UnknownTaskType(InvalidTask):
    """The task's type names no registered plugin."""

    def __init__(self, type_name: str, known: list[str]):
        self.type_name = type_name
        self.known = known
        super().__init__(
            {"type": [f"Unknown task type {type_name!r}. Known types: {', '.join(known)}."]}
        )


class TaskNotFound(TaskServiceError):
    """No task has that id."""

    def __init__(self, task_id):
        self.task_id = task_id
        super().__init__(f"Task {task_id} not found.")


class WorkflowNotFound(TaskNotFound):
    """No workflow has that id (a 404, like a task)."""

    def __init__(self, workflow_id):
        self.task_id = workflow_id
        TaskServiceError.__init__(self, f"Workflow {workflow_id} not found.")


class InvalidTransition(TaskServiceError):
    """The task's current status does not allow the requested change."""

    def __init__(self, task_id: int, status: str, action: str):
        self.task_id = task_id
        self.status = status
        self.action = action
        super().__init__(f"Cannot {action} task {task_id}: it is {status}.")


class IdempotencyConflict(TaskServiceError):
    """An idempotency key was reused with different fields; `task_id` names its task."""

    def __init__(self, task_id: int, key: str):
        self.task_id = task_id
        self.key = key
        super().__init__(
            f"Idempotency key {key!r} was already used for task {task_id} with different "
            "fields. Use a new key, or send the same fields to get that task back.")


class PluginConfigurationError(ImproperlyConfigured):
    """A plugin named in settings or an entry point cannot be loaded."""


class WorkerLost(TaskServiceError):  # noqa: N818 - reads as what happened, like TaskCancelled
    """A run ended because its worker was lost or stopped: its lease expired (the rescuer
    records this class on the `lease_expired` row) or the worker shut down mid-run."""


class InvalidInput(InvalidTask):
    """A queue setting or a schedule is not valid; `errors` maps field -> messages."""


class NotFound(TaskServiceError):
    """No queue or schedule has that name or id."""

    def __init__(self, kind: str, key: Any):
        self.kind = kind
        self.key = key
        super().__init__(f"No {kind} {key!r}.")
