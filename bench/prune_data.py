"""The pruner bench's database: created, loaded with a large history, measured, dropped.

Importing this module points DATABASE_URL at the bench's own database (`bench_prune` on
the $DATABASE_URL server) before Django is set up, as bench/prune.py and the drain child
(bench/prune_drain.py) both need. Tasks are created in id order over 40 days; 90%
succeeded (3 history rows each), 10% failed (7 rows each, after two retries).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DB_NAME = "bench_prune"
SERVER_URL = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_URL = urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{DB_NAME}"))
os.environ["DATABASE_URL"] = BENCH_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
os.environ["DEBUG"] = "0"  # the debug cursor would keep every statement
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-" + "x" * 40)
os.environ["LOG_LEVEL"] = "WARNING"

import psycopg  # noqa: E402


def admin_conn() -> psycopg.Connection:
    return psycopg.connect(urlunsplit(urlsplit(SERVER_URL)._replace(path="/postgres")),
                           autocommit=True)


def create_database() -> None:
    with admin_conn() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def drop_database() -> None:
    with admin_conn() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def setup_django() -> None:
    import django

    django.setup()


# --- data ----------------------------------------------------------------------------

_TASKS = """
INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                   max_retries, timeout_seconds, attempts, last_error, result, created_at,
                   updated_at, started_at, finished_at)
SELECT 'task ' || g, 'noop', s.status, json_build_object('n', g)::jsonb, 0, 'default', f - d,
       CASE s.status WHEN 'failed' THEN 3 ELSE 0 END, 3, 300,
       CASE s.status WHEN 'failed' THEN 3 ELSE 1 END,
       CASE s.status WHEN 'failed' THEN 'RuntimeError: the remote end hung up' ELSE '' END,
       CASE s.status WHEN 'succeeded' THEN '{"ok": true}'::jsonb END,
       f - d, f, f - interval '1 second', f
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
CROSS JOIN LATERAL (SELECT now() - interval '40 days'
                           + interval '39 days' * (g::float8 / %(n)s::float8) AS f,
                           interval '2 seconds' AS d,
                           CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'succeeded' END AS status) s
"""

_HISTORY = """
INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                          created_at)
SELECT t.id, CASE WHEN e.n = 1 THEN 'queued' WHEN e.n %% 2 = 0 THEN 'running'
                  WHEN e.n = e.last THEN t.status ELSE 'retrying' END,
       CASE WHEN e.n = 1 THEN 'task_queued' WHEN e.n %% 2 = 0 THEN 'task_started'
            WHEN e.n < e.last THEN 'retry_scheduled'
            WHEN t.status = 'failed' THEN 'task_failed' ELSE 'task_succeeded' END,
       e.n / 2, CASE WHEN e.n = 1 THEN '' ELSE 'bench-host:4242:a1b2c3' END,
       CASE WHEN e.n > 2 AND e.n %% 2 = 1 THEN t.last_error ELSE '' END,
       t.created_at + e.n * interval '100 milliseconds'
FROM tasks t
CROSS JOIN LATERAL (SELECT n, CASE t.status WHEN 'failed' THEN 7 ELSE 3 END AS last
                    FROM generate_series(1, CASE t.status WHEN 'failed' THEN 7 ELSE 3 END) n)
               AS e(n, last)
WHERE t.id BETWEEN %(lo)s AND %(hi)s
"""


def load(conn: psycopg.Connection, n: int) -> float:
    """n tasks and their history, indexes built afterwards (much faster than row by row)."""
    t0 = time.perf_counter()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('tasks', "
        "'task_history') AND indexname NOT LIKE '%%pkey'").fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    step = 500_000
    for lo in range(1, n + 1, step):
        hi = min(n, lo + step - 1)
        conn.execute(_TASKS, {"lo": lo, "hi": hi, "n": n})
        conn.execute(_HISTORY, {"lo": lo, "hi": hi})
        print(f"  loaded tasks {lo:,}-{hi:,} ({time.perf_counter() - t0:.0f}s)", flush=True)
    for _, definition in indexes:
        conn.execute(definition)
    conn.execute("VACUUM ANALYZE tasks")
    conn.execute("VACUUM ANALYZE task_history")
    return time.perf_counter() - t0


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    return conn.execute("SELECT (SELECT count(*) FROM tasks), "
                        "(SELECT count(*) FROM task_history)").fetchone()


def sizes(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute(
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
        "WHERE relname IN ('tasks', 'task_history')").fetchall())


def wal_lsn(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def wal_since(conn: psycopg.Connection, lsn: str) -> int:
    return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                            [lsn]).fetchone()[0])


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"
