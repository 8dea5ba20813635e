"""Small things every page shares: the favicon, the admin index's task counts, one way of
saying "all queues"."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tasks import engine
from tests.integration.test_admin import enqueue

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("urlconf", ["taskservice.urls", "tasks.urls"])
def test_favicon_is_served_to_anyone(client, settings, urlconf):
    settings.ROOT_URLCONF = urlconf  # tasks.urls alone: what a host project includes
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert "max-age=86400" in response["Cache-Control"]


def test_admin_index_shows_live_task_counts(admin_client):
    enqueue("a"), enqueue("b"), enqueue("c")
    done = enqueue("d")
    engine.cancel(done.pk)
    html = admin_client.get(reverse("admin:index")).content.decode()
    counts = dict(re.findall(r'id="count-(\w+)" data-status="\w+">(\d+)<', html))
    assert counts == {"waiting": "0", "queued": "3", "running": "0", "retrying": "0",
                      "succeeded": "0", "failed": "0", "cancelled": "1"}
    assert "tasks/index_live.js" in html and 'id="live-status"' in html
    assert reverse("admin:tasks_taskhistory_changelist") in html


def test_the_dashboard_shows_each_queue_with_its_pause_limits_and_controls(client):
    from tasks.models import Queue
    from tests.factories import UserFactory
    from tests.support import users
    from tests.support.users import grant

    enqueue("a", queue="mail")
    engine.pause_queue("mail", actor="test")
    engine.set_queue_limits("quiet", actor="test", concurrency_limit=2, rate_limit=10)
    viewer = grant(UserFactory(username="viewer", is_staff=True), *users.OPERATOR)
    client.force_login(viewer)
    html = client.get(reverse("tasks-dashboard")).content.decode()
    mail = re.search(r'<td class="task-queue-controls" data-queue="mail">(.*?)</td>', html).group(1)
    assert "paused" in mail and "<form" not in mail  # no change_queue: no buttons
    quiet = re.search(r'<td class="task-queue-controls" data-queue="quiet">(.*?)</td>',
                      html).group(1)  # no tasks, but limited
    assert "at most 2 running, 10/s" in quiet
    grant(viewer, *users.QUEUES)
    client.force_login(type(viewer).objects.get(pk=viewer.pk))
    html = client.get(reverse("tasks-dashboard")).content.decode()
    mail = re.search(r'<td class="task-queue-controls" data-queue="mail">(.*?)</td>', html).group(1)
    assert re.search(r'class="task-queue-pause" hidden', mail)
    assert 'class="task-queue-resume">' in mail
    # Resume from the dashboard's form returns to the dashboard.
    dashboard = reverse("tasks-dashboard")
    response = client.post(reverse("admin:tasks_queue_steer", args=["mail", "resume"]),
                           {"next": dashboard})
    assert response.status_code == 302 and response["Location"] == dashboard
    assert Queue.objects.get(name="mail").paused is False
    # An address elsewhere is not followed.
    response = client.post(reverse("admin:tasks_queue_steer", args=["mail", "pause"]),
                           {"next": "https://evil.example/"})
    assert response["Location"] == reverse("admin:tasks_queue_changelist")


def test_the_dashboard_shows_the_progress_of_running_tasks(admin_client):
    task = enqueue("long one")
    (claimed,) = engine.claim(worker_id="host:1:abc", limit=1)
    engine.register_worker(worker_id="host:1:abc", hostname="host", pid=1, queues=[],
                           concurrency=1)
    engine.progress(worker_id="host:1:abc", task_id=task.pk, attempt=claimed.attempt,
                    done=2, total=5, message="two of five")
    html = admin_client.get(reverse("tasks-dashboard")).content.decode()
    assert re.search(rf'#{task.pk}</a> <span class="task-progress">40%</span>', html)
