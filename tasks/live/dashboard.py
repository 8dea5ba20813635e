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
from plugins.base import NotRunnableHere
from tasks import selectors
from tasks.models import Task, TaskHistory

THROUGHPUT_MINUTES = 60
RECENT_FAILURES = 10
RECENT_EVENTS = 30
ERROR_PREVIEW = 300  # characters of an error shown on the dashboard

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

_RECENT_FAILURES = f"""
SELECT h.task_id, h.created_at, t.name, t.type, t.queue, t.attempts, t.last_error
FROM task_history h JOIN tasks t ON t.id = h.task_id
WHERE h.id > %(start)s AND h.status = 'failed'
  AND h.event_type IN ('task_failed', 'lease_expired') AND {_OWNER}
ORDER BY h.id DESC LIMIT %(limit)s
"""

_QUEUE_DEPTH = f"""
SELECT queue, type, count(*) AS waiting,
       count(*) FILTER (WHERE run_at <= now()) AS due
FROM tasks t WHERE status IN ('queued', 'retrying') AND {_OWNER}
GROUP BY queue, type ORDER BY queue, type
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


def _rows(sql: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        return cursor.fetchall()


def queue_depth(owner_id: int | None = None, start_id: int = 0) -> list[dict[str, Any]]:
    """Waiting tasks per queue and type; `unrunnable`: how many of them no worker online
    can run (none serves the queue or runs the type, or each that could declined them)."""
    live = [(w.id, set(w.queues or []), set(w.types or []))
            for w in selectors.workers_online()]

    def capable(queue: str, type_: str) -> set[str]:
        return {wid for wid, queues, types in live
                if (not queues or queue in queues) and (not types or type_ in types)}

    declined: dict[tuple[str, str], int] = {}
    for queue, type_, by in _rows(_DECLINED, {"start": start_id, "owner": owner_id,
                                              "declined": _DECLINED_CLASS}):
        if capable(queue, type_) <= set(by):
            declined[(queue, type_)] = declined.get((queue, type_), 0) + 1
    return [{"queue": q, "type": t, "waiting": waiting, "due": due,
             "unrunnable": waiting if not capable(q, t) else min(waiting,
                                                                declined.get((q, t), 0))}
            for q, t, waiting, due in _rows(_QUEUE_DEPTH, {"owner": owner_id})]


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


def recent_failures(start_id: int, limit: int = RECENT_FAILURES,
                    owner_id: int | None = None) -> list[dict[str, Any]]:
    failures = []
    for task_id, at, name, type_, queue, attempts, error in _rows(
            _RECENT_FAILURES, {"start": start_id, "limit": limit, "owner": owner_id}):
        failures.append({
            "id": task_id, "at": at.isoformat(), "name": name, "type": type_, "queue": queue,
            "attempts": attempts, "error": (error or "")[:ERROR_PREVIEW],
            "url": reverse("admin:tasks_task_change", args=[task_id]),
        })
    return failures


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
        "queues": queue_depth(owner_id, start_id),
        "failures": recent_failures(start_id, owner_id=owner_id),
        "workers": selectors.workers(now),
    }
    if include_throughput:
        data["throughput"] = throughput(now, start_id, owner_id=owner_id)
    return data


def page_context(owner_id: int | None = None) -> dict[str, Any]:
    """The first render of the page: the snapshot plus history and the known types."""
    return {"snapshot": snapshot(owner_id=owner_id),
            "events": recent_events(owner_id=owner_id), "types": registry.types()}
