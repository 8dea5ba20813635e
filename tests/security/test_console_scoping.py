"""The operator's console tells a user without tasks.view_all_tasks only about their own
tasks: the dashboard (counts, queues, failing rows, workers' running tasks), its charts,
act-on-filter and the workers page. Workers are listed; what they run of others' is not."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from django.urls import reverse

from tasks import engine
from tasks.models import Status, Task
from tests.integration.conftest import outcome
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db

SHARED = "shared-host:7:w"  # one worker runs a task of each
DASHBOARD = reverse("tasks-dashboard")


@dataclass
class Owners:
    alice: object
    mallory: object
    a_run: Task
    a_queued: Task
    m_run: Task
    m_queued: Task
    m_failed: Task


def two_owners(django_user_model) -> Owners:
    """Alice (staff, her own tasks only) and Mallory: a running task each on the shared
    worker, a queued task each (Mallory's in a queue of her own), and Mallory's failure and
    success in the last hour."""
    alice = grant(django_user_model.objects.create_user("alice", is_staff=True),
                  *users.CLIENT, "view_worker")
    mallory = grant(django_user_model.objects.create_user("mallory"), *users.CLIENT)
    engine.register_worker(worker_id=SHARED, hostname="shared-host", pid=7, queues=[],
                           concurrency=4)

    def run_one(name: str, owner, **spec) -> tuple[Task, engine.ClaimedTask]:
        task = engine.enqueue(name=name, type="noop", owner=owner, **spec)
        (claimed,) = engine.claim(worker_id=SHARED, limit=1)
        assert claimed.id == task.pk
        return task, claimed

    m_failed, claimed = run_one("mallory's failure", mallory, max_retries=0)
    engine.fail(worker_id=SHARED, outcomes=[outcome(
        claimed, error="secret", error_class="builtins.MalloryError",
        error_message="mallory's secret", traceback="Traceback: mallory's secret")])
    _, claimed = run_one("mallory's success", mallory)
    engine.complete(worker_id=SHARED, outcomes=[outcome(claimed)])
    m_run, _ = run_one("mallory's run", mallory)
    a_run, _ = run_one("alice's run", alice)
    return Owners(
        alice=alice, mallory=mallory, a_run=a_run, m_run=m_run, m_failed=m_failed,
        a_queued=engine.enqueue(name="alice's queued", type="noop", owner=alice),
        m_queued=engine.enqueue(name="mallory's queued", type="noop", owner=mallory,
                                queue="mallory-q"))


@pytest.fixture
def owners(django_user_model) -> Owners:
    return two_owners(django_user_model)


def snapshot_of(response) -> dict:
    html = response.content.decode()
    return json.loads(re.search(r'<script id="dashboard-data" type="application/json">'
                                r"(.*?)</script>", html, re.S).group(1))["snapshot"]


def section(html: str, tbody_id: str) -> str:
    start = html.index(f'id="{tbody_id}"')
    return html[start:html.index("</tbody>", start)]


def test_the_dashboard_shows_workers_but_only_her_tasks_on_them(client, admin_client, owners):
    client.force_login(owners.alice)
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    snap, html = snapshot_of(response), response.content.decode()
    (worker,) = snap["workers"]
    assert worker["id"] == SHARED and worker["state"] == "online"
    assert (worker["running"], worker["running_ids"]) == (1, [owners.a_run.pk])
    assert snap["own_tasks_only"] is True
    assert snap["counts"] == {**{s: 0 for s in Status.values}, "running": 1, "queued": 1}
    workers = section(html, "workers-online")
    assert f"#{owners.a_run.pk}</a>" in workers and f"#{owners.m_run.pk}<" not in workers
    assert "your tasks running" in html
    # The same page for an operator: both runs, so the data above is not empty by chance.
    (seen_all,) = snapshot_of(admin_client.get(DASHBOARD))["workers"]
    assert seen_all["running_ids"] == [owners.m_run.pk, owners.a_run.pk]


def test_failing_rows_and_the_queue_table_are_hers(client, admin_client, owners):
    client.force_login(owners.alice)
    response = client.get(DASHBOARD)
    snap, html = snapshot_of(response), response.content.decode()
    assert snap["failing"] == []
    assert "MalloryError" not in html and "mallory&#x27;s secret" not in html
    assert "No failures in the last hour." in section(html, "failing")
    assert [(q["queue"], q["queued"], q["running"]) for q in snap["queues"]] == [
        ("default", 1, 1)]
    assert "mallory-q" not in section(html, "queue-depth")
    operator = snapshot_of(admin_client.get(DASHBOARD))
    assert [f["error_class"] for f in operator["failing"]] == ["builtins.MalloryError"]
    assert [(q["queue"], q["queued"], q["running"]) for q in operator["queues"]] == [
        ("default", 1, 2), ("mallory-q", 1, 0)]


def test_the_charts_count_only_her_tasks(client, admin_client, owners):
    client.force_login(owners.alice)
    url = reverse("tasks-dashboard-charts")
    mine = client.get(url, {"range": "1h"}).content.decode()
    everyone = admin_client.get(url, {"range": "1h"}).content.decode()
    summary = r'<figure class="task-chart-box" id="chart-{}">\s*<figcaption>\w+ ' \
              r'<span class="task-muted">(\d+) in 1 h'
    for chart, theirs in (("throughput", 1), ("failures", 1)):
        assert re.search(summary.format(chart), mine).group(1) == "0"
        assert re.search(summary.format(chart), everyone).group(1) == str(theirs)
    assert "<rect" not in mine and "<rect" in everyone


def test_act_on_filter_previews_and_changes_only_her_tasks(client, owners):
    client.force_login(owners.alice)
    url = reverse("admin:tasks_task_act_on_filter", args=["cancel"])
    preview = client.get(url).content.decode()
    assert re.search(r'id="act-will"><strong>2</strong> matching tasks will be cancelled',
                     preview)
    assert "mallory" not in preview
    response = client.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    a_run, a_queued, m_run, m_queued = (Task.objects.get(pk=t.pk) for t in (
        owners.a_run, owners.a_queued, owners.m_run, owners.m_queued))
    assert a_queued.status == Status.CANCELLED and a_run.cancel_requested_at is not None
    assert m_queued.status == Status.QUEUED and m_run.cancel_requested_at is None
    retry = reverse("admin:tasks_task_act_on_filter", args=["retry"])
    assert "mallory" not in client.get(retry).content.decode()
    client.post(retry, {"post": "yes"})
    assert Task.objects.get(pk=owners.m_failed.pk).status == Status.FAILED


def test_the_workers_page_counts_only_her_running_tasks(client, owners):
    client.force_login(owners.alice)
    html = client.get(reverse("admin:tasks_worker_changelist")).content.decode()
    row = re.search(r'<td class="field-running_tasks">(.*?)</td>', html, re.S).group(1)
    assert row.startswith("1 / 4 ")
    assert f"#{owners.a_run.pk}</a>" in row and f"#{owners.m_run.pk}<" not in row
