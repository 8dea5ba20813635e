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
Beside them, what a task costs: CPU per 1,000 tasks in the worker and in its PostgreSQL
backends, statements per 1,000 tasks on the hot path (claims and completions, one round
trip each), bytes on disk per drained task (tasks + history + their indexes), and the
REST API's array create (in process, no network) beside `enqueue_many`.

    make bench BENCH_ARGS="--peers raw,pgqueuer"   # then the peers, same sitting, with ratios

The database is migrated first.
"""

from __future__ import annotations

import argparse
import json
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
os.environ["ALLOWED_HOSTS"] = "testserver"  # the in-process API client
os.environ["TASKS_PLUGINS"] = '{"bench_mark": {"plugin": "bench.plugins.Mark"}}'

import warnings  # noqa: E402

# WhiteNoise warns that collectstatic has not run: the bench serves no static files.
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from bench import peers  # noqa: E402
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
        cursor.execute("TRUNCATE tasks, task_history, task_workers RESTART IDENTITY")


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


def backend_cpu() -> float:
    """CPU seconds used so far by the other server backends of this database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        pids = [r[0] for r in cursor.fetchall()]
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def bench_api_bulk() -> float:
    """N tasks through POST /api/tasks as arrays of the API's most per request."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tasks.api.views import MAX_BULK
    reset()
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    bodies = [json.dumps([{"name": f"t{i}", "type": "noop"}
                          for i in range(start, min(N, start + MAX_BULK))])
              for start in range(0, N, MAX_BULK)]
    t0 = time.perf_counter()
    for body in bodies:
        response = client.post("/api/tasks", body, content_type="application/json",
                               secure=True)
        if response.status_code != 201:
            raise RuntimeError(f"API create: HTTP {response.status_code} {response.content[:200]}")
    return N / (time.perf_counter() - t0)


def hot_path_costs() -> dict[str, float]:
    """After a drain: statements per 1,000 tasks (a claim or a completion stamps all its
    history rows with one now() per worker) and bytes on disk per task."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT count(DISTINCT (worker_id, created_at)) FILTER (
                       WHERE event_type = 'task_started'),
                   count(DISTINCT (worker_id, created_at)) FILTER (
                       WHERE event_type = 'task_succeeded'),
                   pg_total_relation_size('tasks') + pg_total_relation_size('task_history')
            FROM task_history""")
        claims, completions, size = cursor.fetchone()
    return {"claims": claims * 1000 / N, "completions": completions * 1000 / N,
            "bytes": size / N}


def bench_drain(nworkers: int, concurrency: int | None) -> dict[str, float]:
    """Drain N queued no-op tasks; rate, peak RSS, and CPU per 1,000 tasks by side."""
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
        # Read before the workers exit: their backends end with them.
        worker_cpu = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs)
        server_cpu = backend_cpu()
    finally:
        rss.halt = True
        stop(procs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM tasks")
        span = float(cursor.fetchone()[0])
    return {"rate": N / span, "rss": rss.peak / 2**20,
            "worker_cpu": worker_cpu * 1e6 / N, "server_cpu": server_cpu * 1e6 / N,
            **hot_path_costs()}


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
    parser.add_argument("--peers", default="",
                        help="then run these peers of ../shared/bench-peers (e.g. raw,pgqueuer) "
                             "in the same sitting and print the ratios")
    args = parser.parse_args()
    phases = args.phases.split(",")
    call_command("migrate", verbosity=0)
    rows: list[tuple[str, str, list[float]]] = []
    ours: dict[str, float] = {}

    def measure(key, label, unit, fn, *a, fmt=",.0f"):
        runs = [fn(*a) for _ in range(REPS)]
        ours[key] = statistics.median(runs)
        rows.append((label, f"{ours[key]:{fmt}} {unit}", runs))

    if "enq1" in phases:
        measure("enq_single", "enqueue, one at a time", "tasks/s", bench_enq1)
    if "enqbulk" in phases:
        measure("enq_bulk", "enqueue, bulk (enqueue_many)", "tasks/s", bench_enqbulk)
        measure("api_bulk", "  REST array create, in process", "tasks/s", bench_api_bulk)
    for nw, key in ((1, "drain1"), (2, "drain2")):
        if key not in phases:
            continue
        runs = [bench_drain(nw, args.concurrency) for _ in range(REPS)]
        label = f"{nw} worker process{'es' if nw > 1 else ''}"
        for part, name, unit, fmt in (
                ("rate", f"drain {N:,} no-op, {label}", "tasks/s", ",.0f"),
                ("worker_cpu", f"  CPU per 1,000 tasks, worker ({label})", "ms", ",.0f"),
                ("server_cpu", f"  CPU per 1,000 tasks, PostgreSQL ({label})", "ms", ",.0f"),
                ("claims", f"  claim statements per 1,000 tasks ({label})", "", ",.1f"),
                ("completions", f"  completion statements per 1,000 tasks ({label})", "",
                 ",.1f"),
                ("bytes", f"  bytes on disk per task ({label})", "B", ",.0f")):
            values = [r[part] for r in runs]
            median = statistics.median(values)
            rows.append((name, f"{median:{fmt}} {unit}".rstrip(), values))
            if part == "rate":
                ours[key] = median
        if nw == 1:
            ours["rss"] = statistics.median(r["rss"] for r in runs)
    if "lat" in phases:
        runs = [bench_latency(args.concurrency) for _ in range(REPS)]
        ours["lat_p50"] = statistics.median(r[0] for r in runs)
        ours["lat_p95"] = statistics.median(r[1] for r in runs)
        rows.append(("pickup latency p50", f"{ours['lat_p50']:.1f} ms", [r[0] for r in runs]))
        rows.append(("pickup latency p95", f"{ours['lat_p95']:.1f} ms", [r[1] for r in runs]))
    if "rss" in ours:
        rows.append(("worker peak RSS (drain1)", f"{ours['rss']:.0f} MB", [ours["rss"]]))
    reset()
    s = connection.settings_dict
    print(f"\nTask Service bench: N={N:,}, median of {REPS}, concurrency "
          f"{args.concurrency or 'default'}, database {s['NAME']}@{s['HOST'] or 'local'}\n")
    print(f"| {'measure':<50} | {'median':>14} | runs")
    print(f"|{'-' * 52}|{'-' * 16}|------")
    for name, value, runs in rows:
        print(f"| {name:<50} | {value:>14} | {', '.join(f'{r:,.1f}' for r in runs)}")
    if args.peers:
        found = peers.run_peers(args.peers.split(","), N, REPS)
        print(f"\nSame sitting, N={N:,}, median of {REPS}; × is the Task Service's ratio "
              "to the peer (above 1 is better)\n")
        print(peers.side_by_side(ours, found))


if __name__ == "__main__":
    main()
