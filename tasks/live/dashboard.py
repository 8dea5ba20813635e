"""The live dashboard's data: read-only queries sized for a million-row task table.

Every query here is bounded by something small (a status, the last hour of history, the
workers online), never by the size of the whole table, except the counts per status,
which use the (status, created_at) index. The websocket relay calls `snapshot()` at most
a few times a second per process, shared by all its clients who see every task.

The counts per status and the workers online are tasks.selectors', as everywhere else;
the queries here are the dashboard's own (throughput, recent failures, queue depth).

`owner_id` scopes the task figures to one user's tasks (tasks.authz.owner_scope): None
means every task. The owner predicate is bound client-side, so with None it folds away.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import connection
from django.urls import reverse
from django.utils import timezone

from plugins import registry
from tasks import selectors, states
from tasks.conf import engine
from tasks.models import Task, TaskHistory

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

# Per queue: waiting (queued or retrying), due now, the oldest due task's due time, running.
# Only active rows are read (the claim and running-lease partial indexes).
_QUEUES = f"""
SELECT queue,
       count(*) FILTER (WHERE status IN ('queued', 'retrying')) AS waiting,
       count(*) FILTER (WHERE status IN ('queued', 'retrying') AND run_at <= now()) AS due,
       min(run_at) FILTER (WHERE status IN ('queued', 'retrying') AND run_at <= now()),
       count(*) FILTER (WHERE status = 'running') AS running
FROM tasks t WHERE status IN ('queued', 'retrying', 'running') AND {_OWNER}
GROUP BY queue ORDER BY queue
"""

def _rows(sql: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        return cursor.fetchall()


def queues(now: datetime.datetime, owner_id: int | None = None) -> list[dict[str, Any]]:
    """One row per queue with active tasks: waiting, due, oldest_due_seconds, running."""
    return [{"queue": q, "waiting": waiting, "due": due, "running": running,
             "oldest_due_seconds": (max(0.0, (now - oldest).total_seconds())
                                    if oldest else None)}
            for q, waiting, due, oldest, running in _rows(_QUEUES, {"owner": owner_id})]


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
        "queues": queues(now, owner_id),
        "failing": failing(start_id, now - datetime.timedelta(minutes=FAILING_WINDOW_MINUTES),
                           owner_id=owner_id),
        "workers": selectors.workers(now),
        "liveness": {"online": 1.5 * engine().HEARTBEAT_INTERVAL,
                     "lost": states.liveness_window(engine())},
    }
    if include_throughput:
        data["throughput"] = throughput(now, start_id, owner_id=owner_id)
    return data


def page_context(owner_id: int | None = None) -> dict[str, Any]:
    """The first render of the page: the snapshot plus history and the known types."""
    return {"snapshot": snapshot(owner_id=owner_id),
            "events": recent_events(owner_id=owner_id), "types": registry.types()}
