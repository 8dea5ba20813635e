"""Prometheus `/metrics`: the queue's figures, read from PostgreSQL at scrape time.

Why a collector that queries the database rather than counters kept in memory: the
service runs as many web and worker processes on many machines, and any of them may be
scraped. In-process counters would each see a slice (and reset on every restart);
the database sees everything, so every replica answers with the same, whole figures and
nothing needs prometheus_client's multi-process mode or a shared directory.

Task durations come from `started_at`/`finished_at` of finished tasks (their last
attempt), aggregated into cumulative histogram buckets at scrape time. The figures only
grow as tasks finish, so `rate()` and `histogram_quantile()` work as with an in-process
histogram. (A person requeueing a failed task takes it out again until it finishes: a
small dip that Prometheus reads like a counter reset.) Retries are the tasks' own
`retry_count`, summed in the same pass over `tasks` as the counts: the history table (three
or more rows a task) is never read by a scrape. Pruning and a person's retry lower the sum;
Prometheus reads that as a counter reset.

Access: closed by default, since /metrics is served on the same port as everything else
and an Ingress may expose it. Set TASKS_METRICS_TOKEN to require `Authorization: Bearer
<token>` (Prometheus sends it with `authorization: {credentials_file: ...}`), or
TASKS_METRICS_PUBLIC=1 to open it to anyone who reaches the server (the figures are
aggregate counts: no payloads, results, errors or ids); `check --deploy` warns then.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tasks import states
from tasks.conf import engine
from tasks.models import FINISHED_STATUSES

logger = logging.getLogger(__name__)

PREFIX = "taskservice"
# Seconds; spans quick API-style jobs to the longest default timeout and beyond.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                    3600.0)
# A scrape must never pile up behind a slow query: it fails fast instead.
SCRAPE_STATEMENT_TIMEOUT_MS = 5000

_BY_STATUS = """
SELECT status, type, queue, count(*), sum(retry_count) FROM tasks GROUP BY status, type, queue
"""

_DUE = """
SELECT queue, count(*), extract(epoch FROM now() - min(run_at))
FROM tasks WHERE status IN ('queued', 'retrying') AND run_at <= now()
GROUP BY queue
"""

_bucket_columns = ", ".join(
    f"count(*) FILTER (WHERE d <= {le!r})" for le in DURATION_BUCKETS
)
_DURATIONS = f"""
SELECT type, status, {_bucket_columns}, count(*), coalesce(sum(d), 0)
FROM (SELECT type, status, greatest(extract(epoch FROM finished_at - started_at), 0) AS d
      FROM tasks
      WHERE status = ANY(%s) AND started_at IS NOT NULL AND finished_at IS NOT NULL) s
GROUP BY type, status
"""

_WORKERS = """
SELECT count(*), coalesce(sum(concurrency), 0) FROM task_workers
WHERE last_seen >= now() - make_interval(secs => %s)
"""


def worker_timeout() -> float:
    """Seconds of silence after which a worker counts as gone (as the reaper uses)."""
    return states.liveness_window(engine())


class TaskCollector(Collector):
    """Collects the queue's figures with a handful of aggregate queries per scrape."""

    def describe(self) -> Iterator[Metric]:
        # Without describe(), registering would run the queries at import time.
        yield from self._families()

    def _families(self) -> tuple[Metric, ...]:
        p = PREFIX
        return (
            GaugeMetricFamily(f"{p}_tasks", "Tasks by status, type and queue.",
                              labels=["status", "type", "queue"]),
            GaugeMetricFamily(f"{p}_queue_depth",
                              "Tasks due to run now (queued or retrying, run_at passed).",
                              labels=["queue"]),
            GaugeMetricFamily(f"{p}_tasks_waiting",
                              "Tasks waiting for their parents to end, by queue.",
                              labels=["queue"]),
            GaugeMetricFamily(f"{p}_oldest_due_task_age_seconds",
                              "How long the oldest due task has been waiting, by queue.",
                              labels=["queue"]),
            HistogramMetricFamily(f"{p}_task_duration_seconds",
                                  "Run time of finished tasks (last attempt).",
                                  labels=["type", "status"]),
            CounterMetricFamily(f"{p}_task_retries",
                                "Retries of the tasks kept (errors and expired leases).",
                                labels=["type", "queue"]),
            GaugeMetricFamily(f"{p}_workers_online",
                              "Worker processes with a recent heartbeat."),
            GaugeMetricFamily(f"{p}_worker_slots",
                              "Tasks the online workers can run at once (concurrency)."),
        )

    def collect(self) -> Iterator[Metric]:
        tasks, depth, waiting, oldest, durations, retries, workers, slots = self._families()
        outermost = not connection.in_atomic_block
        with transaction.atomic(), connection.cursor() as cursor:
            if outermost:  # one snapshot for all figures (only a transaction's start can)
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # SET LOCAL ends with the transaction.
            cursor.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
            cursor.execute(_BY_STATUS)
            retried: dict[tuple[str, str], int] = {}
            blocked: dict[str, int] = {}
            for status, type_, queue, count, retry_total in cursor.fetchall():
                tasks.add_metric([status, type_, queue], count)
                retried[type_, queue] = retried.get((type_, queue), 0) + int(retry_total)
                if status == states.Status.WAITING:
                    blocked[queue] = blocked.get(queue, 0) + count
            for queue, count in sorted(blocked.items()):
                waiting.add_metric([queue], count)
            cursor.execute(_DUE)
            for queue, count, age in cursor.fetchall():
                depth.add_metric([queue], count)
                oldest.add_metric([queue], max(0.0, float(age)))
            cursor.execute(_DURATIONS, [[str(s) for s in FINISHED_STATUSES]])
            for row in cursor.fetchall():
                type_, status = row[0], row[1]
                counts = row[2: 2 + len(DURATION_BUCKETS)]
                total, total_sum = row[-2], float(row[-1])
                buckets = [(repr(le), n) for le, n in zip(DURATION_BUCKETS, counts, strict=True)]
                buckets.append(("+Inf", total))
                durations.add_metric([type_, status], buckets, total_sum)
            for (type_, queue), count in sorted(retried.items()):
                if count:
                    retries.add_metric([type_, queue], count)
            cursor.execute(_WORKERS, [worker_timeout()])
            online, concurrency = cursor.fetchone()
            workers.add_metric([], online)
            slots.add_metric([], concurrency)
        yield from (tasks, depth, waiting, oldest, durations, retries, workers, slots)


registry = CollectorRegistry()
registry.register(TaskCollector())
ProcessCollector(registry=registry)  # this process's CPU and memory, per replica


CLOSED = ("/metrics is closed: set TASKS_METRICS_TOKEN and send `Authorization: Bearer "
          "<token>`, or set TASKS_METRICS_PUBLIC=1 to open it to everyone.\n")


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to a scrape that may not see the figures, or None."""
    token = getattr(settings, "TASKS_METRICS_TOKEN", "")
    if not token:
        if getattr(settings, "TASKS_METRICS_PUBLIC", False):
            return None
        return HttpResponse(CLOSED, status=403, content_type="text/plain")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                          token.encode()):
        return None
    response = HttpResponse("A valid bearer token is required for /metrics "
                            "(TASKS_METRICS_TOKEN).\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = _refusal(request)
    if refused is not None:
        return refused
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encoder(registry)
    except DatabaseError as exc:
        logger.warning("metrics scrape failed: %s", exc, extra={"action": "metrics_error"})
        return HttpResponse("metrics unavailable: the database did not answer\n", status=503,
                            content_type="text/plain")
    return HttpResponse(body, content_type=content_type)
