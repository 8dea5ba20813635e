"""The worker's side of a run: claim, heartbeat, complete, fail, finish, release, and
the worker's own row.

Each transition is one statement of queries.sql (the update, its history rows and its
NOTIFY in data-modifying CTEs), so in autocommit mode it is its own transaction and costs
one round trip for a whole batch. Completions are fenced on worker and attempt (`WHERE
status = 'running' AND locked_by = ... AND attempts = ...`): a worker whose lease was taken
over gets "0 rows", never someone else's task.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import transaction

from tasks import jsonsafe
from tasks.backoff import backoff_delay
from tasks.conf import engine
from tasks.engine.spec import JSON_NUL, has_nul, loads
from tasks.engine.sql import run, table_size_seen

logger = logging.getLogger(__name__)


class ClaimedTask(NamedTuple):
    """What a worker needs to run one claimed task (a tuple: one is made per claimed row)."""

    id: int
    name: str
    type: str
    payload: dict
    queue: str
    priority: int
    attempt: int  # the task's `attempts` after this claim: fences the completion
    retry_count: int
    max_retries: int
    timeout_seconds: int


@dataclass(slots=True)
class Outcome:
    """How one run ended, as reported by a worker to complete/fail/finish_cancelled."""

    task_id: int
    attempt: int
    result: Any = None
    error: str = ""  # the human text: the task's last_error and the history details
    retry_count: int = 0  # as claimed; the backoff grows with it
    # The error as data, for the history row: dotted class path, message, traceback.
    error_class: str = ""
    error_message: str = ""
    traceback: str = ""
    delay: float = 0.0  # a snoozed run: seconds until it is due again


def claim(*, worker_id: str, limit: int, queues: Sequence[str] | None = None,
          lease_seconds: float | None = None, types: Sequence[str] | None = None,
          skip: Sequence[int] = ()) -> list[ClaimedTask]:
    """Claim up to `limit` due tasks, highest priority first, FIFO within a priority.

    Only tasks of `types` (None: any) and none of the ids in `skip` (tasks this worker
    declined). One statement (`FOR UPDATE SKIP LOCKED`: two workers never hold the same
    task) claims from queues without a pause or limit. When limited queues exist and slots
    are left, claim_limited fills them in its own short transaction, within each queue's
    limits.
    """
    if limit <= 0:
        return []
    lease = engine().LEASE_SECONDS if lease_seconds is None else lease_seconds
    params = {"limit": limit, "worker": worker_id, "lease": lease, **_can_run(types, skip)}
    if queues:
        params["queues"] = list(queues)
    rows = run("claim_queues" if queues else "claim_any", params)
    tasks = [_claimed(r) for r in rows if r[0] is not None]
    if rows:
        table_size_seen(rows[0][-1])
    if rows and rows[0][-2] and len(tasks) < limit:
        tasks += _claim_limited(worker_id, limit - len(tasks), queues, lease, types, skip)
    return tasks


def _claimed(r: Sequence) -> ClaimedTask:
    return ClaimedTask(r[0], r[1], r[2], loads(r[3]), *r[4:10])


def _claim_limited(worker_id: str, limit: int, queues: Sequence[str] | None,
                   lease: float, types: Sequence[str] | None,
                   skip: Sequence[int]) -> list[ClaimedTask]:
    """Lock the limited queues with due tasks (first statement), then claim within their
    limits (second statement, a fresh snapshot): workers take turns per queue, and each
    counts the runs and tokens its predecessors left."""
    with transaction.atomic():
        can_run = _can_run(types, skip)
        names = [r[0] for r in run("lock_limited_queues",
                                   {"queues": list(queues) if queues else None, **can_run})]
        if not names:
            return []
        rows = run("claim_limited", {"names": names, "limit": limit, "worker": worker_id,
                                     "lease": lease, **can_run})
    return [_claimed(r) for r in rows]


def idle_hint(queues: Sequence[str] | None = None, *, types: Sequence[str] | None = None,
              skip: Sequence[int] = ()) -> tuple[float | None, bool]:
    """For an idle worker: seconds until a task may be claimable (None if none is known;
    paused queues and queues at their concurrency limit count for nothing, a rate-limited
    queue counts when its next token is due), and whether due tasks are held back by a
    concurrency limit (a finishing task may then free a slot)."""
    ((value, held),) = run("idle_hint", {"queues": list(queues) if queues else None,
                                         **_can_run(types, skip)})
    return (None if value is None else max(0.0, float(value))), bool(held)


def _can_run(types: Sequence[str] | None, skip: Sequence[int]) -> dict:
    """The claim's `types` and `skip` parameters as array literals: a worker sends the same
    types on every claim, and encoding a list element by element is most of a claim's
    Python time; the text is made once and the server parses it."""
    return {"types": None if types is None else _text_array(tuple(types)),
            "skip": "{" + ",".join(str(int(i)) for i in skip) + "}" if skip else "{}"}


@functools.lru_cache(maxsize=64)
def _text_array(values: tuple[str, ...]) -> str:
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def next_due_in(queues: Sequence[str] | None = None, *, types: Sequence[str] | None = None,
                skip: Sequence[int] = ()) -> float | None:
    """Seconds until the next task this worker may claim becomes due (None: none known)."""
    return idle_hint(queues, types=types, skip=skip)[0]


@dataclass
class HeartbeatResult:
    held: set[int]  # ids the database says this worker holds
    cancel_requested: set[int]
    registered: bool  # False when the worker row was expired (e.g. after an outage)


def heartbeat(*, worker_id: str, lease_seconds: float | None = None) -> HeartbeatResult:
    """Renew the leases of this worker's running tasks and its own last_seen.

    Not a state change, so no history row: the lease is bookkeeping.
    """
    lease = engine().LEASE_SECONDS if lease_seconds is None else lease_seconds
    rows = run("heartbeat", {"lease": lease, "worker": worker_id})
    held = {r[0] for r in rows if r[0] is not None}
    cancel = {r[0] for r in rows if r[1]}
    registered = bool(rows and rows[0][2])
    return HeartbeatResult(held=held, cancel_requested=cancel, registered=registered)


def cancel_requested_ids(*, worker_id: str) -> set[int]:
    """Running tasks of this worker that somebody asked to cancel (polling fallback)."""
    return {r[0] for r in run("select_cancel_requested", {"worker": worker_id})}


_SURROGATE = re.compile("[\ud800-\udfff]")
RESULT_PREVIEW_CHARS = 1000


def _result_json(value: Any) -> str:
    """A plugin's result as jsonb text that the database accepts, of bounded size.

    Whatever the plugin returned, the batch it is written with must not fail: NULs and
    unpaired surrogates become U+FFFD, and a result nested deeper than TASKS_MAX_JSON_DEPTH
    or larger than TASKS_MAX_RESULT_BYTES is stored as a marker with a preview.
    """
    if value is None:  # most runs return nothing
        return "null"
    depth = jsonsafe.max_depth()
    if jsonsafe.depth_exceeds(value, depth):
        return json.dumps({"truncated": True, "reason": f"nested deeper than {depth} levels"})
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str,
                          ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        try:
            text = json.dumps(repr(value)[:RESULT_PREVIEW_CHARS], ensure_ascii=False)
        except Exception:  # a repr that fails too: say what it was
            text = json.dumps(f"<{type(value).__name__} that is not JSON>")
    # Raw surrogates (ensure_ascii=False) cannot be mistaken for escaped text.
    text = _SURROGATE.sub("\ufffd", text)
    if has_nul(text):
        text = JSON_NUL.sub(lambda m: m.group(1) + "\\ufffd", text)
    size = len(text.encode())
    limit = jsonsafe.max_result_bytes()
    if size > limit:
        return json.dumps({"truncated": True, "reason": f"larger than {limit} bytes",
                           "bytes": size, "preview": text[:RESULT_PREVIEW_CHARS]},
                          ensure_ascii=False)
    return text


def complete(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """Mark runs succeeded (fenced); returns the ids applied. Missing ids lost their lease."""
    if not outcomes:
        return set()
    params = {
        "worker": worker_id,
        "ids": [o.task_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "results": [_result_json(o.result) for o in outcomes],
    }
    applied = {r[0] for r in run("complete_runs", params)}
    _log_lost(worker_id, outcomes, applied, "complete")
    return applied


def fail(*, worker_id: str, outcomes: Sequence[Outcome], rand=None) -> dict[int, str]:
    """A run raised or timed out: schedule a retry with backoff, or fail for good.

    Returns {task id: new status} for the runs applied (fenced like complete).
    """
    if not outcomes:
        return {}
    cfg = engine()
    kwargs = {"rand": rand} if rand else {}
    params = {
        "worker": worker_id,
        "ids": [o.task_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "errors": [jsonsafe.storable_error(o.error or "error") for o in outcomes],
        **_error_columns(outcomes),
        "delays": [backoff_delay(o.retry_count, base=cfg.BACKOFF_BASE, cap=cfg.BACKOFF_CAP,
                                 **kwargs) for o in outcomes],
    }
    applied = dict(run("fail_runs", params))
    _log_lost(worker_id, outcomes, set(applied), "fail")
    return applied


ERROR_CLASS_CHARS = 255  # TaskHistory.error_class


def _error_columns(outcomes: Sequence[Outcome]) -> dict[str, list[str]]:
    """The structured error of each outcome as the statements' array parameters, bounded
    and storable like last_error (a class path is cut, never split around a marker)."""
    return {
        "error_classes": [jsonsafe.storable_error(o.error_class)[:ERROR_CLASS_CHARS]
                          for o in outcomes],
        "error_messages": [jsonsafe.storable_error(o.error_message) for o in outcomes],
        "tracebacks": [jsonsafe.storable_error(o.traceback) for o in outcomes],
    }


def _finish_by_worker(name: str, *, worker_id: str, outcomes: Sequence[Outcome],
                      action: str) -> set[int]:
    if not outcomes:
        return set()
    params = {"worker": worker_id, "ids": [o.task_id for o in outcomes],
              "attempts": [o.attempt for o in outcomes],
              "details": [jsonsafe.storable_error(o.error) for o in outcomes],
              **_error_columns(outcomes)}
    applied = {r[0] for r in run(name, params)}
    _log_lost(worker_id, outcomes, applied, action)
    return applied


def finish_cancelled(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """The worker stopped runs that were cancelled: they end `cancelled`."""
    return _finish_by_worker("cancel_runs", worker_id=worker_id, outcomes=outcomes,
                             action="cancel")


def snooze(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """The plugin snoozed: each run ends `queued`, due after its delay, no retry used (or
    `cancelled`, when a cancel was asked meanwhile)."""
    if not outcomes:
        return set()
    params = {"worker": worker_id, "ids": [o.task_id for o in outcomes],
              "attempts": [o.attempt for o in outcomes],
              "delays": [float(o.delay) for o in outcomes]}
    applied = {r[0] for r in run("snooze_runs", params)}
    _log_lost(worker_id, outcomes, applied, "snooze")
    return applied


PROGRESS_MESSAGE_CHARS = 1000  # stored; the event carries the first EVENT_MESSAGE_CHARS
EVENT_MESSAGE_CHARS = 200


def progress(*, worker_id: str, task_id: int, attempt: int, done: float,
             total: float | None = None, message: str = "", at: str = "") -> bool:
    """Store a running task's progress and send `task_progress`; False if the run is no
    longer this worker's (fenced like complete). Not a state change: no history row. The
    value names its attempt: readers show it only while that attempt is the task's latest
    (tasks.states.current_progress)."""
    message = jsonsafe.storable_error(str(message))[:PROGRESS_MESSAGE_CHARS]
    value = {"done": done, "total": total, "message": message, "at": at, "attempt": attempt}
    summary = {**value, "message": message[:EVENT_MESSAGE_CHARS]}
    rows = run("update_progress", {"id": task_id, "worker": worker_id, "attempt": attempt,
                                   "progress": json.dumps(value, allow_nan=False),
                                   "summary": json.dumps(summary, allow_nan=False)})
    return bool(rows)


def parent_results(task_id: int) -> dict[int, Any]:
    """{parent id: its result} for the parents of a task (a child's ctx.parent_results)."""
    return {pid: loads(result) for pid, _status, result in
            run("select_parent_results", {"id": task_id})}


def release(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """A stopping worker hands unfinished runs back to the queue, due at once (or ends
    them `cancelled` when a cancel was requested)."""
    return _finish_by_worker("release_runs", worker_id=worker_id, outcomes=outcomes,
                             action="release")


def decline(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """This worker cannot run these tasks (a module it cannot import): hand them back due
    now without counting the attempt, for a worker that can (or `cancelled` if asked)."""
    return _finish_by_worker("decline_runs", worker_id=worker_id, outcomes=outcomes,
                             action="decline")


def _log_lost(worker_id, outcomes, applied, action) -> None:
    lost = [o.task_id for o in outcomes if o.task_id not in applied]
    if lost:
        logger.warning("lease lost before %s: tasks %s are no longer held by %s", action,
                       lost[:20], worker_id,
                       extra={"action": "lease_lost", "task_ids": lost, "worker": worker_id})



def register_worker(*, worker_id: str, hostname: str, pid: int, queues: Sequence[str],
                    concurrency: int, types: Sequence[str] = ()) -> None:
    """Record this worker (or refresh it) with the queues it serves ([]: every queue) and
    the task types it runs, and announce it: worker_online."""
    run("register_worker", {"worker": worker_id, "hostname": hostname, "pid": pid,
                            "queues": json.dumps(list(queues)),
                            "types": json.dumps(sorted(types)), "concurrency": concurrency})


def unregister_worker(*, worker_id: str) -> None:
    """Forget this worker and announce it: worker_offline."""
    run("unregister_worker", {"worker": worker_id})
