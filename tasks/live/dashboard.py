"""The live dashboard's data: read-only queries sized for a million-row task table.

Every query here is bounded by something small (the active statuses, the last hour of
history, the registered workers), never by the size of the whole table, except the counts
per status, which walk the (status, id) index. The websocket relay calls `snapshot()` at
most a few times a second per process, shared by all its clients who see every task.

The counts per status and the workers are tasks.selectors', as everywhere else; the
queries here are the dashboard's own (throughput, recent failures, queue depth).

`owner_id` scopes the task figures to one user's tasks (tasks.authz.owner_scope): None
means every task. The owner predicate is bound client-side, so with None it folds away.
Workers are listed for everyone; the tasks they run only as far as the user may see them.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import connection
from django.urls import reverse
from django.utils import timezone

from plugins import registry
from plugins.base import NotRunnableHere
from tasks import selectors, states
from tasks.conf import engine
from tasks.models import Queue, Task, TaskHistory

THROUGHPUT_MINUTES = 60
FAILING_WINDOW_MINUTES = 60
FAILING_GROUPS = 20
RECENT_EVENTS = 30
ERROR_PREVIEW = 300  # characters of an error shown on the dashboard
TRACEBACK_PREVIEW = 5000

# The last history row older than the window, found by walking the primary key backwards:
# history ids grow with time, so everything after it is the window, and the cost of the
# window queries follows the last hour's volume, not the table's size.
_WINDOW_START = """
SELECT coalesce((SELECT id FROM task_history WHERE created_at < %(since)s
                 ORDER BY id DESC LIMIT 1), 0)
"""

_OWNER = "(%(owner)s::bigint IS NULL OR t.owner_id = %(owner)s::bigint)"

_THROUGHPUT = f"""
SELECT date_trunc('minute', h.created_at) AS minute,
       count(*) FILTER (WHERE h.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE h.status = 'failed') AS failed
FROM task_history h
WHERE h.id > %(start)s AND h.created_at >= %(since)s
  AND h.event_type IN ('task_succeeded', 'task_failed', 'lease_expired')
  AND h.status IN ('succeeded', 'failed')
  AND (%(owner)s::bigint IS NULL
       OR EXISTS (SELECT 1 FROM tasks t WHERE t.id = h.task_id AND {_OWNER}))
GROUP BY 1 ORDER BY 1
"""

# Runs that ended in an error in the window, one row per (task type, error class): how
# many, how many of those were final, and the latest one (its id, for the example).
_FAILING = f"""
SELECT t.type, h.error_class, count(*) AS runs,
       count(*) FILTER (WHERE h.status = 'failed') AS final, max(h.id) AS latest
FROM task_history h JOIN tasks t ON t.id = h.task_id
WHERE h.id > %(start)s AND h.created_at >= %(since)s
  AND h.event_type IN ('task_failed', 'retry_scheduled', 'lease_expired') AND {_OWNER}
GROUP BY t.type, h.error_class
ORDER BY runs DESC, latest DESC LIMIT %(limit)s
"""

_FAILING_EXAMPLES = """
SELECT h.id, h.task_id, h.created_at, h.error_message, h.traceback, h.details, t.name
FROM task_history h JOIN tasks t ON t.id = h.task_id WHERE h.id = ANY(%(ids)s)
"""

# Per queue: queued (queued or retrying, due or not), due now, the oldest due task's due
# time, running, and waiting (for their parents). Only active rows are read.
_QUEUES = f"""
SELECT queue,
       count(*) FILTER (WHERE status IN ('queued', 'retrying')) AS queued,
       count(*) FILTER (WHERE status IN ('queued', 'retrying') AND run_at <= now()) AS due,
       min(run_at) FILTER (WHERE status IN ('queued', 'retrying') AND run_at <= now()),
       count(*) FILTER (WHERE status = 'running') AS running,
       count(*) FILTER (WHERE status = 'waiting') AS waiting
FROM tasks t WHERE status IN ('waiting', 'queued', 'retrying', 'running') AND {_OWNER}
GROUP BY queue ORDER BY queue
"""

# Waiting tasks that workers handed back because they could not run them (last hour: a
# worker declines such a task again every few minutes while it waits), with who declined.
_DECLINED = f"""
SELECT t.queue, t.type, array_agg(DISTINCT h.worker_id)
FROM task_history h JOIN tasks t ON t.id = h.task_id
WHERE h.id > %(start)s AND h.event_type = 'task_released' AND h.error_class = %(declined)s
  AND t.status IN ('queued', 'retrying') AND {_OWNER}
GROUP BY t.id, t.queue, t.type
"""
_DECLINED_CLASS = f"{NotRunnableHere.__module__}.{NotRunnableHere.__qualname__}"
_WAITING_BY_TYPE = f"""
SELECT queue, type, count(*) FROM tasks t
WHERE status IN ('queued', 'retrying') AND {_OWNER}
GROUP BY queue, type
"""


def _rows(sql: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        return cursor.fetchall()


def queues(now: datetime.datetime, owner_id: int | None = None) -> list[dict[str, Any]]:
    """One row per queue with active tasks, or paused or limited: queued (queued or
    retrying, due now or later), due, oldest_due_seconds, running, waiting (for parents),
    paused, concurrency_limit, rate_limit and `limits` (the limits in words, '' for none)."""
    rows = {q: {"queue": q, "queued": queued, "due": due, "running": running,
                "waiting": waiting,
                "oldest_due_seconds": (max(0.0, (now - oldest).total_seconds())
                                       if oldest else None)}
            for q, queued, due, oldest, running, waiting
            in _rows(_QUEUES, {"owner": owner_id})}
    steered = {name: (paused, concurrency, rate) for name, paused, concurrency, rate in
               Queue.objects.values_list("name", "paused", "concurrency_limit", "rate_limit")}
    for name, (paused, concurrency, rate) in steered.items():
        if name not in rows and (paused or concurrency is not None or rate is not None):
            rows[name] = {"queue": name, "queued": 0, "due": 0, "running": 0, "waiting": 0,
                          "oldest_due_seconds": None}
    for name, row in rows.items():
        paused, concurrency, rate = steered.get(name, (False, None, None))
        row.update(paused=paused, concurrency_limit=concurrency, rate_limit=rate,
                   limits=limits_text(concurrency, rate))
    return [rows[name] for name in sorted(rows)]


def limits_text(concurrency: int | None, rate: float | None) -> str:
    """`at most 2 running, 10/s`, or '' for a queue without limits."""
    parts = ([f"at most {concurrency} running"] if concurrency is not None else []) + (
        [f"{rate:g}/s"] if rate is not None else [])
    return ", ".join(parts)


def _with_unrunnable(rows: list[dict[str, Any]], found: dict[str, int]) -> list[dict[str, Any]]:
    return [{**row, "unrunnable": found.get(row["queue"], 0)} for row in rows]


def unrunnable(owner_id: int | None = None, start_id: int = 0) -> dict[str, int]:
    """Per queue, the queued tasks no worker online can run: none serves the queue or
    runs the type, or each one that could has handed them back (NotRunnableHere)."""
    live = [(w.id, set(w.queues or []), set(w.types or []))
            for w in selectors.workers_online()]

    def capable(queue: str, type_: str) -> set[str]:
        return {wid for wid, served, runs in live
                if (not served or queue in served) and (not runs or type_ in runs)}

    declined: dict[tuple[str, str], int] = {}
    for queue, type_, by in _rows(_DECLINED, {"start": start_id, "owner": owner_id,
                                              "declined": _DECLINED_CLASS}):
        if capable(queue, type_) <= set(by):
            declined[(queue, type_)] = declined.get((queue, type_), 0) + 1
    found: dict[str, int] = {}
    for queue, type_, waiting in _rows(_WAITING_BY_TYPE, {"owner": owner_id}):
        stranded = waiting if not capable(queue, type_) else min(
            waiting, declined.get((queue, type_), 0))
        if stranded:
            found[queue] = found.get(queue, 0) + stranded
    return found


def window_start(since: datetime.datetime) -> int:
    return _rows(_WINDOW_START, {"since": since})[0][0]


def throughput(now: datetime.datetime, start_id: int, minutes: int = THROUGHPUT_MINUTES,
               owner_id: int | None = None) -> list[dict[str, Any]]:
    """Succeeded and failed tasks per minute, oldest first, one entry per minute."""
    first = now.replace(second=0, microsecond=0) - datetime.timedelta(minutes=minutes - 1)
    found = {m: (s, f) for m, s, f in _rows(
        _THROUGHPUT, {"start": start_id, "since": first, "owner": owner_id})}
    series = []
    for i in range(minutes):
        minute = first + datetime.timedelta(minutes=i)
        succeeded, failed = found.get(minute, (0, 0))
        series.append({"minute": minute.isoformat(), "succeeded": succeeded, "failed": failed})
    return series


def failing(start_id: int, since: datetime.datetime, limit: int = FAILING_GROUPS,
            owner_id: int | None = None) -> list[dict[str, Any]]:
    """Runs that ended in an error since `since`, one entry per (type, error class), most
    first: runs, final (no retry left), and the latest example with its traceback."""
    groups = _rows(_FAILING, {"start": start_id, "since": since, "limit": limit,
                              "owner": owner_id})
    examples = {row[0]: row[1:] for row in _rows(_FAILING_EXAMPLES,
                                                 {"ids": [g[4] for g in groups]})}
    entries = []
    for type_, error_class, runs, final, latest in groups:
        task_id, at, message, trace, details, name = examples[latest]
        entries.append({
            "type": type_, "error_class": error_class or "(no class recorded)",
            "runs": runs, "final": final, "id": task_id, "name": name,
            "at": at.isoformat(), "message": (message or details or "")[:ERROR_PREVIEW],
            "traceback": (trace or "")[:TRACEBACK_PREVIEW],
            "url": reverse("admin:tasks_task_change", args=[task_id]),
        })
    return entries


def recent_events(limit: int = RECENT_EVENTS,
                  owner_id: int | None = None) -> list[dict[str, Any]]:
    """The latest history rows, newest first, shaped like live feed entries."""
    rows = TaskHistory.objects.all()
    if owner_id is not None:
        rows = rows.filter(task__owner_id=owner_id)
    rows = rows.order_by("-id").values(
        "task_id", "event_type", "status", "worker_id", "details", "created_at")[:limit]
    return [{"event": r["event_type"], "ids": [r["task_id"]], "count": 1,
             "worker": r["worker_id"], "details": r["details"][:ERROR_PREVIEW],
             "at": r["created_at"].isoformat()} for r in rows]


def snapshot(*, include_throughput: bool = True, owner_id: int | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data."""
    now = timezone.now()
    start_id = window_start(now - datetime.timedelta(minutes=THROUGHPUT_MINUTES))
    data: dict[str, Any] = {
        "at": now.isoformat(),
        "counts": selectors.status_counts(selectors.owned(Task.objects.all(), owner_id)),
        "queues": _with_unrunnable(queues(now, owner_id),
                                   unrunnable(owner_id, start_id)),
        "failing": failing(start_id, now - datetime.timedelta(minutes=FAILING_WINDOW_MINUTES),
                           owner_id=owner_id),
        "workers": selectors.workers(now, owner_id=owner_id),
        "liveness": states.liveness_thresholds(engine()),
        "own_tasks_only": owner_id is not None,
    }
    if include_throughput:
        data["throughput"] = throughput(now, start_id, owner_id=owner_id)
    return data


def page_context(owner_id: int | None = None) -> dict[str, Any]:
    """The first render of the page: the snapshot plus history and the known types."""
    return {"snapshot": snapshot(owner_id=owner_id),
            "events": recent_events(owner_id=owner_id), "types": registry.types()}
