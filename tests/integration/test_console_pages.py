"""Small things every page shares: the favicon, the admin index's task counts, one way of
saying "all queues"."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tasks import engine
from tests.integration.test_admin import enqueue

pytestmark = pytest.mark.django_db


def test_favicon_is_served_to_anyone(client):
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
