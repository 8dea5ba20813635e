"""Read queries: every list, count and summary the API, CLI and dashboard show.

Writes live in tasks/queue.py; this module only reads, so it may use the ORM freely.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet
from django.utils import timezone

from tasks.conf import engine
from tasks.exceptions import TaskNotFound
from tasks.models import FINISHED_STATUSES, Status, Task, TaskHistory, Worker

MAX_ID = 2**63 - 1  # bigint: a larger id cannot exist, and must not reach the database


def tasks() -> QuerySet[Task]:
    """Every task, newest first: the base of lists and filters."""
    return Task.objects.order_by("-created_at", "-id")


def parse_task_id(value: Any) -> int | None:
    """A task id from user input (URL, CLI, a search box), or None if it cannot be one.

    ASCII digits only ("²".isdigit() is true, but int() refuses it), at most 19 of them:
    longer is past bigint, and int() refuses numbers of over 4300 digits.
    """
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def task_id(value: Any) -> int:
    """A task id from user input, or TaskNotFound: never a ValueError."""
    pk = parse_task_id(value)
    if pk is None:
        raise TaskNotFound(value)
    return pk


def task(value: Any) -> Task:
    """The task with that id, or TaskNotFound."""
    try:
        return Task.objects.get(pk=task_id(value))
    except Task.DoesNotExist:
        raise TaskNotFound(value) from None


def history(value: Any) -> list[TaskHistory]:
    """A task's history rows, oldest first; TaskNotFound if the task does not exist."""
    pk = task_id(value)
    rows = list(TaskHistory.objects.filter(task_id=pk).order_by("created_at", "id"))
    if not rows and not Task.objects.filter(pk=pk).exists():
        raise TaskNotFound(value)
    return rows


def status_counts(queryset: QuerySet[Task] | None = None) -> dict[str, int]:
    """Tasks per status, every status present (zero when none)."""
    qs = Task.objects.all() if queryset is None else queryset
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("id")))
    return {status: counts.get(status, 0) for status in Status.values}


def workers_online() -> QuerySet[Worker]:
    """Workers whose heartbeat is recent: the same window the reconciler uses."""
    cfg = engine()
    window = max(cfg.LEASE_SECONDS, 3 * cfg.HEARTBEAT_INTERVAL)
    return Worker.objects.filter(last_seen__gte=timezone.now() - datetime.timedelta(seconds=window))


def stats() -> dict[str, Any]:
    """The service at a glance, as served by /api/stats and shown on the dashboard.

    Keys: total_tasks, <status>_tasks for each status, avg_retry_count,
    tasks_with_retries, by_type and by_queue ({name: count}), workers_online,
    finished_last_minute.
    """
    since = timezone.now() - datetime.timedelta(minutes=1)
    # One pass over the table for every total; two grouped scans for type and queue.
    totals = Task.objects.aggregate(
        total_tasks=Count("id"),
        **{f"{status}_tasks": Count("id", filter=Q(status=status)) for status in Status.values},
        avg_retry_count=Avg("retry_count"),
        tasks_with_retries=Count("id", filter=Q(retry_count__gt=0)),
        finished_last_minute=Count(
            "id", filter=Q(status__in=FINISHED_STATUSES, finished_at__gte=since)),
    )
    finished_last_minute = totals.pop("finished_last_minute")
    result: dict[str, Any] = totals
    result["avg_retry_count"] = round(float(totals["avg_retry_count"] or 0.0), 3)
    result["by_type"] = _counts_by("type")
    result["by_queue"] = _counts_by("queue")
    result["workers_online"] = workers_online().count()
    result["finished_last_minute"] = finished_last_minute
    return result


def _counts_by(column: str) -> dict[str, int]:
    rows = Task.objects.order_by(column).values_list(column).annotate(n=Count("id"))
    return dict(rows)
