"""The pruner bench's drain and lock watcher: a claim/complete loop in a child process
(run as `python bench/prune_drain.py` by Drain, in the bench's database), and a sampler
of the lock waits every backend of that database sees meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the project root, as bench/prune.py has
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.prune_data import BENCH_URL, DB_NAME, ROOT, setup_django  # noqa: E402

DRAIN_BATCH = 100


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
        self.proc = subprocess.Popen([sys.executable, __file__], cwd=ROOT,
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


if __name__ == "__main__":
    drain_child()
