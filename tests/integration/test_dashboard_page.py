"""The dashboard rendered by the server (what a browser without JavaScript shows): failing
groups, the queue table, worker states from heartbeats, and the range charts."""

from __future__ import annotations

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from tasks import engine, selectors, states
from tasks.conf import engine as engine_settings
from tasks.live import charts, dashboard
from tasks.models import Task, Worker
from tests.integration.conftest import WORKER, make_due, outcome
from tests.integration.test_admin import enqueue

pytestmark = pytest.mark.django_db

URL = reverse("tasks-dashboard")


def fail(n: int, error_class: str, type_: str = "noop", retries: int = 0) -> list[Task]:
    tasks = [enqueue(f"{type_} {error_class} {i}", type=type_, max_retries=retries)
             for i in range(n)]
    claimed = engine.claim(worker_id=WORKER, limit=n)
    engine.fail(worker_id=WORKER, outcomes=[outcome(
        c, error="bad", error_class=error_class, error_message=f"bad {c.id}",
        traceback=f"Traceback (most recent call last):\n  File \"x.py\"\n{error_class}: bad")
        for c in claimed])
    return tasks


def test_failing_is_one_row_per_type_and_error_class(admin_client):
    fail(3, "builtins.ValueError")
    retried = fail(2, "builtins.KeyError", retries=1)
    for task in retried:
        make_due(task.pk)
    claimed = engine.claim(worker_id=WORKER, limit=2)
    engine.fail(worker_id=WORKER, outcomes=[outcome(c, error="bad",
                                                    error_class="builtins.KeyError")
                                            for c in claimed])
    now = timezone.now()
    start = dashboard.window_start(now - datetime.timedelta(hours=1))
    groups = dashboard.failing(start, now - datetime.timedelta(hours=1))
    assert [(g["type"], g["error_class"], g["runs"], g["final"]) for g in groups] == [
        ("noop", "builtins.KeyError", 4, 2), ("noop", "builtins.ValueError", 3, 3)]
    html = admin_client.get(URL).content.decode()
    body = html[html.index('id="failing"'):html.index("</tbody>", html.index('id="failing"'))]
    assert body.count("<tr>") == 2
    assert '<pre class="task-pre task-traceback">Traceback (most recent call last):\n' \
           '  File &quot;x.py&quot;' in body


def test_queue_table_has_depth_oldest_due_running_and_the_queue_controls(admin_client):
    old = enqueue("old", queue="mail")
    Task.objects.filter(pk=old.pk).update(run_at=timezone.now() - datetime.timedelta(minutes=5))
    enqueue("later", queue="mail", run_at=timezone.now() + datetime.timedelta(hours=1))
    run_me = enqueue("run me", queue="reports")
    engine.claim(worker_id=WORKER, limit=1, queues=["reports"])
    enqueue("after it", queue="mail", depends_on=[run_me.pk])
    rows = {q["queue"]: q for q in dashboard.queues(timezone.now())}
    assert (rows["mail"]["queued"], rows["mail"]["due"], rows["mail"]["running"],
            rows["mail"]["waiting"]) == (2, 1, 0, 1)
    assert 300 <= rows["mail"]["oldest_due_seconds"] < 400
    assert (rows["reports"]["queued"], rows["reports"]["running"]) == (0, 1)
    html = admin_client.get(URL).content.decode()
    assert re.search(r'<tr data-queue="mail">.*?<td class="num">5m 0\ds</td>', html)
    assert re.search(r'<tr data-queue="mail"><td>.*?</td><td class="num">2 <span class="task-'
                     r'muted task-queue-waiting" title="waiting for their parents">\+1 waiting'
                     r'</span></td>', html)
    assert '<th class="num" title="queued or retrying, due now or later">queued</th>' in html
    assert ('<td class="task-queue-controls" data-queue="mail">'
            '<span class="task-queue-state">running') in html


def test_workers_are_online_late_or_lost_by_heartbeat(admin_client):
    for name in ("fresh", "late", "lost"):
        engine.register_worker(worker_id=name, hostname=f"host-{name}", pid=1, queues=[],
                               concurrency=2)
    settings = engine_settings()
    now = timezone.now()
    late = now - datetime.timedelta(seconds=2 * settings.HEARTBEAT_INTERVAL)
    late = max(late, now - datetime.timedelta(seconds=settings.LEASE_SECONDS - 1))
    Worker.objects.filter(pk="late").update(last_seen=late)
    Worker.objects.filter(pk="lost").update(
        last_seen=now - datetime.timedelta(seconds=settings.LEASE_SECONDS + 60))
    task = enqueue("busy")
    engine.claim(worker_id="fresh", limit=1)
    found = {w["id"]: w["state"] for w in selectors.workers()}
    assert found == {"fresh": "online", "late": "late", "lost": "lost"}
    response = admin_client.get(URL)
    html = response.content.decode()
    # The page's script ages workers by the same thresholds as the server.
    thresholds = states.liveness_thresholds(settings)
    assert response.context["snapshot"]["liveness"] == thresholds
    assert (f'data-online="{thresholds["online"]}" data-lost="{thresholds["lost"]}"') in html
    fresh = re.search(r'<tr data-worker="fresh".*?</tr>', html, re.S).group()
    assert "task-worker-online" in fresh and "all queues" in fresh
    assert f'href="/admin/tasks/task/{task.pk}/change/">#{task.pk}</a>' in fresh
    assert 'href="/admin/tasks/task/?worker=fresh"' in fresh
    assert "task-worker-lost" in re.search(r'<tr data-worker="lost".*?</tr>', html,
                                           re.S).group()


def test_charts_count_and_time_the_range_from_finished_tasks(admin_client):
    now = timezone.now()
    tasks = [enqueue(f"t{i}", max_retries=0) for i in range(4)]
    claimed = {c.id: c for c in engine.claim(worker_id=WORKER, limit=4)}
    engine.complete(worker_id=WORKER, outcomes=[outcome(claimed[t.pk]) for t in tasks[:3]])
    engine.fail(worker_id=WORKER, outcomes=[outcome(claimed[tasks[3].pk], error="x")])
    # Known times: waited 10 s, ran 4 s (and 2 s for the failed one).
    for i, task in enumerate(tasks):
        start = now - datetime.timedelta(minutes=3)
        Task.objects.filter(pk=task.pk).update(
            run_at=start - datetime.timedelta(seconds=10), started_at=start,
            finished_at=start + datetime.timedelta(seconds=2 if i == 3 else 4))
    points = charts.series(charts.RANGES["15m"])
    assert len(points) == 30
    assert sum(p["succeeded"] for p in points) == 3 and sum(p["failed"] for p in points) == 1
    busy = [p for p in points if p["succeeded"]]
    assert len(busy) == 1
    assert busy[0]["run_p50"] == pytest.approx(4.0)
    waits = [p["wait_p95"] for p in points if p["wait_p95"] is not None]
    assert waits and all(w == pytest.approx(10) for w in waits)  # by when each finished
    for key in charts.RANGES:
        html = admin_client.get(URL, {"range": key}).content.decode()
        for chart in ("throughput", "failures", "wait", "run"):
            assert f'id="chart-{chart}-svg"' in html
        assert f'<strong class="task-range-chosen">{charts.RANGES[key].label}</strong>' in html
    fragment = admin_client.get(reverse("tasks-dashboard-charts"), {"range": "24h"})
    assert fragment.status_code == 200
    assert fragment.content.decode().lstrip().startswith("<div class=\"task-charts\"")
    assert admin_client.get(URL, {"range": "nonsense"}).status_code == 200
