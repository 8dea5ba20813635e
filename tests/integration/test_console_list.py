"""The task list as an operator uses it: sorting by every column they reach for, payload
search through the GIN index, the worker filter, and the one date format."""

from __future__ import annotations

import datetime
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tasks import engine
from tasks.models import Schedule
from tests.integration.test_admin import CHANGELIST, enqueue, row_ids, run_to

pytestmark = pytest.mark.django_db


def column_index(response, name: str) -> int:
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', response.content.decode())
    return headers.index(name) + 1  # Django's ?o= counts from 1


@pytest.mark.parametrize("column,key", [
    ("priority_short", lambda t: (t.priority, t.pk)),
    ("queue", lambda t: (t.queue, t.pk)),
    ("status_display", lambda t: (t.status, t.pk)),
])
def test_sorts_by_column_both_ways(admin_client, column, key):
    tasks = [enqueue("a", priority=3, queue="mail"), enqueue("b", priority=9, queue="alpha"),
             enqueue("c", priority=1, queue="zeta")]
    run_to("succeeded", tasks[1])
    tasks = [type(t).objects.get(pk=t.pk) for t in tasks]
    n = column_index(admin_client.get(CHANGELIST), column)
    ascending = row_ids(admin_client.get(CHANGELIST, {"o": f"{n}"}))
    descending = row_ids(admin_client.get(CHANGELIST, {"o": f"-{n}"}))
    first_key = lambda t: key(t)[0]  # noqa: E731 - ties break by id, either way
    assert [first_key(t) for t in sorted(tasks, key=lambda t: ascending.index(t.pk))] == \
        sorted(first_key(t) for t in tasks)
    assert [first_key(t) for t in sorted(tasks, key=lambda t: descending.index(t.pk))] == \
        sorted((first_key(t) for t in tasks), reverse=True)


def test_sorts_by_started_and_duration_latest_and_longest_first(admin_client):
    never = enqueue("never started", run_at=timezone.now() + datetime.timedelta(hours=1))
    slow, fast = enqueue("slow"), enqueue("fast")
    run_to("succeeded", slow, fast)
    from tasks.models import Task
    now = timezone.now()
    Task.objects.filter(pk=slow.pk).update(started_at=now - datetime.timedelta(minutes=5),
                                           finished_at=now)
    Task.objects.filter(pk=fast.pk).update(started_at=now - datetime.timedelta(seconds=2),
                                           finished_at=now)
    page = admin_client.get(CHANGELIST)
    started, duration = column_index(page, "started"), column_index(page, "run_time")
    assert row_ids(admin_client.get(CHANGELIST, {"o": f"-{started}"})) == [fast.pk, slow.pk,
                                                                           never.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"o": f"{started}"})) == [never.pk, slow.pk,
                                                                          fast.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"o": f"-{duration}"})) == [slow.pk, fast.pk,
                                                                            never.pk]


def test_payload_search_uses_the_gin_index(admin_client):
    billing = enqueue("invoice", payload={"to": "ann@example.com", "tags": ["billing"],
                                          "user": {"id": 7}})
    other = enqueue("digest", payload={"to": "bob@example.com", "user": {"id": 8}})
    assert row_ids(admin_client.get(CHANGELIST, {"q": "to=ann@example.com"})) == [billing.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": "user.id=8"})) == [other.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": "tags=billing"})) == [billing.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": '{"user": {"id": 7}}'})) == [billing.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": "to=nobody@example.com"})) == []
    # Not a payload search: names and types, as before.
    assert row_ids(admin_client.get(CHANGELIST, {"q": "digest"})) == [other.pk]
    # A bad JSON object is text, not a 500.
    assert admin_client.get(CHANGELIST, {"q": '{"to": '}).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST, {"q": "to=ann@example.com"})
    search = next(q["sql"] for q in queries.captured_queries
                  if '"payload" @>' in q["sql"] and "LIMIT" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + search)
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "idx_payload_path" in plan


def test_worker_filter_lists_what_a_worker_runs(admin_client):
    mine, theirs, waiting = enqueue("mine"), enqueue("theirs"), enqueue("waiting")
    engine.register_worker(worker_id="w-1", hostname="h", pid=1, queues=[], concurrency=1)
    run_to("running", mine, theirs, worker="w-1")
    assert set(row_ids(admin_client.get(CHANGELIST, {"worker": "w-1"}))) == {mine.pk, theirs.pk}
    assert waiting.pk not in row_ids(admin_client.get(CHANGELIST, {"worker": "w-1"}))
    assert row_ids(admin_client.get(CHANGELIST, {"worker": "gone"})) == []


def test_times_are_one_format_with_iso_on_hover(admin_client):
    task = enqueue("timed")
    html = admin_client.get(CHANGELIST).content.decode()
    iso = task.created_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    assert f'<time class="task-time" datetime="{iso}" title="{iso}" data-compact>' in html
    assert "tasks/localtime.js" in html


TIME = re.compile(r'<time class="task-time" datetime="([^"]+)" title="\1"[^>]*>[^<]+</time>')
RAW_DATE = re.compile(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d")


def times_only(admin_client, url: str) -> list[str]:
    """The ISO times of a page's content, after checking every date there is one of them
    (a <time> with its ISO form on hover) and localtime.js is loaded."""
    html = admin_client.get(url).content.decode()
    assert "tasks/localtime.js" in html
    content = html[html.index('<div id="content"'):html.index("<!-- END Content -->")]
    found = TIME.findall(content)
    assert not RAW_DATE.search(TIME.sub("", content)), RAW_DATE.search(TIME.sub("", content))
    return found


def test_schedule_and_workflow_pages_show_times_in_the_one_format(admin_client):
    schedule = engine.schedules.create(name="often", type="simulate", interval_seconds=60)
    engine.schedules.run_now(schedule.pk)
    # The scheduler's tick, as the maintainer records it (fixture: a tick a minute ago).
    Schedule.objects.filter(pk=schedule.pk).update(
        last_tick_at=timezone.now() - datetime.timedelta(minutes=1))
    workflow, _ = engine.enqueue_workflow([{"name": "a", "type": "noop"}], name="flow")
    listed = times_only(admin_client, reverse("admin:tasks_schedule_changelist"))
    assert len(listed) == 3 and all(t.endswith("Z") for t in listed)  # the next runs
    page = times_only(admin_client, reverse("admin:tasks_schedule_change", args=[schedule.pk]))
    assert len(page) == 3 + 3  # next runs, last tick, created, updated
    assert len(times_only(admin_client, reverse("admin:tasks_workflow_changelist"))) == 1
    iso = workflow.created_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    assert times_only(admin_client, reverse("admin:tasks_workflow_change",
                                            args=[workflow.pk])) == [iso]
