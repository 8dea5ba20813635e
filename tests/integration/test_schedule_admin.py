"""The admin's Schedules page: next runs, last task and status, actions, validated forms."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasks import engine
from tasks.admin.display import timestamp
from tasks.models import AuditEntry, Schedule, Task

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tasks_schedule_changelist")
ADD = reverse("admin:tasks_schedule_add")
FORM = {"name": "nightly", "type": "simulate", "payload": '{"duration": 0.1}',
        "queue": "default", "priority": "0", "max_retries": "", "timeout_seconds": "",
        "enabled": "on", "cron": "0 3 * * *", "timezone": "UTC", "interval_seconds": "",
        "missed_ticks": "catch_up_once"}


def test_the_list_shows_next_runs_and_the_last_task_with_its_status(admin_client):
    s = engine.schedules.create(name="often", type="simulate", interval_seconds=60)
    task = engine.schedules.run_now(s.pk)
    html = admin_client.get(CHANGELIST).content.decode()
    assert "every 60s" in html
    runs = html[html.index('class="field-next_runs_display"'):]
    runs = runs[:runs.index("</td>")]
    assert runs.count('<time class="task-time"') == 3  # three next runs, in the one format
    assert f"#{task.pk}</a>" in html and "task-status-queued" in html


def test_the_list_reads_the_last_tasks_of_a_page_of_20_without_a_query_per_row(admin_client):
    def page_queries() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as queries:
            html = admin_client.get(CHANGELIST).content.decode()
        return len(queries), html

    engine.schedules.run_now(engine.schedules.create(name="s00", type="simulate",
                                                     interval_seconds=60).pk)
    admin_client.get(CHANGELIST)  # the session and content types are read once
    one, _ = page_queries()
    made = [engine.schedules.create(name=f"s{i:02}", type="simulate", interval_seconds=60)
            for i in range(1, 20)]
    tasks = [engine.schedules.run_now(s.pk) for s in made]
    engine.cancel(tasks[0].pk)
    Task.objects.filter(pk=tasks[1].pk).delete()
    twenty, html = page_queries()
    assert twenty == one
    assert html.count('class="task-status task-status-queued"') == 18
    assert "task-status-cancelled" in html and f"#{tasks[1].pk} (deleted)" in html


def test_add_through_the_form_is_validated_and_audited(admin_client):
    bad = admin_client.post(ADD, {**FORM, "cron": "every night",
                                  "payload": '{"duration": "long"}'})
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "cron" in errors and "payload" in errors
    assert not Schedule.objects.exists()
    assert admin_client.post(ADD, FORM).status_code == 302
    s = Schedule.objects.get()
    assert s.next_run_at is not None and s.owner is not None
    assert AuditEntry.objects.get().actor == "admin in the admin"


def test_enable_disable_and_run_now_actions(admin_client):
    s = engine.schedules.create(name="often", type="simulate", interval_seconds=60)
    post = {"_selected_action": [s.pk]}
    admin_client.post(CHANGELIST, {**post, "action": "disable_selected"})
    assert not Schedule.objects.get(pk=s.pk).enabled
    admin_client.post(CHANGELIST, {**post, "action": "enable_selected"})
    assert Schedule.objects.get(pk=s.pk).next_run_at is not None
    admin_client.post(CHANGELIST, {**post, "action": "run_selected_now"})
    assert Task.objects.get().origin == "schedule"
    assert [a for (a,) in AuditEntry.objects.values_list("action")][-3:] == [
        "schedule_paused", "schedule_resumed", "schedule_run_now"]


def test_a_schedule_whose_type_is_no_longer_registered_is_listed_and_not_run(
        admin_client, plugins_here):
    s = engine.schedules.create(name="retired", type="boom", interval_seconds=60)
    plugins_here(without=["boom"])
    assert "retired" in admin_client.get(CHANGELIST).content.decode()
    change = reverse("admin:tasks_schedule_change", args=[s.pk])
    assert admin_client.get(change).status_code == 200
    saved = admin_client.post(change, {**FORM, "name": "retired", "type": "boom"})
    assert "Unknown task type 'boom'" in saved.context["adminform"].form.errors["type"][0]
    run = admin_client.post(CHANGELIST, {"_selected_action": [s.pk],
                                         "action": "run_selected_now"}, follow=True)
    shown = [str(m) for m in run.context["messages"]]
    assert any(m.startswith("retired: ") and "Unknown task type 'boom'" in m for m in shown)
    assert not Task.objects.exists()


def test_the_change_page_shows_its_dates_in_the_one_format(admin_client):
    s = engine.schedules.create(name="often", type="simulate", interval_seconds=60)
    engine.schedules.fire_due(now=s.next_run_at)
    s.refresh_from_db()
    html = admin_client.get(reverse("admin:tasks_schedule_change", args=[s.pk])).content.decode()
    shown = dict(re.findall(r'field-\w+_when">.*?<label>([^<]+):</label>.*?'
                            r'<div class="readonly">(.*?)</div>', html, re.S))
    assert shown == {"Last tick": timestamp(s.last_tick_at), "Created": timestamp(s.created_at),
                     "Updated": timestamp(s.updated_at)}
    assert all('<time class="task-time"' in value for value in shown.values())
