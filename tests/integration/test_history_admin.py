"""The read-only list of history events across tasks: filters, search by task, owner
scoping, no COUNT(*), nothing editable."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasks import engine
from tasks.models import TaskHistory
from tests.integration.test_admin import enqueue, run_to

pytestmark = pytest.mark.django_db

URL = reverse("admin:tasks_taskhistory_changelist")


def row_tasks(response) -> list[int]:
    return [int(i) for i in re.findall(rb'<td class="field-task_link"><a href="[^"]+">#(\d+)<',
                                       response.content)]


def test_lists_every_tasks_events_newest_first_with_filters(admin_client):
    a, b = enqueue("a"), enqueue("b")
    engine.cancel(a.pk, reason="cancelled by ann in the admin")
    run_to("running", b, worker="host-x:1:z")
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert row_tasks(response) == [b.pk, a.pk, b.pk, a.pk]  # started, cancelled, 2 queued
    html = response.content.decode()
    assert "cancelled by ann in the admin" in html
    assert row_tasks(admin_client.get(URL, {"event_type__exact": "task_cancelled"})) == [a.pk]
    assert row_tasks(admin_client.get(URL, {"worker": "host-x:1:z"})) == [b.pk]
    assert row_tasks(admin_client.get(URL, {"q": str(a.pk)})) == [a.pk, a.pk]
    assert row_tasks(admin_client.get(URL, {"q": "host-x:1:z"})) == [b.pk]
    assert "Add task history" not in html and 'name="_selected_action"' not in html


def test_no_full_count_and_no_change_or_delete(admin_client):
    enqueue("x")
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(URL)
    assert not any("COUNT(" in q["sql"].upper() and "LIMIT" not in q["sql"].upper()
                   for q in queries.captured_queries)
    row = TaskHistory.objects.first()
    change = admin_client.get(reverse("admin:tasks_taskhistory_change", args=[row.pk]))
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert admin_client.post(reverse("admin:tasks_taskhistory_delete", args=[row.pk])
                             ).status_code == 403


def test_a_user_without_view_all_sees_only_their_tasks_history(client, django_user_model):
    user = django_user_model.objects.create_user("own", password="pw-123456-x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_task"))
    mine = engine.enqueue(name="mine", type="noop", owner=user)
    enqueue("theirs")
    client.force_login(user)
    assert row_tasks(client.get(URL)) == [mine.pk]
