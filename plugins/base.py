"""What a task type is: a plugin validates payloads and runs them."""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from collections.abc import Callable
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


MAX_SNOOZE_SECONDS = 366 * 24 * 3600


class Snooze(Exception):  # noqa: N818 - the plugin's word: raise Snooze(60)
    """Raised by a plugin (or ctx.snooze) to end its run for now: the task is queued again,
    due after `seconds`, and no retry is used."""

    def __init__(self, seconds: float):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or not 0 <= seconds <= MAX_SNOOZE_SECONDS:
            raise ValueError(f"snooze needs 0 to {MAX_SNOOZE_SECONDS} seconds, got {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(f"snoozed for {self.seconds:g}s")


PROGRESS_INTERVAL = 1.0  # seconds: at most one progress write per task this often


def _number(name: str, value: Any, *, optional: bool = False) -> float | int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"progress {name} must be a finite number, got {value!r}")
    return value


class NotRunnableHere(Exception):
    """Raised by a plugin before it does any work when this worker cannot run the task
    (e.g. a module it cannot import) but another might: the worker hands the task back
    without counting an attempt and does not claim it again for a while."""


_EVENT_LOCK = threading.Lock()  # creates a context's wake-up event once, when first needed


class TaskContext:
    """What a running plugin knows about its task, and how it notices cancellation.

    One is made per run on the worker's hot path, so it is a plain slotted object whose
    wake-up event is created only when a plugin sleeps or a run is cancelled.
    """

    __slots__ = ("task_id", "attempt", "deadline", "logger", "task_type", "queue",
                 "worker_id", "cancel_reason", "load_parent_results", "write_progress",
                 "last_progress", "_cancelled", "_event", "_parents", "_progress_written_at",
                 "_progress_pending")

    def __init__(self, *, task_id: int, attempt: int, deadline: float,
                 logger: logging.Logger, task_type: str = "", queue: str = "default",
                 worker_id: str = "",
                 load_parent_results: Callable[[], dict[int, Any]] | None = None,
                 write_progress: Callable[[dict], None] | None = None):
        self.task_id = task_id
        self.attempt = attempt
        self.deadline = deadline  # time.monotonic() by which the task must finish
        self.logger = logger
        self.task_type = task_type
        self.queue = queue
        self.worker_id = worker_id
        self.cancel_reason = ""
        # Set by the worker: how the parents' results are read, and where progress goes.
        self.load_parent_results = load_parent_results
        self.write_progress = write_progress
        self.last_progress: dict | None = None  # the latest value reported (written or not)
        self._cancelled = False
        self._event: threading.Event | None = None
        self._parents: dict[int, Any] | None = None
        self._progress_written_at = -math.inf
        self._progress_pending = False

    def __repr__(self) -> str:
        return (f"TaskContext(task_id={self.task_id!r}, attempt={self.attempt!r}, "
                f"task_type={self.task_type!r}, queue={self.queue!r})")

    @property
    def parent_results(self) -> dict[int, Any]:
        """{parent task id: its result}: what the tasks this one depends on returned."""
        if self._parents is None:
            loader = self.load_parent_results
            self._parents = loader() if loader is not None else {}
        return self._parents

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report how far the run has got. Cheap to call often: it is written at most once
        every PROGRESS_INTERVAL seconds, and the last value when the run ends."""
        self.last_progress = {
            "done": _number("done", done), "total": _number("total", total, optional=True),
            "message": str(message),
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        }
        self._progress_pending = True
        if time.monotonic() - self._progress_written_at >= PROGRESS_INTERVAL:
            self.flush_progress()

    def flush_progress(self) -> None:
        """Write the last reported progress if it has not been written yet."""
        if not self._progress_pending or self.write_progress is None:
            return
        self._progress_pending = False
        self._progress_written_at = time.monotonic()
        self.write_progress(dict(self.last_progress or {}))

    def snooze(self, seconds: float) -> None:
        """End this run for now; the task runs again after `seconds` (no retry is used)."""
        raise Snooze(seconds)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def _wake_event(self) -> threading.Event:
        event = self._event
        if event is None:
            with _EVENT_LOCK:  # cancel() may run in another thread at the same moment
                if self._event is None:
                    self._event = threading.Event()
                    if self._cancelled:
                        self._event.set()
                event = self._event
        return event

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on cancellation; True if cancelled."""
        if self._cancelled:
            return True
        return self._wake_event().wait(max(0.0, seconds))

    def check(self) -> None:
        """Raise TaskCancelled if the task was cancelled (or timed out)."""
        if self._cancelled:
            raise TaskCancelled(self.cancel_reason or "cancelled")

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        with _EVENT_LOCK:
            self._cancelled = True
            if self._event is not None:
                self._event.set()


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

    def unavailable_reason(self) -> str | None:
        """Why this process cannot run the type (a setting it needs is missing, say), or
        None. A worker does not claim the types whose plugin is unavailable, and hands back
        a task of one it got anyway (NotRunnableHere) for a worker that can run it.
        Enqueueing is validate's business: a web process may refuse or accept regardless."""
        return None
