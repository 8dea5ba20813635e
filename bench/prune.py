"""Benchmark the pruner on a large history, beside a drain. Prints a table.

    .venv/bin/python bench/prune.py                      # 3,000,000 tasks, ~10M history rows
    .venv/bin/python bench/prune.py --tasks 300000       # a quicker look

Works in a database of its own (`bench_prune` on the $DATABASE_URL server), created,
migrated and dropped by the script (bench/prune_data.py loads it: 90% succeeded, 10%
failed, over 40 days). With the default retention (succeeded 7 days, failed 30 days)
about 79% of the tasks go.

Phases: load the data; compare the two ways of deleting history (engine.prune_finished:
one statement that deletes the tasks and then their history, versus ON DELETE CASCADE)
on a few batches; then a claim/complete drain runs in a child process
(bench/prune_drain.py) while the maintainer's own Pruner (default batch size and rest)
is switched on and off in turns; then the rest is pruned at full speed, alone (as
`prunetasks` does); then table sizes before and after VACUUM.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the project root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.prune_data import (  # noqa: E402  (it points DATABASE_URL at the bench)
    BENCH_URL,
    DB_NAME,
    counts,
    create_database,
    drop_database,
    load,
    mb,
    setup_django,
    sizes,
    wal_lsn,
    wal_since,
)
from bench.prune_drain import Drain, WaitSampler  # noqa: E402

FK = "bench_history_cascade"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3_000_000)
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds the pruner is on, then off, beside the drain")
    parser.add_argument("--cycles", type=int, default=6, help="on/off cycles of the pruner")
    parser.add_argument("--strategy-pairs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the bench_prune database")
    args = parser.parse_args()
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
