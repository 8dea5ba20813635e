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
from tasks.admin import history
from tasks.models import Task, TaskHistory
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


def window_links(response) -> dict[str, str]:
    html = response.content.decode()
    if 'id="history-window"' not in html:
        return {}
    box = html[html.index('id="history-window"'):html.index("</details>",
                                                            html.index('id="history-window"'))]
    links = dict((text, href.replace("&amp;", "&"))
                 for href, text in re.findall(r'<a href="([^"]+)">([^<]+)</a>', box))
    links["shown"] = re.search(r'<li class="selected">([^<]+)</li>', box).group(1)
    return links


def test_a_filter_no_index_serves_reads_a_window_of_rows_with_older_a_link_away(
        admin_client, monkeypatch):
    monkeypatch.setattr(history, "SCAN_ROWS", 4)
    old = enqueue("old")
    run_to("running", old, worker="host-x:1:z")  # its task_started: an old row of host-x
    for i in range(6):
        enqueue(f"filler {i}")  # six newer rows of no worker
    newest = TaskHistory.objects.order_by("-id").values_list("id", flat=True).first()
    with CaptureQueriesContext(connection) as queries:
        first = admin_client.get(URL, {"worker": "host-x:1:z"})
    assert row_tasks(first) == []  # not among the newest 4 rows
    listed = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]
              and '"task_history"."worker_id" =' in q["sql"]]
    assert listed and all(f'"task_history"."id" > {newest - 4}' in q for q in listed)
    links = window_links(first)
    assert links["shown"].startswith(f"ids #{newest - 3:,} to #{newest:,} (at most 4 rows")
    older = admin_client.get(URL + links["older rows"])
    assert row_tasks(older) == [old.pk]
    assert "newest" in window_links(older)
    # Indexed paths read no window: everything, one kind of event, one task.
    assert window_links(admin_client.get(URL)) == {}
    assert window_links(admin_client.get(URL, {"event_type__exact": "task_started"})) == {}
    assert row_tasks(admin_client.get(URL, {"q": str(old.pk)})) == [old.pk, old.pk]
    assert admin_client.get(URL, {"before": "x"}).status_code == 302  # ?e=1: not a 500


def test_a_scoped_users_list_is_the_history_of_their_latest_tasks(client, django_user_model,
                                                                  monkeypatch):
    monkeypatch.setattr(history, "OWN_TASKS", 2)
    user = django_user_model.objects.create_user("own", password="pw-123456-x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_task"))
    mine = [engine.enqueue(name=f"mine {i}", type="noop", owner=user) for i in range(3)]
    enqueue("theirs")
    engine.cancel(mine[0].pk)  # the oldest task's newest row: newer than the others' rows
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        first = client.get(URL)
    assert row_tasks(first) == [mine[2].pk, mine[1].pk]
    assert any('"task_history"."task_id" IN (' in q["sql"] for q in queries.captured_queries)
    links = window_links(first)
    assert links["shown"] == "the history of your 2 latest tasks"
    older = client.get(URL + links["older tasks"])
    assert row_tasks(older) == [mine[0].pk, mine[0].pk]
    assert window_links(older)["shown"] == "the history of your 1 next older tasks"
    # One task searched: its own rows, however old, and never another user's.
    assert row_tasks(client.get(URL, {"q": str(mine[0].pk)})) == [mine[0].pk, mine[0].pk]
    theirs = Task.objects.get(name="theirs")
    assert row_tasks(client.get(URL, {"q": str(theirs.pk)})) == []
    assert row_tasks(client.get(URL, {"tasks_before": str(theirs.pk)})) == []
