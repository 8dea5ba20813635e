"""The admin's Queues page: depth and controls per queue; Pause/Resume and limits."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from tasks import authz, engine
from tasks.models import AuditEntry, Queue
from tests.factories import UserFactory
from tests.support.users import grant

pytestmark = pytest.mark.django_db

PAGE = reverse("admin:tasks_queue_changelist")


def steer(name: str, verb: str) -> str:
    return reverse("admin:tasks_queue_steer", args=[name, verb])


def test_the_page_lists_queues_with_their_buttons(admin_client):
    engine.enqueue(name="a", type="count", queue="mail")
    engine.pause_queue("api")
    html = admin_client.get(PAGE).content.decode()
    assert 'data-queue="mail"' in html and 'data-queue="api"' in html
    assert 'value="Pause"' in html and 'value="Resume"' in html


def test_pause_resume_and_limits_through_the_page(admin_client):
    engine.enqueue(name="a", type="count", queue="mail")
    response = admin_client.post(steer("mail", "pause"))
    assert response.status_code == 302 and Queue.objects.get(name="mail").paused
    admin_client.post(steer("mail", "limits"), {"concurrency_limit": "2", "rate_limit": ""})
    q = Queue.objects.get(name="mail")
    assert (q.concurrency_limit, q.rate_limit) == (2, None)
    admin_client.post(steer("mail", "resume"))
    assert not Queue.objects.get(name="mail").paused
    assert AuditEntry.objects.filter(actor="admin in the admin").count() == 3


def test_a_bad_limit_is_an_error_message_and_changes_nothing(admin_client):
    response = admin_client.post(steer("mail", "limits"),
                                 {"concurrency_limit": "zero", "rate_limit": "-1"})
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "concurrency_limit" in text and "rate_limit" in text
    assert not Queue.objects.exists()


def test_a_viewer_sees_the_page_without_buttons_and_cannot_post(client):
    viewer = grant(UserFactory(username="viewer", is_staff=True), authz.VIEW_QUEUE)
    client.force_login(viewer)
    engine.enqueue(name="a", type="count", queue="mail")
    html = client.get(PAGE).content.decode()
    assert 'data-queue="mail"' in html and 'value="Pause"' not in html
    assert client.post(steer("mail", "pause")).status_code == 403
    assert client.get(steer("mail", "pause")).status_code == 405
    assert not Queue.objects.exists()
