"""The task lifecycle as data: statuses, events, and which action leads where.

Every rule about states lives here: the engine's SQL names the same statuses, the admin
and the API ask `can()` before offering an action, and the README's lifecycle table is
rendered from TRANSITIONS by a test, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Event(models.TextChoices):
    TASK_QUEUED = "task_queued"
    TASK_STARTED = "task_started"
    TASK_SUCCEEDED = "task_succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    TASK_FAILED = "task_failed"
    CANCEL_REQUESTED = "cancel_requested"
    TASK_CANCELLED = "task_cancelled"
    LEASE_EXPIRED = "lease_expired"
    TASK_REQUEUED = "task_requeued"
    TASK_RELEASED = "task_released"
    TASK_RUN_NOW = "task_run_now"
    TASK_WAITING = "task_waiting"
    DEPENDENCIES_MET = "dependencies_met"
    DEPENDENCY_FAILED = "dependency_failed"
    TASK_SNOOZED = "task_snoozed"


# A worker may claim these (when due).
CLAIMABLE_ORDER = (Status.QUEUED, Status.RETRYING)
CLAIMABLE = frozenset(CLAIMABLE_ORDER)
# Not finished: waiting for parents, waiting to run, or running.
ACTIVE = frozenset({Status.WAITING, Status.QUEUED, Status.RUNNING, Status.RETRYING})
# Not started yet (waiting for parents or for a worker): a cancel ends them at once.
PENDING = frozenset({Status.WAITING, *CLAIMABLE_ORDER})
# Final until a person retries: no worker touches them again.
FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
# Ended without a result: their children (on_parent_failure "fail") are cancelled too.
GIVEN_UP = frozenset({Status.FAILED, Status.CANCELLED})
# How a run that ended finished the task: what the dashboard's throughput counts.
RUN_OUTCOMES = frozenset({Status.SUCCEEDED, Status.FAILED})
# A person may retry these.
RETRYABLE = frozenset({Status.FAILED, Status.CANCELLED})

# Events after which there may be work to claim at once: workers wake on them.
WAKE_EVENTS = frozenset({Event.TASK_QUEUED, Event.TASK_REQUEUED, Event.TASK_RELEASED,
                         Event.LEASE_EXPIRED, Event.TASK_RUN_NOW, Event.DEPENDENCIES_MET})
# Events that end a run (or hand it back): a worker held back by a queue's concurrency
# limit wakes on them, since a slot of that queue may have freed.
FINISH_EVENTS = frozenset({Event.TASK_SUCCEEDED, Event.TASK_FAILED, Event.RETRY_SCHEDULED,
                           Event.TASK_CANCELLED, Event.TASK_RELEASED, Event.LEASE_EXPIRED,
                           Event.TASK_SNOOZED})

# The events of every task's ordinary life, three history rows of each: what the history
# table is mostly made of (its event index leaves them out).
HOT_PATH_EVENTS = (Event.TASK_QUEUED, Event.TASK_STARTED, Event.TASK_SUCCEEDED)

# What a child with parents does when one of them fails for good or is cancelled.
ON_PARENT_FAILURE = ("fail", "run")  # fail: cancelled with it (default); run: runs anyway


@dataclass(frozen=True)
class Transition:
    """One row of the lifecycle: `action` takes a task in `sources` to `target`."""

    action: str  # the engine verb: enqueue, claim, complete, fail, rescue, cancel, ...
    sources: tuple[str, ...]  # () for enqueue: the task does not exist yet
    target: str
    events: tuple[str, ...]  # the history rows it writes, in order
    when: str  # the condition, for people (the README's "event" column)
    from_text: str = ""  # the README's "from" column, when more than the sources
    to_text: str = ""  # the README's "to" column, when more than the target


TRANSITIONS: tuple[Transition, ...] = (
    Transition("enqueue", (), Status.QUEUED, (Event.TASK_QUEUED,), "enqueue",
               from_text="—"),
    Transition("enqueue", (), Status.WAITING, (Event.TASK_WAITING,),
               "enqueue with parents not yet succeeded", from_text="—"),
    Transition("unblock", (Status.WAITING,), Status.QUEUED, (Event.DEPENDENCIES_MET,),
               "every parent succeeded (or finished, for `on_parent_failure: run`)"),
    Transition("cascade", (Status.WAITING,), Status.CANCELLED, (Event.DEPENDENCY_FAILED,),
               "a parent failed for good or was cancelled (the row names it)"),
    Transition("claim", CLAIMABLE_ORDER, Status.RUNNING, (Event.TASK_STARTED,),
               "claim by a worker",
               from_text="`queued`, `retrying` (due, queue not paused, within its limits)"),
    Transition("complete", (Status.RUNNING,), Status.SUCCEEDED, (Event.TASK_SUCCEEDED,),
               "the plugin returns"),
    Transition("fail", (Status.RUNNING,), Status.RETRYING, (Event.RETRY_SCHEDULED,),
               "error or timeout, retries left", to_text="`retrying` (due after backoff)"),
    Transition("fail", (Status.RUNNING,), Status.FAILED, (Event.TASK_FAILED,),
               "error or timeout, no retries left"),
    Transition("rescue", (Status.RUNNING,), Status.RETRYING, (Event.LEASE_EXPIRED,),
               "lease expired: worker lost",
               to_text="`retrying` (due after backoff), or `failed` if none left"),
    Transition("snooze", (Status.RUNNING,), Status.QUEUED, (Event.TASK_SNOOZED,),
               "the plugin snoozes", to_text="`queued` (due after the delay, no retry used)"),
    Transition("snooze", (Status.RUNNING,), Status.CANCELLED, (Event.TASK_CANCELLED,),
               "the plugin snoozes after a cancel was asked"),
    Transition("cancel", (Status.WAITING, *CLAIMABLE_ORDER), Status.CANCELLED,
               (Event.TASK_CANCELLED,), "cancel"),
    Transition("cancel", (Status.RUNNING,), Status.CANCELLED,
               (Event.CANCEL_REQUESTED, Event.TASK_CANCELLED), "cancel",
               to_text="stays `running` until the worker stops it (within 2 s), then "
                       "`cancelled`"),
    Transition("release", (Status.RUNNING,), Status.QUEUED, (Event.TASK_RELEASED,),
               "the worker stops (SIGTERM) past its grace period"),
    Transition("decline", (Status.RUNNING,), Status.QUEUED, (Event.TASK_RELEASED,),
               "the worker cannot run it (cannot import its module)",
               to_text="`queued` (the attempt not counted; another worker runs it)"),
    Transition("retry", (Status.FAILED, Status.CANCELLED), Status.QUEUED,
               (Event.TASK_REQUEUED,), "retry by a person", to_text="`queued` (retries reset)"),
    Transition("retry", (Status.FAILED, Status.CANCELLED), Status.WAITING,
               (Event.TASK_WAITING,), "retry by a person while a parent has not succeeded",
               to_text="`waiting` (retries reset; it runs after its parents)"),
    Transition("run_now", (Status.QUEUED,), Status.QUEUED, (Event.TASK_RUN_NOW,),
               "run now by a person", from_text="`queued` (due later)",
               to_text="`queued`, due now"),
    Transition("run_now", (Status.RETRYING,), Status.RETRYING, (Event.TASK_RUN_NOW,),
               "run now by a person", from_text="`retrying` (due later)",
               to_text="`retrying`, due now"),
    Transition("rewait", (Status.CANCELLED,), Status.WAITING, (Event.TASK_WAITING,),
               "a person retries the parent whose failure cancelled it",
               from_text="`cancelled` by `dependency_failed`"),
)

def sources(action: str) -> frozenset[str]:
    """Every status `action` may start from."""
    found = {s for t in TRANSITIONS if t.action == action for s in t.sources}
    if not found and action != "enqueue":
        raise KeyError(f"no transition for action {action!r}")
    return frozenset(found)


def can(action: str, task: Any) -> bool:
    """Does the task's state allow `action` now? (A running task already asked to stop
    cannot be cancelled again.)"""
    if task is None or task.status not in sources(action):
        return False
    if action == "cancel" and task.status == Status.RUNNING:
        return getattr(task, "cancel_requested_at", None) is None
    if action == "run_now":  # only a deferred task: one due already waits for a worker
        return is_deferred(task)
    return True


def current_progress(progress: Any, attempts: int) -> dict | None:
    """The progress to show for a task whose latest attempt is `attempts`: what that
    attempt's plugin reported, or None. A value an earlier attempt wrote is stale once a new
    attempt starts (each value carries the attempt that wrote it)."""
    if isinstance(progress, dict) and progress.get("attempt") == attempts:
        return progress
    return None


def is_deferred(task: Any, now: Any = None) -> bool:
    """Is the task waiting to run, but not due yet (run_at later, or a retry's backoff)?"""
    run_at = getattr(task, "run_at", None)
    return (task.status in CLAIMABLE and run_at is not None
            and run_at > (now or timezone.now()))


def liveness_window(engine_settings: Any) -> float:
    """Seconds without a heartbeat after which a worker counts as gone: a lease, or three
    missed heartbeats, whichever is longer."""
    return max(engine_settings.LEASE_SECONDS, 3 * engine_settings.HEARTBEAT_INTERVAL)


def liveness_thresholds(engine_settings: Any) -> dict[str, float]:
    """Seconds of silence up to which a worker is "online" (1.5 heartbeat intervals) and
    after which it is "lost" (the liveness window); "late" between the two. The admin, the
    dashboard and its script all read these."""
    return {"online": 1.5 * engine_settings.HEARTBEAT_INTERVAL,
            "lost": liveness_window(engine_settings)}


def worker_state(seconds_silent: float, engine_settings: Any) -> str:
    """A worker by its last heartbeat: "online", "late" (missed a beat, still within the
    liveness window) or "lost" (past it: the reaper and the rescuer treat it as gone)."""
    limits = liveness_thresholds(engine_settings)
    if seconds_silent <= limits["online"]:
        return "online"
    if seconds_silent <= limits["lost"]:
        return "late"
    return "lost"


MAX_ID = 2**63 - 1  # bigint: a larger id cannot exist, and must not reach the database


def parse_id(value: Any) -> int | None:
    """A task id as a caller gave it (int, or ASCII decimal text), or None if it cannot be
    one. The one parser of ids from user input (URL, CLI, forms, websockets)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            return None
        value = int(text)
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    return None


def lifecycle_table() -> str:
    """The README's lifecycle table, as Markdown."""
    lines = ["| from | event | to | history event |", "|---|---|---|---|"]
    for t in TRANSITIONS:
        origin = t.from_text or ", ".join(f"`{s}`" for s in t.sources)
        target = t.to_text or f"`{t.target}`"
        events = ", ".join(f"`{e}`" for e in t.events)
        lines.append(f"| {origin} | {t.when} | {target} | {events} |")
    return "\n".join(lines)
