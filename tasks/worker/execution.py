"""Execution: executor threads run plugins; the monitor ends runs that overrun.

Each executor takes a job, calls its plugin and reports the outcome to the completer.
The monitor (no database) ends a run at its deadline, or CANCEL_GRACE after a cancel,
whether or not the plugin returns: the plugin is told through ctx.cancelled, the task
leaves `running` at once, and if the plugin has still not returned a grace later, its
thread is abandoned (it exits whenever the plugin returns) and a fresh one takes its slot.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
import traceback
from collections.abc import Iterable

from django.db import Error as DatabaseError
from django.db import close_old_connections

from plugins import registry
from plugins.base import NotRunnableHere, Snooze, TaskCancelled
from tasks import engine
from tasks.exceptions import UnknownTaskType, WorkerLost
from tasks.worker.completer import Completer
from tasks.worker.dbretry import close_connection
from tasks.worker.hooks import Hooks
from tasks.worker.slots import CANCELLED, DECLINE, FAIL, OK, SNOOZE, Job, Slots

logger = logging.getLogger("tasks.worker")

CANCEL_GRACE = 1.0  # seconds a cancelled plugin gets to stop before it is abandoned
MONITOR_TICK = 0.05


def class_path(cls: type) -> str:
    """An exception class as `module.qualname` (`builtins.ValueError` for builtins)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def format_error(exc: BaseException) -> str:
    """The error text of a failed run: its class and message, then the traceback. The
    engine stores it bounded and storable (tasks.jsonsafe.storable_error)."""
    text = "".join(traceback.format_exception(exc)).strip()
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    head = f"{name}: {exc}"
    return f"{head}\n\n{text}" if text != head else head


def describe_error(exc: BaseException) -> dict[str, str]:
    """The Outcome fields of a run that raised `exc`: the human text (format_error) and
    the error as data (class path, message, traceback) for the history row."""
    return {"error": format_error(exc), "error_class": class_path(type(exc)),
            "error_message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)).strip()}


def worker_ending(cls: type[BaseException], message: str,
                  exc: BaseException | None = None) -> dict[str, str]:
    """The Outcome fields of a run the worker itself ended (timeout, cancel, shutdown):
    `cls` names why, and the traceback is the plugin's if it raised on the way out."""
    tb = "".join(traceback.format_exception(exc)).strip() if exc is not None else ""
    return {"error": message, "error_class": class_path(cls), "error_message": message,
            "traceback": tb}


def _stopped_as(reason: str) -> type[BaseException]:
    """The class a run stopped for `reason` (ctx.cancel_reason) ends with."""
    if reason == "cancelled":
        return TaskCancelled
    return TimeoutError if reason == "timeout" else WorkerLost


class Execution:
    def __init__(self, *, slots: Slots, completer: Completer, hooks: Hooks):
        self.slots = slots
        self.completer = completer
        self.hooks = hooks
        self.inbox: stdqueue.SimpleQueue[Job | None] = stdqueue.SimpleQueue()  # claimed, not taken
        self.executors: set[threading.Thread] = set()
        self.abandoned: set[threading.Thread] = set()
        self.ended_early: set[Job] = set()  # the monitor's: runs ended before the plugin

    # --- executors -------------------------------------------------------------------

    def start_executor(self) -> None:
        t = threading.Thread(target=self._executor, name="executor", daemon=True)
        self.executors.add(t)
        t.start()

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def stop_executors(self) -> None:
        """Each idle executor exits; a busy one after its run."""
        for _ in list(self.executors):
            self.inbox.put(None)

    def _executor(self) -> None:
        me = threading.current_thread()
        while True:
            job = self.inbox.get()
            if job is None:
                break
            job.runner = me
            kind, outcome = self._execute(job)
            self._flush_progress(job)  # the last value, before the run ends in the database
            job.returned = True
            reported = job.finish()
            if reported:
                self.report(job, kind, outcome)
            self.hooks.emit("run_returned", task_id=job.task.id, reported=reported)
            if me in self.abandoned:  # the monitor gave this run up and replaced us
                self.abandoned.discard(me)
                break
        self.executors.discard(me)
        close_connection()

    def _execute(self, job: Job) -> tuple[str, engine.Outcome]:
        ctx = job.ctx
        try:
            plugin = registry.runnable(job.task.type)
            result = plugin.run(job.task.payload, ctx)
        except Snooze as exc:
            return SNOOZE, job.outcome(delay=exc.seconds)
        except NotRunnableHere as exc:
            # Not this worker's to fail: handed back uncounted, and skipped here a while.
            self.slots.decline(job.task.id)
            logger.info("task %s: cannot run here (%s); handed back", job.task.id, exc,
                        extra={"action": "decline", "task_id": job.task.id})
            return DECLINE, job.outcome(**describe_error(exc))
        except TaskCancelled as exc:
            if ctx.cancel_reason == "cancelled":
                return CANCELLED, job.outcome(**worker_ending(
                    TaskCancelled, "cancelled while running", exc))
            return FAIL, job.outcome(**worker_ending(
                _stopped_as(ctx.cancel_reason), f"stopped: {ctx.cancel_reason}", exc))
        except Exception as exc:
            fields = describe_error(exc)
            if isinstance(exc, UnknownTaskType):  # a one-line text: no plugin code ran
                fields["error"] = str(exc)
            return FAIL, job.outcome(**fields)
        finally:
            close_old_connections()
        if ctx.cancelled and ctx.cancel_reason == "cancelled":
            return CANCELLED, job.outcome(**worker_ending(TaskCancelled,
                                                          "cancelled while running"))
        return OK, job.outcome(result=result)

    @staticmethod
    def _flush_progress(job: Job) -> None:
        try:
            job.ctx.flush_progress()
        except (DatabaseError, ValueError) as exc:  # progress is a report, not the run
            logger.warning("task %s: its progress was not stored (%s)", job.task.id, exc,
                           extra={"action": "progress_lost", "task_id": job.task.id})

    def report(self, job: Job, kind: str, outcome: engine.Outcome) -> None:
        """Hand the outcome to the completer, then free the slot (in that order, so a
        drain that sees no running job also sees the outcome waiting to be written)."""
        self.completer.submit(kind, outcome)
        self.slots.remove(job)

    # --- cancellation ----------------------------------------------------------------

    def request_cancel(self, ids: Iterable[int]) -> None:
        """Tell these runs' plugins to stop; the monitor ends them after CANCEL_GRACE."""
        now = time.monotonic()
        with self.slots.cond:  # the listener and the heartbeat may both ask
            for task_id in ids:
                job = self.slots.get(task_id)
                if job is not None and job.cancel_deadline is None:
                    job.ctx.cancel("cancelled")
                    job.cancel_deadline = now + CANCEL_GRACE
                    logger.info("cancelling task %s", task_id,
                                extra={"action": "cancel", "task_id": task_id})

    # --- the monitor: deadlines and cancel grace, no database ------------------------

    def monitor(self, stopped: threading.Event) -> None:
        """The monitor thread: until `stopped` is set."""
        while not stopped.wait(MONITOR_TICK):
            now = time.monotonic()
            for job in self.slots.jobs():
                if now >= job.deadline:
                    job.ctx.cancel("timeout")
                    self._end_early(job, FAIL, job.outcome(**worker_ending(
                        TimeoutError, f"timed out after {job.task.timeout_seconds}s")))
                elif job.cancel_deadline is not None and now >= job.cancel_deadline:
                    self._end_early(job, CANCELLED, job.outcome(**worker_ending(
                        TaskCancelled,
                        f"cancelled; the plugin did not stop within {CANCEL_GRACE:.0f}s")))
            for job in [j for j in self.ended_early if now >= j.stuck_after]:
                self.ended_early.discard(job)
                abandon = not job.returned and job.runner is not None
                if abandon:
                    # Still inside the plugin a grace after its end: a fresh thread takes
                    # its place, and this one exits whenever the plugin returns.
                    self.abandoned.add(job.runner)
                    self.start_executor()
                    logger.warning("task %s: the plugin did not return; its thread is "
                                   "abandoned", job.task.id,
                                   extra={"action": "abandon", "task_id": job.task.id})
                self.hooks.emit("grace_over", task_id=job.task.id, abandoned=abandon)

    def _end_early(self, job: Job, kind: str, outcome: engine.Outcome) -> None:
        """End a run at its deadline (or cancel grace) whether or not the plugin returns.

        The task leaves `running` now; the plugin has been told (ctx.cancelled) and gets
        CANCEL_GRACE more seconds to return before its thread is declared stuck.
        """
        if not job.finish():
            return
        job.stuck_after = time.monotonic() + CANCEL_GRACE
        self.ended_early.add(job)
        self.report(job, kind, outcome)
        logger.warning("task %s: %s", job.task.id, outcome.error,
                       extra={"action": "end_early", "task_id": job.task.id})
        self.hooks.emit("ended_early", task_id=job.task.id, kind=kind, error=outcome.error)
