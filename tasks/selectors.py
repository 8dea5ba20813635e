"""Read queries: every list, count and summary the API, CLI and dashboard show.

Writes live in tasks/engine/; this module only reads, so it may use the ORM freely.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet
from django.utils import timezone

from tasks import authz, states
from tasks.conf import engine
from tasks.exceptions import TaskNotFound
from tasks.models import FINISHED_STATUSES, Status, Task, TaskHistory, Worker

ALL = object()  # the `user` of trusted callers (local CLI, Python): every task


def tasks(user: Any = ALL) -> QuerySet[Task]:
    """The tasks `user` may see, newest first: the base of lists and filters."""
    queryset = Task.objects.order_by("-created_at", "-id")
    return queryset if user is ALL else authz.visible(queryset, user)


def task_id(value: Any) -> int:
    """A task id from user input, or TaskNotFound: never a ValueError."""
    pk = states.parse_id(value)
    if pk is None:
        raise TaskNotFound(value)
    return pk


def task(value: Any, user: Any = ALL) -> Task:
    """The task with that id, or TaskNotFound (also when `user` may not see it)."""
    try:
        found = Task.objects.get(pk=task_id(value))
    except Task.DoesNotExist:
        raise TaskNotFound(value) from None
    if user is not ALL and not authz.can_see(user, found):
        raise TaskNotFound(value)
    return found


def history(value: Any, user: Any = ALL) -> list[TaskHistory]:
    """A task's history rows, oldest first; TaskNotFound if the task does not exist (or
    `user` may not see it)."""
    pk = task_id(value)
    if user is not ALL:
        task(pk, user)
    rows = list(TaskHistory.objects.filter(task_id=pk).order_by("created_at", "id"))
    if not rows and user is ALL and not Task.objects.filter(pk=pk).exists():
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


def stats(user: Any = ALL) -> dict[str, Any]:
    """The service at a glance (or `user`'s own tasks, when they may not see all), as
    served by /api/stats.

    Keys: total_tasks, <status>_tasks for each status, avg_retry_count,
    tasks_with_retries, by_type and by_queue ({name: count}), workers_online,
    finished_last_minute.
    """
    since = timezone.now() - datetime.timedelta(minutes=1)
    # One pass over the table for every total; two grouped scans for type and queue.
    base = tasks(user).order_by()
    totals = base.aggregate(
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
    result["by_type"] = _counts_by(base, "type")
    result["by_queue"] = _counts_by(base, "queue")
    result["workers_online"] = workers_online().count()
    result["finished_last_minute"] = finished_last_minute
    return result


def _counts_by(base: QuerySet[Task], column: str) -> dict[str, int]:
    rows = base.order_by(column).values_list(column).annotate(n=Count("id"))
    return dict(rows)
