"""manage.py end2end: a drill through the whole service with real workers.

Creates a mix of tasks (sleeps, failures that retry, timeouts, emails, queries), shows
live progress until every one has finished or time runs out, and prints a summary.
Exits non-zero on a timeout, after cancelling what is left so no drill work lingers.
"""

from __future__ import annotations

import random
import time
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Sum

from plugins.query import enabled as query_enabled
from tasks import engine, selectors
from tasks.models import FINISHED_STATUSES, Origin, Status, Task

BAR_WIDTH = 30


def task_mix(n: int, *, max_duration: float, queue_name: str, run_id: str,
             queries: bool = True) -> list[dict]:
    """n task specs: mostly sleeps (a fifth of them fail once or more and retry), some
    that overrun a 1-second timeout, emails to the configured backend, and queries (sleeps
    in their place when run_query has no database configured)."""
    rng = random.Random(run_id)
    specs = []
    for i in range(n):
        kind = i % 10
        spec = {"name": f"end2end {run_id} #{i + 1}", "queue": queue_name, "max_retries": 2}
        if kind <= 5:
            spec.update(type="simulate", payload={
                "duration": round(rng.uniform(0, max_duration), 3), "failure_rate": 0.2})
        elif kind == 6:
            spec.update(type="simulate", timeout_seconds=1, max_retries=0,
                        payload={"duration": 0, "timeout_rate": 1.0})
        elif kind in (7, 8):
            spec.update(type="send_email", payload={
                "to": "end2end@example.com", "subject": f"end2end {run_id} #{i + 1}",
                "body": "A drill message from manage.py end2end."})
        elif queries:
            # Any query database has a catalogue, whatever the operator granted.
            spec.update(type="run_query", payload={
                "sql": "SELECT current_database(), count(*) FROM information_schema.tables"})
        else:
            spec.update(type="simulate", payload={"duration": 0})
        specs.append(spec)
    return specs


class Command(BaseCommand):
    help = "Run a mix of tasks through the workers, show progress, and summarise."

    def add_arguments(self, parser):
        parser.add_argument("-n", "--num-tasks", dest="n", type=int, default=100,
                            help="Tasks to create (default 100). Example: -n 50")
        parser.add_argument("--timeout", type=float, default=180.0,
                            help="Seconds to wait for every task to finish (default 180).")
        parser.add_argument("--interval", type=float, default=2.0,
                            help="Seconds between progress lines (default 2).")
        parser.add_argument("--max-duration", type=float, default=2.0,
                            help="Longest simulated task, in seconds (default 2).")
        parser.add_argument("--queue", dest="queue_name", default="default",
                            help="Queue for the drill's tasks (default 'default').")

    def handle(self, *args, n: int, timeout: float, interval: float, max_duration: float,
               queue_name: str, **options):
        if not 1 <= n <= 100_000:
            raise CommandError("-n must be between 1 and 100000.")
        if timeout <= 0 or interval <= 0 or max_duration < 0:
            raise CommandError("--timeout and --interval must be positive, --max-duration "
                               "not negative.")
        run_id = uuid.uuid4().hex[:8]
        workers = selectors.workers_online().count()
        queries = query_enabled()
        ids = self._create(task_mix(n, max_duration=max_duration, queue_name=queue_name,
                                    run_id=run_id, queries=queries))
        self.stdout.write(f"end2end {run_id}: {n} tasks on queue {queue_name!r}; "
                          f"{workers} worker(s) online.")
        if not queries:
            self.stdout.write("run_query is off (no TASKS_QUERY_DATABASE_URL): no queries.")
        if not workers:
            self.stdout.write("No worker is online: start one with `manage.py runworker`.")
        started = time.monotonic()
        deadline = started + timeout
        while True:
            counts = selectors.status_counts(Task.objects.filter(pk__in=ids))
            finished = sum(counts[s] for s in FINISHED_STATUSES)
            self.stdout.write(progress_line(counts, n, time.monotonic() - started))
            if finished == n or time.monotonic() >= deadline:
                break
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        self.stdout.write(self._summary(ids, time.monotonic() - started))
        if finished < n:
            left = self._cancel_unfinished(ids)
            raise CommandError(f"Timed out after {timeout:g}s: {n - finished} of {n} tasks "
                               f"unfinished ({left} cancelled).")

    def _create(self, specs: list[dict]) -> list[int]:
        ids: list[int] = []
        for start in range(0, len(specs), 1000):  # one statement per thousand tasks
            ids += [task.pk for task in engine.enqueue_many(specs[start:start + 1000],
                                                             origin=Origin.CLI)]
        return ids

    @staticmethod
    def _cancel_unfinished(ids: list[int]) -> int:
        active = list(Task.objects.filter(pk__in=ids).exclude(status__in=FINISHED_STATUSES)
                      .values_list("pk", flat=True))
        return len(engine.cancel_many(active, reason="end2end timed out").done)

    @staticmethod
    def _summary(ids: list[int], elapsed: float) -> str:
        tasks = Task.objects.filter(pk__in=ids)
        counts = selectors.status_counts(tasks)
        retries = tasks.aggregate(n=Sum("retry_count"))["n"] or 0
        finished = sum(counts[s] for s in FINISHED_STATUSES)
        lines = ["", "Summary", f"  tasks:      {len(ids)}",
                 f"  finished:   {finished} in {elapsed:.1f}s "
                 f"({finished / elapsed if elapsed else 0:.1f} tasks/s)",
                 f"  retries:    {retries}"]
        lines += [f"  {status + ':':<11} {counts[status]}" for status in Status.values]
        lines.append("  by type:")
        by_type = tasks.order_by("type", "status").values_list("type", "status").annotate(
            c=Count("id"))
        per_type: dict[str, dict[str, int]] = {}
        for type_name, status, count in by_type:
            per_type.setdefault(type_name, {})[status] = count
        for type_name, statuses in per_type.items():
            detail = ", ".join(f"{s} {c}" for s, c in statuses.items())
            lines.append(f"    {type_name:<12} {sum(statuses.values()):>5}  ({detail})")
        return "\n".join(lines)


def progress_line(counts: dict[str, int], total: int, elapsed: float) -> str:
    """`[#####.....]  5/10 finished | queued 3 running 2 ... | 4s`"""
    finished = sum(counts[s] for s in FINISHED_STATUSES)
    filled = BAR_WIDTH * finished // total if total else BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    parts = " ".join(f"{status} {counts[status]}" for status in Status.values)
    return f"[{bar}] {finished:>{len(str(total))}}/{total} finished | {parts} | {elapsed:.0f}s"
