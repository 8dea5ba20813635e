"""What a task type is: a plugin validates payloads and runs them."""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from collections.abc import Callable
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
    # Set by the worker: how the parents' results are read, and where progress is written.
    load_parent_results: Callable[[], dict[int, Any]] | None = field(default=None, repr=False)
    write_progress: Callable[[dict], None] | None = field(default=None, repr=False)
    last_progress: dict | None = None  # the latest value reported (written or not)
    _parents: dict[int, Any] | None = field(default=None, repr=False)
    _progress_written_at: float = field(default=-math.inf, repr=False)
    _progress_pending: bool = field(default=False, repr=False)

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

    def unavailable_reason(self) -> str | None:
        """Why this process cannot run the type (a setting it needs is missing, say), or
        None. A worker does not claim the types whose plugin is unavailable, and hands back
        a task of one it got anyway (NotRunnableHere) for a worker that can run it.
        Enqueueing is validate's business: a web process may refuse or accept regardless."""
        return None

    def available(self) -> bool:
        """This process can run the type (unavailable_reason() is None)."""
        return self.unavailable_reason() is None
