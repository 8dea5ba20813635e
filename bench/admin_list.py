"""Time every page of the operator's console and the dashboard's charts on a large task
table: the task list (filters, sorts, searches, payload search), act-on-filter previews,
task pages, workers, the history list, the admin index, the dashboard per chart range.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/admin_list.py --rows 1000000

Works in its own database (`--db-name`, created on the server of DATABASE_URL and
dropped at the end unless --keep), fills it with N tasks spread over N*2 seconds of
creation time, 1 in 100 of them owned by a user who may see only their own, and
--history-rows history rows (at least 3 a task: queued, started, its outcome; more are
runs retried: started, then retry_scheduled or, 1 in 50, lease_expired) run by WORKERS
workers. It then times each admin page through Django's test client, as a superuser and
as that user: median of --repeat runs, the number of SQL queries, and whether any of them
was a COUNT. The last rows use Django's stock paginator (COUNT on every page, plus the
full-table count) for comparison. Prints a table; changes nothing outside its database.

Tens of millions of history rows: `--rows 1000000 --history-rows 30000000` (30 a task).

The rows are written with INSERT ... SELECT generate_series: benchmark fixture data, not
a path tasks take in the service (that is tasks.engine).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILL = """
INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                   max_retries, timeout_seconds, attempts, last_error, created_at,
                   updated_at, started_at, finished_at, owner_id)
SELECT 'task ' || g,
       (ARRAY['send_email', 'run_query', 'simulate', 'noop'])[1 + g %% 4],
       s.status, jsonb_build_object('n', g), g %% 5,
       (ARRAY['default', 'mail', 'reports'])[1 + g %% 3],
       c.created, 0, 3, 300, 1,
       CASE s.status WHEN 'failed' THEN 'RuntimeError: simulated' ELSE '' END,
       c.created, c.created, c.created + interval '1 second',
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled')
            THEN c.created + interval '2 seconds' END,
       CASE WHEN g %% 100 = 7 THEN %(owner)s::bigint END
FROM generate_series(%(first)s, %(last)s) g,
     LATERAL (SELECT now() - make_interval(secs => (%(total)s - g) * 2.0) AS created) c,
     LATERAL (SELECT CASE WHEN g %% 100 < 85 THEN 'succeeded' WHEN g %% 100 < 90 THEN 'failed'
                          WHEN g %% 100 < 93 THEN 'cancelled' WHEN g %% 100 < 98 THEN 'queued'
                          WHEN g %% 100 < 99 THEN 'retrying' ELSE 'running' END AS status) s
"""

WORKERS = 8

# Per task, `per_task` rows in time order: task_queued; then runs, each task_started and
# (but the last) retry_scheduled, or lease_expired for 1 task in 50; then its outcome.
HISTORY = """
INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, error_class,
                          details, created_at)
SELECT t.id, e.status, e.event, CASE WHEN n = 1 THEN 0 ELSE greatest(1, n / 2) END,
       CASE WHEN e.event = 'task_queued' THEN ''
            ELSE 'bench-host:' || (t.id %% %(workers)s) || ':w' END,
       CASE e.event WHEN 'task_failed' THEN 'builtins.RuntimeError'
                    WHEN 'retry_scheduled' THEN 'builtins.TimeoutError' ELSE '' END,
       '', t.created_at + make_interval(secs => n * 0.01)
FROM tasks t
CROSS JOIN generate_series(1, %(per_task)s) n
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN n = 1 THEN 'task_queued'
        WHEN n = %(per_task)s THEN CASE t.status
            WHEN 'succeeded' THEN 'task_succeeded' WHEN 'failed' THEN 'task_failed'
            WHEN 'cancelled' THEN 'task_cancelled' WHEN 'running' THEN 'task_started'
            WHEN 'retrying' THEN 'retry_scheduled' ELSE 'task_released' END
        WHEN n %% 2 = 0 THEN 'task_started'
        WHEN t.id %% 50 = 0 THEN 'lease_expired'
        ELSE 'retry_scheduled' END AS event
) k
CROSS JOIN LATERAL (
    SELECT k.event, CASE k.event
        WHEN 'task_queued' THEN 'queued' WHEN 'task_released' THEN 'queued'
        WHEN 'task_started' THEN 'running' WHEN 'retry_scheduled' THEN 'retrying'
        WHEN 'lease_expired' THEN 'retrying' WHEN 'task_succeeded' THEN 'succeeded'
        WHEN 'task_failed' THEN 'failed' ELSE 'cancelled' END AS status
) e
WHERE t.id BETWEEN %(first)s AND %(last)s
ORDER BY t.id, n
"""


def database_urls(base: str, name: str) -> tuple[str, str]:
    parts = urlsplit(base)
    admin = urlunsplit(parts._replace(path="/postgres"))
    return admin, urlunsplit(parts._replace(path=f"/{name}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history-rows", type=int, default=0, help="history rows in all "
                        "(at least 3 a task, the default)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db-name", default="taskservice_bench_admin")
    parser.add_argument("--slow", action="store_true", help="also print each page's slowest "
                        "queries")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse "
                        "its rows on the next run)")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL")
    if not base:
        parser.error("set DATABASE_URL to a PostgreSQL server the benchmark may create a "
                     "database on")

    import psycopg

    admin_url, bench_url = database_urls(base, args.db_name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              [args.db_name]).fetchone()
        if exists and not args.keep:
            conn.execute(f'DROP DATABASE "{args.db_name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{args.db_name}"')

    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
    os.environ["DEBUG"] = "1"  # records queries; lets the test client in
    import django

    django.setup()
    try:
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    return 0


def run(args) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.core.paginator import Paginator
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import override_settings

    from tasks.admin.history import SCAN_ROWS
    from tasks.admin.tasks import TaskAdmin
    from tasks.live import dashboard
    from tasks.models import Task, TaskHistory

    call_command("migrate", verbosity=0)
    User = get_user_model()
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", "bench-password-1")
    own = User.objects.filter(username="bench-own").first()
    if own is None:  # a user who may see only their own tasks (1 in 100)
        own = User.objects.create_user("bench-own", password="bench-password-2",
                                       is_staff=True)
        own.user_permissions.add(*Permission.objects.filter(
            content_type__app_label="tasks", codename__in=["view_task", "cancel_task",
                                                          "retry_task", "view_worker"]))
    per_task = max(3, math.ceil(args.history_rows / args.rows)) if args.rows else 3
    have = Task.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if have < args.rows:
        started = time.perf_counter()
        step = max(1, min(200_000, 6_000_000 // per_task))
        with connection.cursor() as cursor:
            for first in range(have + 1, args.rows + 1, step):
                last = min(args.rows, first + step - 1)
                cursor.execute(FILL, {"first": first, "last": last, "total": args.rows,
                                      "owner": own.pk})
                cursor.execute(HISTORY, {"first": first, "last": last, "per_task": per_task,
                                         "workers": WORKERS})
                print(f"  filled {last:,} / {args.rows:,}", file=sys.stderr)
            cursor.execute("VACUUM ANALYZE tasks")
            cursor.execute("VACUUM ANALYZE task_history")
        print(f"filled {args.rows:,} tasks in {time.perf_counter() - started:.1f}s",
              file=sys.stderr)
    history_rows = TaskHistory.objects.order_by("-id").values_list("id", flat=True).first()

    client = Client(HTTP_HOST="localhost")  # an allowed host of the DEBUG settings
    client.force_login(user)
    scoped = Client(HTTP_HOST="localhost")
    scoped.force_login(own)
    sample = Task.objects.order_by("-id").values_list("id", flat=True)[500]
    own_sample = Task.objects.filter(owner=own).order_by("created_at").values_list(
        "id", flat=True).first()
    today = Task.objects.order_by("-id").values_list("created_at", flat=True)[0]

    from tasks import engine

    if not Task.objects.filter(status="running", locked_by__isnull=False).exists():
        for n in range(WORKERS):
            engine.register_worker(worker_id=f"bench-host:{n}:w", hostname="bench-host", pid=n,
                                   queues=[], concurrency=8)
        with connection.cursor() as cursor:  # fixture data: give running tasks a worker
            cursor.execute("UPDATE tasks SET locked_by = 'bench-host:' || (id %% %s) || ':w', "
                           "locked_until = now() + interval '1 hour' WHERE status = 'running'",
                           [WORKERS])
    running = Task.objects.filter(status="running").order_by("-id").values_list(
        "id", flat=True)[0]
    columns = list(TaskAdmin.list_display)

    def sort(name: str, descending: bool = True) -> str:
        return f"?o={'-' if descending else ''}{columns.index(name) + 1}"

    url = "/admin/tasks/task/"
    history = "/admin/tasks/taskhistory/"
    cases = [
        ("list, page 1", url),
        ("list, page 50", url + "?p=50"),
        ("filter status=failed", url + "?status__exact=failed"),
        ("filter status=queued", url + "?status__exact=queued"),
        ("filter type=noop & queue=mail", url + "?type=noop&queue=mail"),
        ("search by id", url + f"?q={sample}"),
        ("search by name", url + "?q=task+12345"),
        ("date hierarchy: a day", url + f"?created_at__year={today.year}"
                                        f"&created_at__month={today.month}"
                                        f"&created_at__day={today.day}"),
        ("search payload n=12345 (GIN)", url + "?q=n%3D12345"),
        ("sort by status", url + sort("status_display")),
        ("sort by priority", url + sort("priority_short")),
        ("sort by queue", url + sort("queue")),
        ("sort by created", url + sort("created")),
        ("sort by started", url + sort("started")),
        ("sort by run time", url + sort("run_time")),
        ("filter status=failed, sort by run time", url + "?status__exact=failed&"
                                                    + sort("run_time")[1:]),
        ("filter running on a worker", url + "?worker=bench-host%3A1%3Aw"),
        ("act on filter: cancel queued (preview)", url + "act/cancel/?status__exact=queued"),
        ("act on filter: retry failed (preview)", url + "act/retry/?status__exact=failed"),
        ("act on filter: run now, all (preview)", url + "act/run_now/"),
        ("act on filter: delete, type=noop (preview)", url + "act/delete/?type=noop"),
        ("task page (change view)", f"/admin/tasks/task/{sample}/change/"),
        ("task page, running task", f"/admin/tasks/task/{running}/change/"),
        ("workers page", "/admin/tasks/worker/"),
        ("history list", history),
        ("history list, page 50", history + "?p=50"),
        ("history: event=task_failed", history + "?event_type__exact=task_failed"),
        ("history: event=lease_expired (1 in 50)", history + "?event_type__exact=lease_expired"),
        ("history: event=task_snoozed (none)", history + "?event_type__exact=task_snoozed"),
        ("history: one task (search id)", history + f"?q={sample}"),
        ("history: status=failed (window)", history + "?status__exact=failed"),
        ("history: worker (window)", history + "?worker=bench-host%3A3%3Aw"),
        ("history: worker, older window", history + "?worker=bench-host%3A3%3Aw&before="
                                                    f"{max(1, history_rows - SCAN_ROWS)}"),
        ("history: event & worker (window)", history + "?event_type__exact=task_failed&"
                                                       "worker=bench-host%3A3%3Aw"),
        ("history: search worker id (window)", history + "?q=bench-host%3A5%3Aw"),
        ("scoped: history list", history, scoped),
        ("scoped: history, status=failed", history + "?status__exact=failed", scoped),
        ("scoped: history, one old task", history + f"?q={own_sample}", scoped),
        ("scoped: task list", url, scoped),
        ("scoped: dashboard page", "/admin/dashboard/", scoped),
        ("scoped: workers page", "/admin/tasks/worker/", scoped),
        ("admin index (live counts)", "/admin/"),
        ("dashboard page (charts 1 h)", "/admin/dashboard/"),
        ("dashboard page (charts 15 min)", "/admin/dashboard/?range=15m"),
        ("dashboard page (charts 24 h)", "/admin/dashboard/?range=24h"),
        ("charts alone, 15 min", "/admin/dashboard/charts/?range=15m"),
        ("charts alone, 1 h", "/admin/dashboard/charts/?range=1h"),
        ("charts alone, 24 h", "/admin/dashboard/charts/?range=24h"),
        ("favicon", "/favicon.ico"),
    ]

    def measure(path: str, who=client) -> tuple[float, int, bool, int]:
        times = []
        for _ in range(args.repeat):
            reset_queries()
            start = time.perf_counter()
            response = who.get(path)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        sqls = [q["sql"] for q in connection.queries]
        if args.slow:
            print(f"\n{path}", file=sys.stderr)
            for q in sorted(connection.queries, key=lambda q: -float(q["time"]))[:3]:
                print(f"  {float(q['time']) * 1000:8.1f} ms  {q['sql'][:300]}", file=sys.stderr)
        counted = any("COUNT(" in s.upper() and "EXPLAIN" not in s for s in sqls)
        return statistics.median(times), len(sqls), counted, response.status_code

    rows = []
    with override_settings(DEBUG=True):
        for label, path, *who in cases:
            rows.append((label, *measure(path, *who)))
        snap = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            dashboard.snapshot()
            snap.append((time.perf_counter() - start) * 1000)
        rows.append(("dashboard snapshot (websocket)", statistics.median(snap), 0, False, 200))
        # Django's stock paging for comparison: COUNT(*) for the page and the full count.
        TaskAdmin.paginator, TaskAdmin.show_full_result_count = Paginator, True
        for label, path in cases[:2]:
            rows.append((f"{label} [stock paginator]", *measure(path)))

    print(f"\nAdmin on {args.rows:,} tasks and {history_rows:,} history rows "
          f"(median of {args.repeat}; ms)\n")
    print(f"{'page':<46} {'median ms':>10} {'queries':>8} {'COUNT?':>7}")
    print("-" * 74)
    for label, ms, queries, counted, _ in rows:
        print(f"{label:<46} {ms:>10.1f} {queries or '':>8} {'yes' if counted else 'no':>7}")


if __name__ == "__main__":
    sys.exit(main())
