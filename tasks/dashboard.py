"""The live dashboard's data: read-only queries sized for a million-row task table.

Every query here is bounded by something small (a status, the last hour of history, the
workers online), never by the size of the whole table, except the counts per status,
which use the (status, created_at) index. The websocket relay calls `snapshot()` at most
a few times a second per process, shared by all its clients who see every task.

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
from tasks.conf import engine
from tasks.models import Status, TaskHistory, Worker

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

# A loose index scan: one index probe per distinct value instead of reading every row.
_DISTINCT = """
WITH RECURSIVE v AS (
    (SELECT {col} AS value FROM tasks ORDER BY {col} LIMIT 1)
    UNION ALL
    SELECT (SELECT {col} FROM tasks WHERE {col} > v.value ORDER BY {col} LIMIT 1)
    FROM v WHERE v.value IS NOT NULL
)
SELECT value FROM v WHERE value IS NOT NULL
"""


def _rows(sql: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        return cursor.fetchall()


def distinct_values(column: str, limit: int = 500) -> list[str]:
    """Distinct values of an indexed leading column (loose index scan): `type`."""
    if column not in ("type",):
        raise ValueError(f"no distinct index scan for column {column!r}")
    with connection.cursor() as cursor:
        cursor.execute(_DISTINCT.format(col=column) + f" LIMIT {int(limit)}")
        return [r[0] for r in cursor.fetchall()]


def estimated_rows(table: str = "tasks") -> int:
    """The planner's row count for a table (-1 before its first ANALYZE)."""
    return _rows("SELECT reltuples::bigint FROM pg_class WHERE oid = %(t)s::regclass",
                 {"t": table})[0][0]


SMALL_TABLE = 100_000  # rows below which reading every queue name is cheap


def known_queues() -> list[str]:
    """Queue names for the admin's filter without scanning a big table (queue has no index).

    Small table: the exact distinct values. Large: the planner's most common values, plus
    the queues of waiting tasks and of registered workers, which is what operators filter.
    """
    if estimated_rows() < SMALL_TABLE:
        return [r[0] for r in _rows("SELECT DISTINCT queue FROM tasks ORDER BY 1")]
    names = {r[0] for r in _rows(
        "SELECT DISTINCT queue FROM tasks WHERE status IN ('queued', 'retrying')")}
    common = _rows("SELECT most_common_vals::text::text[] FROM pg_stats "
                   "WHERE tablename = 'tasks' AND attname = 'queue'")
    if common and common[0][0]:
        names.update(common[0][0])
    for queues in Worker.objects.values_list("queues", flat=True):
        names.update(q for q in queues or () if isinstance(q, str))
    return sorted(names)


def status_counts(owner_id: int | None = None) -> dict[str, int]:
    counts = dict.fromkeys(Status.values, 0)
    counts.update(_rows(f"SELECT status, count(*) FROM tasks t WHERE {_OWNER} GROUP BY status",
                        {"owner": owner_id}))
    return counts


def queue_depth(owner_id: int | None = None) -> list[dict[str, Any]]:
    return [{"queue": q, "type": t, "waiting": waiting, "due": due}
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


def workers_online(now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """Registered workers with their running task counts; `online` if seen recently."""
    now = now or timezone.now()
    cfg = engine()
    stale_after = max(cfg.LEASE_SECONDS, 3 * cfg.HEARTBEAT_INTERVAL)
    running = dict(_rows("SELECT locked_by, count(*) FROM tasks WHERE status = 'running' "
                         "GROUP BY locked_by"))
    workers = []
    for w in Worker.objects.order_by("started_at"):
        workers.append({
            "id": w.id, "host": w.hostname, "pid": w.pid, "queues": w.queues or ["*"],
            "concurrency": w.concurrency, "running": running.get(w.id, 0),
            "last_seen": w.last_seen.isoformat(),
            "online": (now - w.last_seen).total_seconds() <= stale_after,
        })
    return workers


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
        "counts": status_counts(owner_id),
        "queues": queue_depth(owner_id),
        "failures": recent_failures(start_id, owner_id=owner_id),
        "workers": workers_online(now),
    }
    if include_throughput:
        data["throughput"] = throughput(now, start_id, owner_id=owner_id)
    return data


def page_context(owner_id: int | None = None) -> dict[str, Any]:
    """The first render of the page: the snapshot plus history and the known types."""
    return {"snapshot": snapshot(owner_id=owner_id),
            "events": recent_events(owner_id=owner_id), "types": registry.types()}
