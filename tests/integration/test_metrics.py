"""/metrics is scraped and its figures are checked against the database."""

from __future__ import annotations

import datetime
import time

import pytest
from django.db.models import Count
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tasks import engine
from tasks.metrics import DURATION_BUCKETS
from tasks.models import FINISHED_STATUSES, Status, Task, TaskHistory, Worker

pytestmark = pytest.mark.django_db(transaction=True)  # real timestamps per statement

TOKEN = "s3cret-token"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.TASKS_METRICS_TOKEN = TOKEN


def scrape(client, **headers) -> dict[str, list]:
    response = client.get("/metrics", **{**AUTH, **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def by_labels(samples, name: str, *labels: str) -> dict[tuple, float]:
    return {tuple(s.labels[k] for k in labels): s.value for s in samples.get(name, [])}


@pytest.fixture
def populated(settings):
    # Retries far in the future: the retrying task must not become due during the test.
    settings.TASKS_ENGINE = {**settings.TASKS_ENGINE, "BACKOFF_BASE": 3600.0}
    now = timezone.now()
    for _ in range(3):
        engine.enqueue(name="q", type="count")
    engine.enqueue(name="old", type="count", queue="emails",
                   run_at=now - datetime.timedelta(seconds=120))
    engine.enqueue(name="later", type="count", queue="emails",
                   run_at=now + datetime.timedelta(hours=1))
    cancelled = engine.enqueue(name="c", type="boom", queue="emails")
    engine.cancel(cancelled.id, reason="test")

    bulk = [engine.enqueue(name=f"b{i}", type="boom", queue="bulk", max_retries=1)
            for i in range(3)]
    bulk.append(engine.enqueue(name="last", type="boom", queue="bulk", max_retries=0))
    claimed = {c.id: c for c in engine.claim(worker_id="w1", limit=10, queues=["bulk"])}
    assert set(claimed) == {t.id for t in bulk}

    def outcome(task, **kw):
        c = claimed[task.id]
        return engine.Outcome(task_id=c.id, attempt=c.attempt, retry_count=c.retry_count, **kw)

    engine.complete(worker_id="w1", outcomes=[outcome(bulk[0], result=1)])
    time.sleep(0.3)  # a longer run: lands in a higher duration bucket
    applied = engine.fail(worker_id="w1", outcomes=[outcome(bulk[1], error="x"),
                                                    outcome(bulk[3], error="y")])
    assert applied == {bulk[1].id: Status.RETRYING, bulk[3].id: Status.FAILED}
    # bulk[2] stays running.

    engine.register_worker(worker_id="w1", hostname="h", pid=1, queues=["bulk"], concurrency=4)
    engine.register_worker(worker_id="gone", hostname="h", pid=2, queues=[], concurrency=7)
    Worker.objects.filter(id="gone").update(last_seen=now - datetime.timedelta(hours=1))
    return {"bulk": bulk, "cancelled": cancelled}


def test_metrics_match_the_database(client, populated):
    samples = scrape(client)

    expected_tasks = {
        (r["status"], r["type"], r["queue"]): r["n"]
        for r in Task.objects.values("status", "type", "queue").annotate(n=Count("id"))
    }
    assert by_labels(samples, "taskservice_tasks", "status", "type", "queue") == expected_tasks
    # And the figures are the ones the fixture made, not just self-consistent.
    assert expected_tasks == {
        ("queued", "count", "default"): 3, ("queued", "count", "emails"): 2,
        ("cancelled", "boom", "emails"): 1, ("succeeded", "boom", "bulk"): 1,
        ("retrying", "boom", "bulk"): 1, ("failed", "boom", "bulk"): 1,
        ("running", "boom", "bulk"): 1,
    }

    now = timezone.now()
    due = Task.objects.filter(status__in=[Status.QUEUED, Status.RETRYING], run_at__lte=now)
    expected_depth = {(r["queue"],): r["n"] for r in due.values("queue").annotate(n=Count("id"))}
    assert by_labels(samples, "taskservice_queue_depth", "queue") == expected_depth
    assert expected_depth == {("default",): 3, ("emails",): 1}

    ages = by_labels(samples, "taskservice_oldest_due_task_age_seconds", "queue")
    assert set(ages) == {("default",), ("emails",)}
    assert 120 <= ages[("emails",)] < 180
    assert 0 <= ages[("default",)] < 60

    retries = by_labels(samples, "taskservice_task_retries_total", "type", "queue")
    history = TaskHistory.objects.filter(event_type="retry_scheduled")
    assert retries == {(h.task.type, h.task.queue): 1 for h in history}
    assert retries == {("boom", "bulk"): 1}

    assert by_labels(samples, "taskservice_workers_online") == {(): 1}
    assert by_labels(samples, "taskservice_worker_slots") == {(): 4}


def test_duration_histogram_matches_finished_tasks(client, populated):
    samples = scrape(client)
    finished = Task.objects.filter(status__in=FINISHED_STATUSES, started_at__isnull=False,
                                   finished_at__isnull=False)
    durations: dict[tuple, list[float]] = {}
    for task in finished:
        seconds = (task.finished_at - task.started_at).total_seconds()
        durations.setdefault((task.type, task.status), []).append(seconds)
    # The cancelled task never ran: only the succeeded and the failed one have durations.
    assert set(durations) == {("boom", "succeeded"), ("boom", "failed")}
    assert durations[("boom", "failed")][0] >= 0.3

    buckets = samples["taskservice_task_duration_seconds_bucket"]
    for key, values in durations.items():
        got = {s.labels["le"]: s.value for s in buckets
               if (s.labels["type"], s.labels["status"]) == key}
        want = {repr(le): sum(v <= le for v in values) for le in DURATION_BUCKETS}
        want["+Inf"] = len(values)
        assert {float(k): v for k, v in got.items()} == {float(k): v for k, v in want.items()}
    counts = by_labels(samples, "taskservice_task_duration_seconds_count", "type", "status")
    assert counts == {k: len(v) for k, v in durations.items()}
    sums = by_labels(samples, "taskservice_task_duration_seconds_sum", "type", "status")
    assert sums == {k: pytest.approx(sum(v), abs=1e-3) for k, v in durations.items()}


def test_figures_follow_changes(client, populated):
    before = by_labels(scrape(client), "taskservice_tasks", "status", "type", "queue")
    engine.cancel(populated["bulk"][1].id)  # retrying -> cancelled
    engine.retry(populated["cancelled"].id)  # cancelled -> queued
    after = by_labels(scrape(client), "taskservice_tasks", "status", "type", "queue")
    assert before[("retrying", "boom", "bulk")] == 1
    assert after[("cancelled", "boom", "bulk")] == 1
    assert ("retrying", "boom", "bulk") not in after
    assert after[("queued", "boom", "emails")] == 1
    assert ("cancelled", "boom", "emails") not in after


def test_token_protects_metrics_when_set(client, db):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert b"TASKS_METRICS_TOKEN" in missing.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    ok = client.get("/metrics", **AUTH)
    assert ok.status_code == 200
    assert b"taskservice_workers_online" in ok.content


def test_metrics_are_closed_without_a_token(client, db, settings):
    settings.TASKS_METRICS_TOKEN = ""
    for headers in ({}, AUTH, {"HTTP_AUTHORIZATION": "Bearer "}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 403
        assert b"TASKS_METRICS_TOKEN" in response.content
        assert b"TASKS_METRICS_PUBLIC=1" in response.content
        assert b"taskservice_" not in response.content


def test_metrics_can_be_opened_explicitly(client, db, settings):
    settings.TASKS_METRICS_TOKEN = ""
    settings.TASKS_METRICS_PUBLIC = True
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"taskservice_queue_depth" in response.content


def test_metrics_is_read_only(client, db):
    assert client.post("/metrics", **AUTH).status_code == 405


def test_openmetrics_is_negotiated(client, db):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0",
                          **AUTH)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_a_scrape_never_reads_the_history_table(client, populated):
    """History grows three or more rows a task: a scrape reads `tasks` and workers only."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        scrape(client)
    statements = [q["sql"] for q in queries.captured_queries]
    assert any("FROM tasks" in sql for sql in statements)
    assert not [sql for sql in statements if "task_history" in sql]


def test_waiting_tasks_are_counted_by_status_and_per_queue_but_not_as_due(client, db):
    parent = engine.enqueue(name="parent", type="count", queue="etl")
    engine.enqueue(name="child", type="count", queue="etl", depends_on=[parent.pk])
    engine.enqueue_many([{"name": "a", "type": "count", "queue": "mail",
                          "depends_on": [parent.pk]},
                         {"name": "b", "type": "count", "queue": "mail", "after": [0]}])
    samples = scrape(client)
    assert by_labels(samples, "taskservice_tasks", "status", "type", "queue") == {
        ("queued", "count", "etl"): 1, ("waiting", "count", "etl"): 1,
        ("waiting", "count", "mail"): 2}
    assert by_labels(samples, "taskservice_tasks_waiting", "queue") == {("etl",): 1,
                                                                       ("mail",): 2}
    # Not claimable: neither queue depth nor the oldest due age counts them.
    assert by_labels(samples, "taskservice_queue_depth", "queue") == {("etl",): 1}
    assert set(by_labels(samples, "taskservice_oldest_due_task_age_seconds", "queue")) == {
        ("etl",)}
