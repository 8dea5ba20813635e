"""Benchmark the pruner on a large history, beside a drain. Prints a table.

    .venv/bin/python bench/prune.py                      # 3,000,000 tasks, ~10M history rows
    .venv/bin/python bench/prune.py --tasks 300000       # a quicker look

Works in a database of its own (`bench_prune` on the $DATABASE_URL server), created,
migrated and dropped by the script. Tasks are created in id order over 40 days; 90%
succeeded (3 history rows each), 10% failed (7 rows each, after two retries). With the
default retention (succeeded 7 days, failed 30 days) about 79% of the tasks go.

Phases: load the data; compare the two ways of deleting history (one statement that
deletes the tasks and then their history, versus ON DELETE CASCADE) on a few batches;
then a claim/complete drain runs in a child process while the maintainer's own Pruner
(default batch size and rest) is switched on and off in turns; then the rest is pruned at
full speed, alone (as `prunetasks` does); then table sizes before and after VACUUM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
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

FK = "bench_history_cascade"
DRAIN_BATCH = 100


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


# --- history: one statement, or ON DELETE CASCADE --------------------------------------


def set_fk(conn: psycopg.Connection, cascade: bool) -> None:
    """Add a foreign key with ON DELETE CASCADE (the alternative measured), or drop it
    again: the schema has none (the engine deletes history with its tasks)."""
    if cascade:
        conn.execute(f"ALTER TABLE task_history ADD CONSTRAINT {FK} FOREIGN KEY (task_id) "
                     "REFERENCES tasks (id) ON DELETE CASCADE NOT VALID")
    else:
        conn.execute(f"ALTER TABLE task_history DROP CONSTRAINT {FK}")


def compare_strategies(conn: psycopg.Connection, pairs: int, batch_size: int):
    """Median ms per batch for engine.prune_finished (lock the window, then delete the
    tasks and exactly their history in one statement) and for the same lock followed by
    a plain DELETE of the tasks with the foreign key turned into ON DELETE CASCADE.
    Batches alternate, so both see the same load and the same cache state."""
    from django.db import connection, transaction

    from tasks import engine

    age = 7 * 86400
    explicit, cascaded, after = [], [], None
    for _ in range(pairs):
        t0 = time.perf_counter()
        batch = engine.prune_finished(status="succeeded", retention={"succeeded": age},
                                      limit=batch_size, after=after)
        explicit.append((time.perf_counter() - t0) * 1000)
        after = batch.position or after
        set_fk(conn, cascade=True)
        t0 = time.perf_counter()
        with transaction.atomic():
            window = engine.lock_prunable(status="succeeded", age=age, limit=batch_size,
                                          after=after)
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM tasks WHERE id = ANY(%s) AND status = 'succeeded'",
                               [window.ids])
        cascaded.append((time.perf_counter() - t0) * 1000)
        after = window.position or after
        set_fk(conn, cascade=False)
    return statistics.median(explicit), statistics.median(cascaded)


# --- the drain (child process) ----------------------------------------------------------


def drain_child() -> None:
    """Claim/complete loop; prints `<monotonic time> <tasks completed so far>` each 0.5 s."""
    setup_django()
    from django.db import connection

    from tasks import engine

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SET application_name = 'bench drain'")
    done, last = 0, time.monotonic()
    specs = [{"name": "d", "type": "noop"} for _ in range(DRAIN_BATCH)]
    while True:
        engine.enqueue_many(specs)
        claimed = engine.claim(worker_id="bench-drain", limit=DRAIN_BATCH)
        done += len(engine.complete(worker_id="bench-drain", outcomes=[
            engine.Outcome(task_id=c.id, attempt=c.attempt) for c in claimed]))
        now = time.monotonic()
        if now - last >= 0.5:
            print(f"{now} {done}", flush=True)
            last = now


class Drain:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--drain-child"], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        self.points: list[tuple[float, int]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            t, n = line.split()
            self.points.append((float(t), int(n)))

    def rate(self, start: float, end: float) -> float:
        inside = [(t, n) for t, n in self.points if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class WaitSampler(threading.Thread):
    """Samples pg_stat_activity every 100 ms: backends waiting on a heavyweight lock,
    as (waiter, lock type, blocker)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = 0
        self.waits: Counter[tuple[str, str, str]] = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(BENCH_URL, autocommit=True) as conn:
            while not self.halt.wait(0.1):
                rows = conn.execute(
                    """SELECT coalesce(nullif(w.application_name, ''), w.backend_type),
                              w.wait_event,
                              coalesce(nullif(b.application_name, ''), b.backend_type, '?')
                       FROM pg_stat_activity w
                       LEFT JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) ON true
                       LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
                       WHERE w.datname = %s AND w.wait_event_type = 'Lock'
                         AND w.pid <> pg_backend_pid()""", [DB_NAME]).fetchall()
                self.samples += 1
                self.waits.update(rows)

    def drain_waits(self) -> int:
        return sum(n for (who, _, _), n in self.waits.items() if who == "bench drain")

    def summary(self) -> str:
        return "; ".join(f"{who} on {what} held by {by}: {n}"
                         for (who, what, by), n in self.waits.most_common(4)) or "none"


def prune_beside_drain(window: float, cycles: int):
    """The maintainer's Pruner (default batch size and rest) in a thread, switched on and
    off every `window` seconds beside a drain for `cycles` cycles: the drain's rate in the
    "on" windows against the "off" windows, both under the same background load."""
    from tasks.maintenance.pruner import Pruner

    gate, stop = threading.Event(), threading.Event()

    class GatedPruner(Pruner):
        batch_ms: list[float] = []

        def prune_batch(self, status, after):
            gate.wait()
            t0 = time.perf_counter()
            result = super().prune_batch(status, after)
            self.batch_ms.append((time.perf_counter() - t0) * 1000)
            return result

    def run() -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SET application_name = 'bench pruner'")
        pruner.run_once(stop)
        connection.close()

    pruner = GatedPruner()
    thread = threading.Thread(target=run, daemon=True)
    drain = Drain()
    sampler = WaitSampler()
    windows: list[tuple[bool, float, float]] = []
    try:
        time.sleep(3)  # start-up
        sampler.start()
        thread.start()
        for on in [False, True] * cycles + [False]:
            start = time.monotonic()
            (gate.set if on else gate.clear)()
            time.sleep(window)
            windows.append((on, start, time.monotonic()))
        gate.clear()
        sampler.halt.set()
        sampler.join()
    finally:
        drain.stop()
        stop.set()
        gate.set()
        thread.join()
    on_w = [(s, e) for on, s, e in windows if on]
    off_w = [(s, e) for on, s, e in windows if not on]
    return {
        "on": statistics.median(drain.rate(s, e) for s, e in on_w),
        "off": statistics.median(drain.rate(s, e) for s, e in off_w),
        "pruned": pruner.last.total, "on_s": sum(e - s for s, e in on_w),
        "batch_ms": pruner.batch_ms, "sampler": sampler, "rest": pruner.config.rest,
        "batch_size": pruner.config.batch_size,
    }


def prune_the_rest(conn: psycopg.Connection):
    """The rest at full speed (rest 0, as prunetasks runs), alone: time and WAL."""
    from tasks.maintenance.pruner import Pruner, PrunerConfig

    pruner = Pruner(PrunerConfig.from_settings(rest=0))
    lsn = wal_lsn(conn)
    t0 = time.perf_counter()
    pruner.run_once()
    return pruner.last, time.perf_counter() - t0, wal_since(conn, lsn)


def mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3_000_000)
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds the pruner is on, then off, beside the drain")
    parser.add_argument("--cycles", type=int, default=6, help="on/off cycles of the pruner")
    parser.add_argument("--strategy-pairs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the bench_prune database")
    parser.add_argument("--drain-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain_child:
        drain_child()
        return
    rows: list[tuple[str, str]] = []
    create_database()
    try:
        setup_django()
        from django.core.management import call_command

        from tasks.conf import engine

        call_command("migrate", verbosity=0)
        with psycopg.connect(BENCH_URL, autocommit=True) as conn:
            print(f"loading {args.tasks:,} tasks ...", flush=True)
            load_s = load(conn, args.tasks)
            n_tasks, n_hist = counts(conn)
            before = sizes(conn)
            rows += [("tasks / history rows", f"{n_tasks:,} / {n_hist:,}"),
                     ("load (generate_series, indexes after)", f"{load_s:.0f} s"),
                     ("size before: tasks / history", f"{mb(before['tasks'])} / "
                                                        f"{mb(before['task_history'])}")]

            print("comparing history deletion strategies ...", flush=True)
            size = engine().PRUNE_BATCH_SIZE
            e_ms, c_ms = compare_strategies(conn, args.strategy_pairs, size)
            rows += [(f"batch of {size:,}: lock, then tasks and their history in one statement",
                      f"{e_ms:.0f} ms"),
                     (f"batch of {size:,}: lock, then ON DELETE CASCADE", f"{c_ms:.0f} ms")]

            print("pruning beside a drain ...", flush=True)
            r = prune_beside_drain(args.window, args.cycles)
            sampler = r["sampler"]
            ms = sorted(r["batch_ms"])
            rows += [
                (f"beside the drain: pruner batch {r['batch_size']:,}, rest {r['rest']:g}x",
                 f"{r['pruned']:,} tasks in {r['on_s']:.0f} s "
                 f"({r['pruned'] / r['on_s']:,.0f} tasks/s)"),
                ("  batch (lock, then delete) p50 / p95 / max",
                 f"{ms[len(ms) // 2]:.0f} / {ms[int(0.95 * (len(ms) - 1))]:.0f} / "
                 f"{ms[-1]:.0f} ms"),
                (f"  drain, pruner off / on (median of {args.cycles + 1} / {args.cycles} "
                 f"windows of {args.window:g} s)", f"{r['off']:,.0f} / {r['on']:,.0f} tasks/s"),
                ("  drain slowdown while pruning", f"{(1 - r['on'] / r['off']) * 100:.1f} %"),
                ("  samples (100 ms) with the drain waiting on a lock",
                 f"{sampler.drain_waits()} of {sampler.samples}"),
                ("  lock waits seen", sampler.summary()),
            ]
            print("pruning the rest at full speed ...", flush=True)
            pruned, prune_s, wal = prune_the_rest(conn)
            n_hist = sum(pruned.history.values())
            rows += [
                ("alone, full speed (rest 0): tasks / history rows",
                 f"{pruned.total:,} / {n_hist:,} in {prune_s:.0f} s "
                 f"({pruned.total / prune_s:,.0f} tasks/s)"),
                ("  WAL written", f"{mb(wal)} ({wal / max(pruned.total, 1):,.0f} bytes per task)"),
            ]

            after = sizes(conn)
            t0 = time.perf_counter()
            conn.execute("VACUUM tasks")
            conn.execute("VACUUM task_history")
            vac_s = time.perf_counter() - t0
            vacuumed = sizes(conn)
            t0 = time.perf_counter()
            conn.execute("VACUUM FULL task_history")
            full_s = time.perf_counter() - t0
            full = sizes(conn)
            rows += [
                ("size after prune: tasks / history",
                 f"{mb(after['tasks'])} / {mb(after['task_history'])}"),
                (f"after VACUUM ({vac_s:.0f} s): tasks / history",
                 f"{mb(vacuumed['tasks'])} / {mb(vacuumed['task_history'])}"),
                (f"after VACUUM FULL task_history ({full_s:.0f} s)",
                 mb(full["task_history"])),
            ]
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database()
    print(f"\nPruner bench: {args.tasks:,} tasks, database {DB_NAME}\n")
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value")
    print(f"|{'-' * (width + 2)}|------")
    for name, value in rows:
        print(f"| {name:<{width}} | {value}")


if __name__ == "__main__":
    main()
