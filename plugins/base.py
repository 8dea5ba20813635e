"""What a task type is: a plugin validates payloads and runs them."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class PayloadError(Exception):
    """A payload the plugin rejects; `errors` maps payload field -> messages."""

    def __init__(self, errors: dict[str, list[str] | str] | str):
        if isinstance(errors, str):
            errors = {"payload": [errors]}
        self.errors = {k: [v] if isinstance(v, str) else list(v) for k, v in errors.items()}
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


class TaskCancelled(Exception):
    """Raised inside a plugin (by ctx.check()) when its task has been cancelled."""


class NotRunnableHere(Exception):
    """Raised by a plugin before it does any work when this worker cannot run the task
    (e.g. a module it cannot import) but another might: the worker hands the task back
    without counting an attempt and does not claim it again for a while."""


@dataclass
class TaskContext:
    """What a running plugin knows about its task, and how it notices cancellation."""

    task_id: int
    attempt: int
    deadline: float  # time.monotonic() by which the task must finish
    logger: logging.Logger
    task_type: str = ""
    queue: str = "default"
    worker_id: str = ""
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    cancel_reason: str = ""

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on cancellation; True if cancelled."""
        return self._cancel.wait(max(0.0, seconds))

    def check(self) -> None:
        """Raise TaskCancelled if the task was cancelled (or timed out)."""
        if self._cancel.is_set():
            raise TaskCancelled(self.cancel_reason or "cancelled")

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self._cancel.set()


class Plugin:
    """Base class of a task type. Subclass, set `name`, implement `run`.

    Options from settings (TASKS_PLUGINS) arrive as keyword arguments to __init__ and
    are kept in self.options.
    """

    name: str = ""
    description: str = ""
    # The plugin honours ctx.cancelled / ctx.sleep, so a cancel stops it cleanly.
    supports_cancel: bool = True
    # The plugin bounds its own work by ctx.deadline (the worker enforces it regardless).
    supports_timeout: bool = True
    # Running the same payload twice is harmless (delivery is at least once).
    idempotent: bool = False

    def __init__(self, **options: Any):
        self.options = options

    def validate(self, payload: dict) -> dict:
        """Return the cleaned payload or raise PayloadError. The default accepts any object."""
        if not isinstance(payload, dict):
            raise PayloadError("Payload must be a JSON object.")
        return payload

    def run(self, payload: dict, ctx: TaskContext) -> Any:
        """Do the work; return a JSON-serialisable result or raise to fail the attempt."""
        raise NotImplementedError
