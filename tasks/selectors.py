"""Read queries: every list, count and summary the API, CLI, admin and live view show.

Writes live in tasks/engine/; this module only reads, so it may use the ORM freely. A
figure shown in two places (tasks per status, workers online) is computed here once.
Queries that back admin filters read indexes and planner statistics, never the whole table.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, Max, Min, Q, QuerySet
from django.utils import timezone

from tasks import authz, states
from tasks.conf import engine
from tasks.exceptions import TaskNotFound
from tasks.models import (
    FINISHED_STATUSES,
    Status,
    Task,
    TaskHistory,
    Worker,
)

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


def owned(queryset: QuerySet[Task], owner_id: int | None) -> QuerySet[Task]:
    """`queryset` narrowed to one owner's tasks (tasks.authz.owner_scope); None: all."""
    return queryset if owner_id is None else queryset.filter(owner_id=owner_id)


def online_since(now: datetime.datetime | None = None) -> datetime.datetime:
    """A worker last seen before this is gone: the window the reaper uses."""
    now = now or timezone.now()
    return now - datetime.timedelta(seconds=states.liveness_window(engine()))


def workers_online() -> QuerySet[Worker]:
    """Workers whose heartbeat is recent."""
    return Worker.objects.filter(last_seen__gte=online_since())


RUNNING_IDS_SHOWN = 5  # task ids listed per worker; the rest are one link away


def running_by_worker(owner_id: int | None = None
                      ) -> dict[str, tuple[int, list[int], list[Any]]]:
    """{worker id: (tasks it runs, the first RUNNING_IDS_SHOWN ids, their progress as the
    plugins of the current runs last reported it or None)}, from the running-lease index
    (running rows only); with `owner_id` (tasks.authz.owner_scope), only that owner's tasks
    are counted."""
    rows = _rows("SELECT locked_by, count(*), (array_agg(id ORDER BY id))[1:%(n)s], "
                 "(array_agg(progress ORDER BY id))[1:%(n)s], "
                 "(array_agg(attempts ORDER BY id))[1:%(n)s] "
                 "FROM tasks WHERE status = 'running' AND locked_by IS NOT NULL "
                 "AND (%(owner)s::bigint IS NULL OR owner_id = %(owner)s::bigint) "
                 "GROUP BY locked_by", {"n": RUNNING_IDS_SHOWN, "owner": owner_id})
    return {worker: (n, ids, [states.current_progress(_loads(p), a)
                              for p, a in zip(progress, attempts, strict=True)])
            for worker, n, ids, progress, attempts in rows}


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def progress_text(value: dict | None) -> str:
    """A run's progress in a few characters: `40%`, `12`, or '' when none was reported."""
    if not isinstance(value, dict):
        return ""
    done, total = value.get("done"), value.get("total")
    if not isinstance(done, (int, float)):
        return ""
    if isinstance(total, (int, float)) and total:
        return f"{100 * done / total:.0f}%"
    return f"{done:g}"


def workers(now: datetime.datetime | None = None,
            owner_id: int | None = None) -> list[dict[str, Any]]:
    """Every registered worker, oldest first, with its running tasks (only `owner_id`'s,
    when given: a user who may not see every task learns nothing of others'), `state`
    (online, late or lost: tasks.states.worker_state) and `online` (seen within the
    liveness window, as workers_online counts them). `queues` is [] for every queue."""
    now = now or timezone.now()
    since = online_since(now)
    running = running_by_worker(owner_id)
    settings = engine()
    return [{
        "id": w.id, "host": w.hostname, "pid": w.pid, "queues": w.queues or [],
        "concurrency": w.concurrency, "running": running.get(w.id, (0, [], []))[0],
        "running_ids": running.get(w.id, (0, [], []))[1],
        "running_progress": [progress_text(p) for p in running.get(w.id, (0, [], []))[2]],
        "last_seen": w.last_seen.isoformat(), "online": w.last_seen >= since,
        "state": states.worker_state((now - w.last_seen).total_seconds(), settings),
    } for w in Worker.objects.order_by("started_at")]


def owned_ids(ids: Iterable[int], owner_id: int) -> set[int]:
    """Those of `ids` that are tasks of `owner_id`."""
    ids = list(ids)
    if not ids:
        return set()
    return set(Task.objects.filter(pk__in=ids, owner_id=owner_id).values_list("pk", flat=True))


def task_statuses(ids: Iterable[int], owner_id: int | None = None) -> dict[int, tuple]:
    """{id: (status, retry_count, max_retries, progress)} of those tasks (of `owner_id`'s,
    if given); progress only as the latest attempt reported it."""
    rows = owned(Task.objects.filter(pk__in=list(ids)), owner_id)
    return {pk: (status, retries, max_retries, states.current_progress(progress, attempts))
            for pk, status, retries, max_retries, progress, attempts
            in rows.values_list("id", "status", "retry_count", "max_retries", "progress",
                                "attempts")}


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


# --- for admin filters and paging: indexes and planner statistics, no table scans ---

# A loose index scan: one index probe per distinct value instead of reading every row.
SMALL_TABLE = 100_000  # rows below which reading every queue name is cheap


def _rows(sql: str, params: dict | list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        return cursor.fetchall()


def task_types() -> list[str]:
    """Task types in the table for the admin's filter, without scanning a big table: as
    known_queues does for queues (types are not indexed: every index costs the hot path)."""
    return _distinct_values("type")


def _distinct_values(column: str) -> list[str]:
    """A column's values: exactly on a small table; on a large one the planner's most
    common values plus those of tasks waiting to run (the claim index serves them)."""
    if estimated_rows() < SMALL_TABLE:
        return [r[0] for r in _rows(f"SELECT DISTINCT {column} FROM tasks ORDER BY 1")]
    names = {r[0] for r in _rows(
        f"SELECT DISTINCT {column} FROM tasks WHERE status IN ('queued', 'retrying')")}
    common = _rows("SELECT most_common_vals::text::text[] FROM pg_stats "
                   "WHERE tablename = 'tasks' AND attname = %(c)s", {"c": column})
    if common and common[0][0]:
        names.update(common[0][0])
    return sorted(names)


def estimated_rows(table: str = "tasks") -> int:
    """The planner's row count for a table (-1 before its first ANALYZE)."""
    return _rows("SELECT reltuples::bigint FROM pg_class WHERE oid = %(t)s::regclass",
                 {"t": table})[0][0]


def estimated_count(queryset: QuerySet) -> int | None:
    """The planner's estimate of the rows `queryset` returns (pg_class's count for a whole
    table, EXPLAIN's for a filtered one); None if there is none (never analysed)."""
    try:
        if not queryset.query.where:
            count = estimated_rows(queryset.model._meta.db_table)
            return count if count >= 0 else None
        sql, params = queryset.query.sql_with_params()
        plan = _rows(f"EXPLAIN (FORMAT JSON) {sql}", params)[0][0]
    except Exception:  # an estimate is an optimisation: the caller counts instead
        return None
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def known_queues() -> list[str]:
    """Queue names for the admin's filter without scanning a big table (queue has no index).

    Small table: the exact distinct values. Large: the planner's most common values, plus
    the queues of waiting tasks and of registered workers, which is what operators filter.
    """
    names = set(_distinct_values("queue"))
    for queues in Worker.objects.values_list("queues", flat=True):
        names.update(q for q in queues or () if isinstance(q, str))
    return sorted(names)


def created_span(start: datetime.datetime | None = None,
                 end: datetime.datetime | None = None) -> tuple:
    """(first, last) created_at of the tasks created in [start, end), from the index;
    (None, None) when there are none."""
    rows = Task.objects.all()
    if start is not None:
        rows = rows.filter(created_at__gte=start, created_at__lt=end)
    span = rows.aggregate(first=Min("created_at"), last=Max("created_at"))
    return span["first"], span["last"]


# History events that end a run, and how the attempts timeline names the outcome.
RUN_ENDINGS = {
    "task_succeeded": "succeeded", "retry_scheduled": "failed, retry scheduled",
    "task_failed": "failed", "lease_expired": "worker lost", "task_cancelled": "cancelled",
    "task_released": "released (worker stopped)",
}


ATTEMPTS_SHOWN = 200  # runs on a task page; every event stays in the history list
ROWS_PER_ATTEMPT = 4  # history rows with an attempt number one run writes at most, usually


def attempts(task_id: int, newest: int = ATTEMPTS_SHOWN) -> list[dict[str, Any]]:
    """A task's latest `newest` runs from its history, oldest first: attempt, started,
    ended, seconds, worker, outcome ("running" while it runs) and the error that ended it.
    Reads only the newest `newest * ROWS_PER_ATTEMPT` rows (its history index, backwards):
    a task retried 10,000 times costs what a few hundred runs do."""
    runs: dict[int, dict[str, Any]] = {}
    rows = list(TaskHistory.objects.filter(task_id=task_id, attempt__gt=0)
                .order_by("-created_at", "-id")
                .values("attempt", "event_type", "worker_id", "created_at", "error_class",
                        "error_message", "traceback", "details")[:newest * ROWS_PER_ATTEMPT])
    for row in reversed(rows):
        n = row["attempt"]
        if row["event_type"] == "task_started":
            runs[n] = {"attempt": n, "started": row["created_at"], "ended": None,
                       "seconds": None, "worker": row["worker_id"], "outcome": "running",
                       "error_class": "", "error_message": "", "traceback": ""}
        elif n in runs and runs[n]["ended"] is None and row["event_type"] in RUN_ENDINGS:
            run = runs[n]
            run.update(ended=row["created_at"], outcome=RUN_ENDINGS[row["event_type"]],
                       seconds=(row["created_at"] - run["started"]).total_seconds(),
                       error_class=row["error_class"], error_message=row["error_message"],
                       traceback=row["traceback"])
            run["worker"] = run["worker"] or row["worker_id"]
    return [runs[n] for n in sorted(runs)[-newest:]] if newest > 0 else []


_QUEUES = """
WITH waiting AS (
    SELECT queue,
           count(*) FILTER (WHERE run_at <= now()) AS due,
           count(*) FILTER (WHERE run_at > now()) AS deferred,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8
               AS oldest_due_age
    FROM tasks WHERE status IN ('queued', 'retrying') GROUP BY queue
), busy AS (
    SELECT queue, count(*) AS running FROM tasks WHERE status = 'running' GROUP BY queue
), names AS (
    SELECT queue AS name FROM waiting UNION SELECT queue FROM busy
    UNION SELECT name FROM task_queues
)
SELECT n.name, coalesce(w.due, 0), coalesce(w.deferred, 0), coalesce(b.running, 0),
       w.oldest_due_age, coalesce(q.paused, false), q.concurrency_limit, q.rate_limit
FROM names n
LEFT JOIN waiting w ON w.queue = n.name
LEFT JOIN busy b ON b.queue = n.name
LEFT JOIN task_queues q ON q.name = n.name
ORDER BY n.name
"""
QUEUE_FIELDS = ("name", "due", "deferred", "running", "oldest_due_age", "paused",
                "concurrency_limit", "rate_limit")


def queues() -> list[dict[str, Any]]:
    """Every queue with waiting or running tasks, or with a row of its own (paused or
    limited once): tasks due now and deferred (queued or retrying, run_at later), running,
    the age in seconds of the oldest due task, the pause and the limits. Reads the claim's
    and the leases' partial indexes, not finished tasks."""
    return [dict(zip(QUEUE_FIELDS, row, strict=True)) for row in _rows(_QUEUES)]


def queue(name: str) -> dict[str, Any] | None:
    """One queue of queues(), or None if it has no tasks and no row."""
    return next((q for q in queues() if q["name"] == name), None)
