"""Benchmark: enqueue, drain and pickup latency of the Task Service. Prints a table.

    make bench                                  # against $DATABASE_URL, or the embedded one
    BENCH_N=20000 BENCH_REPS=3 .venv/bin/python bench/bench.py
    .venv/bin/python bench/bench.py --phases drain1 --concurrency 32

Phases follow ../shared/bench-peers (same workload, same definitions) so the figures can
be compared in one sitting with pgqueuer, procrastinate, Celery and a raw psycopg loop:
- enq1: N `engine.enqueue` calls, one at a time, from one process (tasks/s);
- enqbulk: N tasks in one `engine.enqueue_many` call (tasks/s);
- drain1 / drain2: N no-op tasks queued first, then 1 or 2 `runworker` processes;
  rate = N / (last finished - first started), start-up excluded; history rows kept;
- lat: an idle worker, 200 tasks enqueued 50 ms apart; plugin start - enqueue call, ms;
- rss: peak resident memory of one worker process during drain1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
# DEBUG off: Django's debug cursor would log every statement and skew time and memory.
os.environ["DEBUG"] = "0"
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-" + "x" * 40)
os.environ["TASKS_PLUGINS"] = '{"bench_mark": {"plugin": "bench.plugins.Mark"}}'

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
from django.db import connection  # noqa: E402

from tasks import engine  # noqa: E402

N = int(os.environ.get("BENCH_N", "20000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
LAT_N = int(os.environ.get("BENCH_LAT_N", "200"))
LAT_GAP = 0.05


def reset() -> None:
    # TRUNCATE only: an ANALYZE of the empty tables would tell the planner `tasks` is
    # empty, and the history rows' foreign-key check would then scan it in full, slower
    # with every row (2,200/s falling to 1,000/s within 10,000 enqueues).
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tasks, task_history, task_dependencies, task_workers "
                       "RESTART IDENTITY")


def worker(concurrency: int | None) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "manage.py"), "runworker"]
    if concurrency:
        cmd += ["--concurrency", str(concurrency)]
    env = dict(os.environ, LOG_LEVEL="WARNING")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def count(status: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tasks WHERE status = %s", [status])
        return cursor.fetchone()[0]


class PeakRss(threading.Thread):
    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc = psutil.Process(proc.pid)
        self.peak = 0
        self.halt = False

    def run(self):
        while not self.halt:
            try:
                tree = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.1)


def bench_enq1() -> float:
    reset()
    t0 = time.perf_counter()
    for i in range(N):
        engine.enqueue(name=f"t{i}", type="noop")
    return N / (time.perf_counter() - t0)


def bench_enqbulk() -> float:
    reset()
    specs = [{"name": f"t{i}", "type": "noop"} for i in range(N)]
    t0 = time.perf_counter()
    engine.enqueue_many(specs)
    return N / (time.perf_counter() - t0)


def bench_drain(nworkers: int, concurrency: int | None) -> tuple[float, float]:
    reset()
    for start in range(0, N, 10000):
        engine.enqueue_many([{"name": f"t{i}", "type": "noop"}
                             for i in range(start, min(N, start + 10000))])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks")
    procs = [worker(concurrency) for _ in range(nworkers)]
    rss = PeakRss(procs[0])
    rss.start()
    deadline = time.time() + 300
    try:
        while count("succeeded") < N:
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("drain did not finish")
            time.sleep(0.05)
    finally:
        rss.halt = True
        stop(procs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM tasks")
        span = float(cursor.fetchone()[0])
    return N / span, rss.peak / 2**20


def bench_latency(concurrency: int | None) -> tuple[float, float]:
    reset()
    proc = worker(concurrency)
    try:
        warm = engine.enqueue(name="warm", type="bench_mark")
        t0 = time.time()
        while count("succeeded") < 1:
            if time.time() - t0 > 60:
                raise RuntimeError("worker not ready")
            time.sleep(0.05)
        time.sleep(1.5)
        sent: dict[int, float] = {}
        start = time.time()
        for i in range(LAT_N):
            target = start + i * LAT_GAP
            now = time.time()
            if target > now:
                time.sleep(target - now)
            t = time.time()
            task = engine.enqueue(name=f"lat{i}", type="bench_mark")
            sent[task.pk] = t
        t1 = time.time()
        while count("succeeded") < LAT_N + 1 and time.time() - t1 < 30:
            time.sleep(0.1)
    finally:
        stop([proc])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, (result->>'t')::float8 FROM tasks WHERE id <> %s AND "
                       "status = 'succeeded'", [warm.pk])
        lats = sorted((t - sent[i]) * 1000 for i, t in cursor.fetchall())
    return statistics.median(lats), lats[int(round(0.95 * (len(lats) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="enq1,enqbulk,drain1,drain2,lat")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="worker --concurrency (default: the service default)")
    args = parser.parse_args()
    phases = args.phases.split(",")
    rows = []

    def med(fn, *a):
        runs = [fn(*a) for _ in range(REPS)]
        return runs

    if "enq1" in phases:
        runs = med(bench_enq1)
        rows.append(("enqueue, one at a time", f"{statistics.median(runs):,.0f} tasks/s", runs))
    if "enqbulk" in phases:
        runs = med(bench_enqbulk)
        rows.append(("enqueue, bulk", f"{statistics.median(runs):,.0f} tasks/s", runs))
    rss_runs = []
    for nw, key in ((1, "drain1"), (2, "drain2")):
        if key in phases:
            runs = med(bench_drain, nw, args.concurrency)
            rates = [r for r, _ in runs]
            if nw == 1:
                rss_runs = [m for _, m in runs]
            rows.append((f"drain {N:,} no-op, {nw} worker process{'es' if nw > 1 else ''}",
                         f"{statistics.median(rates):,.0f} tasks/s", rates))
    if "lat" in phases:
        runs = med(bench_latency, args.concurrency)
        rows.append(("pickup latency p50", f"{statistics.median(r[0] for r in runs):.1f} ms",
                     [r[0] for r in runs]))
        rows.append(("pickup latency p95", f"{statistics.median(r[1] for r in runs):.1f} ms",
                     [r[1] for r in runs]))
    if rss_runs:
        rows.append(("worker peak RSS (drain1)", f"{statistics.median(rss_runs):.0f} MB",
                     rss_runs))
    reset()
    s = connection.settings_dict
    print(f"\nTask Service bench: N={N:,}, median of {REPS}, concurrency "
          f"{args.concurrency or 'default'}, database {s['NAME']}@{s['HOST'] or 'local'}\n")
    print(f"| {'measure':<40} | {'median':>16} | runs")
    print(f"|{'-' * 42}|{'-' * 18}|------")
    for name, value, runs in rows:
        print(f"| {name:<40} | {value:>16} | {', '.join(f'{r:,.1f}' for r in runs)}")


if __name__ == "__main__":
    main()
