"""The admin as the operator's console, against real PostgreSQL through the test client."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tasks import engine
from tasks.admin.paging import EstimatedCountPaginator
from tasks.models import Status, Task, TaskHistory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tasks_task_changelist")
ADD = reverse("admin:tasks_task_add")


def change_url(task_id: int) -> str:
    return reverse("admin:tasks_task_change", args=[task_id])


def enqueue(name: str, **spec) -> Task:
    spec.setdefault("type", "noop")
    return engine.enqueue(name=name, **spec)


def run_to(status: str, *tasks: Task, worker: str = "test-worker") -> None:
    """Drive tasks through the queue to `status` (succeeded/failed/running)."""
    ids = {t.pk for t in tasks}
    claimed = engine.claim(worker_id=worker, limit=len(ids))
    assert {c.id for c in claimed} == ids, "the tasks to run must be the due ones"
    outcomes = [engine.Outcome(task_id=c.id, attempt=c.attempt, retry_count=c.retry_count,
                               error="it broke") for c in claimed]
    if status == "succeeded":
        engine.complete(worker_id=worker, outcomes=outcomes)
    elif status == "failed":
        engine.fail(worker_id=worker, outcomes=outcomes)


def messages_of(response) -> list[str]:
    """The messages shown after following the redirect (each request sees only its own)."""
    assert response.redirect_chain, "expected a redirect to a page showing messages"
    return [str(m) for m in get_messages(response.wsgi_request)]


def row_ids(response) -> list[int]:
    return [int(i) for i in re.findall(rb'class="task-status[^"]*" data-task-id="(\d+)"',
                                       response.content)]


def post_action(client, action: str, ids, **extra):
    data = {"action": action, "_selected_action": [str(i) for i in ids], **extra}
    return client.post(CHANGELIST, data, follow="post" in extra or action == "retry_selected")


# --- list, filters, search, paging ---------------------------------------------------


def test_list_shows_columns_and_coloured_badges(admin_client):
    a = enqueue("alpha", priority=5, queue="mail", max_retries=2)
    b = enqueue("beta")
    run_to("succeeded", a)
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', html)
    assert headers == ["id", "name_display", "type_display", "status_display", "priority_short",
                       "queue", "retries", "created", "started", "run_time"]
    assert f'class="task-status task-status-succeeded" data-task-id="{a.pk}"' in html
    assert f'class="task-status task-status-queued" data-task-id="{b.pk}"' in html
    assert f'data-task-retries="{a.pk}">0/2<' in html
    assert row_ids(response) == [b.pk, a.pk]  # newest first
    assert "tasks/task_live.js" in html and "tasks/live.js" in html


def test_filters_by_status_type_queue_and_created_date(admin_client):
    mail = enqueue("m1", queue="mail", type="simulate")
    enqueue("d1")
    done = enqueue("d2", priority=10)
    run_to("succeeded", done)

    assert row_ids(admin_client.get(CHANGELIST, {"status__exact": "succeeded"})) == [done.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"type": "simulate"})) == [mail.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"queue": "mail"})) == [mail.pk]
    sidebar = admin_client.get(CHANGELIST).content.decode()
    # The created-date filter's own links ("Today", "Past 7 days", ...), as a person clicks.
    links = re.findall(r'href="(\?created_at__gte=[^"]+)"', sidebar)
    assert len(links) >= 3
    today = admin_client.get(CHANGELIST + links[0].replace("&amp;", "&"))
    assert len(row_ids(today)) == 3

    # Queue choices come from the rows present; type choices include every plugin.
    assert "?queue=mail" in sidebar and "?queue=default" in sidebar
    assert "?type=send_email" in sidebar and "?type=boom" in sidebar


def test_search_by_name_id_and_type(admin_client):
    report = enqueue("nightly report", type="simulate")
    other = enqueue("cleanup")
    assert row_ids(admin_client.get(CHANGELIST, {"q": "nightly"})) == [report.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": str(other.pk)})) == [other.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": "simulate"})) == [report.pk]
    # A word is not an id: no error, just no id match.
    response = admin_client.get(CHANGELIST, {"q": "no-such-task"})
    assert response.status_code == 200 and row_ids(response) == []


def test_large_lists_use_the_planners_estimate_not_count(admin_client, monkeypatch):
    engine.enqueue_many([{"name": f"t{i}", "type": "noop"} for i in range(30)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks")
    monkeypatch.setattr(EstimatedCountPaginator, "ESTIMATE_THRESHOLD", 10)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
    assert "COUNT(" not in sql  # neither the page count nor the "full" count
    assert "reltuples" in " ".join(q["sql"] for q in queries.captured_queries)
    assert re.search(r"about \d+ tasks \(estimated\)", response.content.decode())

    # Filtered: EXPLAIN's estimate; few rows expected means an exact count.
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"status__exact": "failed"})
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "EXPLAIN (FORMAT JSON)" in sql and "COUNT(" in sql.upper()
    assert "0 tasks" in response.content.decode()


def test_small_lists_count_exactly(admin_client):
    enqueue("one")
    enqueue("two")
    html = admin_client.get(CHANGELIST).content.decode()
    assert "2 tasks" in html and "estimated" not in html


# --- bulk actions --------------------------------------------------------------------


def test_cancel_action_confirms_then_reports_cancelled_and_skipped(admin_client):
    done = [enqueue(f"done{i}", priority=10) for i in range(2)]
    run_to("succeeded", *done)
    waiting = [enqueue(f"wait{i}") for i in range(3)]
    ids = [t.pk for t in waiting + done]

    confirm = post_action(admin_client, "cancel_selected", ids)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "These 3 tasks will be cancelled" in page
    assert f"#{done[0].pk} done0</a>: already succeeded" in page
    assert Task.objects.filter(status=Status.CANCELLED).count() == 0  # nothing yet

    response = post_action(admin_client, "cancel_selected", ids, post="yes")
    a, b = sorted(t.pk for t in done)
    assert messages_of(response) == [
        f"3 cancelled, 2 skipped: already succeeded (#{a}, #{b})"]
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert all(statuses[t.pk] == Status.CANCELLED for t in waiting)
    assert all(statuses[t.pk] == Status.SUCCEEDED for t in done)
    assert TaskHistory.objects.filter(event_type="task_cancelled").count() == 3


def test_cancel_action_on_a_running_task_asks_its_worker_to_stop(admin_client):
    running = enqueue("busy")
    run_to("running", running)
    response = post_action(admin_client, "cancel_selected", [running.pk], post="yes")
    assert messages_of(response) == [
        "0 cancelled, 1 stopping (running: its worker will end it as cancelled)"]
    running.refresh_from_db()
    assert running.status == Status.RUNNING and running.cancel_requested_at is not None


def test_retry_action_requeues_failed_and_cancelled_and_skips_the_rest(admin_client):
    failed = enqueue("bad", max_retries=0, priority=10)
    run_to("failed", failed)
    cancelled = enqueue("stopped")
    engine.cancel(cancelled.pk)
    waiting = enqueue("waiting")

    response = post_action(admin_client, "retry_selected", [failed.pk, cancelled.pk, waiting.pk])
    assert messages_of(response) == [f"2 requeued, 1 skipped: already queued (#{waiting.pk})"]
    assert set(Task.objects.filter(status=Status.QUEUED).values_list("pk", flat=True)) == {
        failed.pk, cancelled.pk, waiting.pk}
    assert TaskHistory.objects.filter(event_type="task_requeued").count() == 2


def test_delete_action_confirms_and_deletes_only_finished_tasks(admin_client):
    done = enqueue("done", priority=10)
    run_to("succeeded", done)
    waiting = enqueue("waiting")

    confirm = post_action(admin_client, "delete_selected_finished", [done.pk, waiting.pk])
    page = confirm.content.decode()
    assert "These 1 task will be deleted" in page
    assert f"#{waiting.pk} waiting</a>: still queued: cancel it first" in page
    assert Task.objects.count() == 2

    response = post_action(admin_client, "delete_selected_finished",
                           [done.pk, waiting.pk], post="yes")
    assert messages_of(response) == [
        f"1 deleted, 1 skipped: still queued: cancel it first (#{waiting.pk})"]
    assert list(Task.objects.values_list("pk", flat=True)) == [waiting.pk]
    assert not TaskHistory.objects.filter(task_id=done.pk).exists()


def test_django_delete_selected_is_replaced(admin_client):
    html = admin_client.get(CHANGELIST, {"q": "x"}).content.decode()
    assert 'value="delete_selected"' not in html
    assert 'value="delete_selected_finished"' in html


# --- the task page -------------------------------------------------------------------


def test_task_page_is_read_only_with_pretty_payload_and_ordered_history(admin_client):
    task = enqueue("mail someone", type="send_email",
                   payload={"to": ["a@example.com"], "subject": "Hi", "body": "Hello <b>"},
                   priority=3)
    engine.cancel(task.pk, reason="not today")
    engine.retry(task.pk, reason="after all")
    response = admin_client.get(change_url(task.pk))
    assert response.status_code == 200
    html = response.content.decode()
    # Read-only: no inputs for engine fields, no Save button.
    assert 'name="status"' not in html and 'name="payload"' not in html
    assert 'name="_save"' not in html
    assert '<pre class="task-pre">{\n  &quot;body&quot;: &quot;Hello &lt;b&gt;&quot;' in html
    events = re.findall(r'class="field-event_type">\s*<p>([^<]+)</p>', html)
    assert events == ["Task Queued", "Task Cancelled", "Task Requeued"]
    assert "not today" in html and "after all" in html
    assert 'id="task-cancel-button"' in html and 'id="task-retry-button"' not in html


def test_task_page_shows_each_failed_runs_class_and_monospaced_traceback(admin_client):
    task = enqueue("fails", max_retries=0)
    [claimed] = engine.claim(worker_id="test-worker", limit=1)
    engine.fail(worker_id="test-worker", outcomes=[engine.Outcome(
        task_id=claimed.id, attempt=claimed.attempt, error="ValueError: bad <value>",
        error_class="builtins.ValueError", error_message="bad <value>",
        traceback='Traceback (most recent call last):\n  File "x.py"\nValueError: bad <value>')])
    html = admin_client.get(change_url(task.pk)).content.decode()
    assert re.search(r'class="field-error_class">\s*<p>builtins.ValueError</p>', html)
    assert ('<pre class="task-pre">Traceback (most recent call last):\n  File &quot;x.py&quot;'
            '\nValueError: bad &lt;value&gt;</pre>') in html


def test_cancel_and_retry_buttons_go_through_the_queue(admin_client):
    task = enqueue("steer me")
    response = admin_client.post(reverse("admin:tasks_task_cancel", args=[task.pk]),
                                 follow=True)
    assert response.redirect_chain == [(change_url(task.pk), 302)]
    assert messages_of(response) == [f"Task #{task.pk} cancelled."]
    task.refresh_from_db()
    assert task.status == Status.CANCELLED

    html = admin_client.get(change_url(task.pk)).content.decode()
    assert 'id="task-retry-button"' in html and 'id="task-cancel-button"' not in html

    response = admin_client.post(reverse("admin:tasks_task_retry", args=[task.pk]), follow=True)
    assert messages_of(response) == [f"Task #{task.pk} requeued."]
    task.refresh_from_db()
    assert task.status == Status.QUEUED

    # Not allowed now: a clear message, nothing changed.
    response = admin_client.post(reverse("admin:tasks_task_retry", args=[task.pk]), follow=True)
    assert messages_of(response) == [f"Cannot retry task {task.pk}: it is queued."]
    assert admin_client.get(reverse("admin:tasks_task_cancel", args=[task.pk])).status_code == 405
    assert admin_client.post(reverse("admin:tasks_task_cancel", args=[10**12])).status_code == 404


# --- the add form --------------------------------------------------------------------


def test_add_form_offers_registered_types_and_enqueues(admin_client):
    html = admin_client.get(ADD).content.decode()
    for type_name in ("send_email", "simulate", "noop", "count"):
        assert f'<option value="{type_name}">' in html

    response = admin_client.post(ADD, {
        "name": "by hand", "type": "simulate", "payload": '{"duration": 0.5}',
        "priority": "7", "queue": "default"})
    task = Task.objects.get()
    assert response.status_code == 302 and response["Location"] == change_url(task.pk)
    assert (task.name, task.type, task.payload, task.priority, task.status) == (
        "by hand", "simulate", {"duration": 0.5}, 7, Status.QUEUED)
    assert list(task.history.values_list("event_type", flat=True)) == ["task_queued"]


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"type": "send_email", "payload": '{"to": "not-an-address", "subject": "s", "body": ""}'},
     "payload", "to: Not a valid email address: not-an-address."),
    ({"type": "send_email", "payload": '{"to": "a@example.com"}'},
     "payload", "subject: Required: a non-empty string."),
    ({"type": "simulate", "payload": '{"duration": -1}'},
     "payload", "duration: Must be a non-negative number of seconds."),
    ({"type": "noop", "payload": "[1, 2]"}, "payload", "Must be a JSON object."),
    ({"type": "noop", "payload": "{not json"}, "payload", "Enter a valid JSON."),
    ({"type": "no_such_type", "payload": "{}"}, "type", "Select a valid choice."),
    ({"type": "noop", "payload": "{}", "priority": "5000"}, "priority",
     "Must be between -1000 and 1000, got 5000."),
    ({"type": "noop", "payload": "{}", "queue": "bad queue!"}, "queue",
     "Must be 1-100 characters of letters"),
])
def test_add_form_shows_invalid_payloads_as_field_errors(admin_client, data, field, message):
    form = {"name": "bad", "priority": "0", "queue": "default", **data}
    response = admin_client.post(ADD, form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert any(message in e for e in errors[field]), errors[field]
    assert message.split(":")[0] in response.content.decode()
    assert not Task.objects.exists()


# --- workers, dashboard, access ------------------------------------------------------


def test_workers_page_lists_workers_with_running_counts(admin_client):
    engine.register_worker(worker_id="host-a:42:x", hostname="host-a", pid=42,
                           queues=["mail", "default"], concurrency=4)
    engine.register_worker(worker_id="host-b:7:y", hostname="host-b", pid=7, queues=[],
                           concurrency=2)
    task = enqueue("busy")
    run_to("running", task, worker="host-a:42:x")
    response = admin_client.get(reverse("admin:tasks_worker_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    row_a = re.search(r"<tr>.*?host-a.*?</tr>", html, re.S).group(0)
    assert ">42<" in row_a and "mail, default" in row_a
    assert re.search(r'<td class="field-running_tasks">1 / 4 <a href="/admin/tasks/task/'
                     rf'{task.pk}/change/">#{task.pk}</a> <a href="/admin/tasks/task/\?worker='
                     r'host-a%3A42%3Ax" class="task-muted">all</a></td>', row_a)
    assert "task-worker-online" in row_a
    row_b = re.search(r"<tr>.*?host-b.*?</tr>", html, re.S).group(0)
    assert "<td class=\"field-queues_display\">all queues</td>" in row_b
    assert '<td class="field-running_tasks">0 / 2  <a' in row_b
    assert "Add worker" not in html


def test_dashboard_page_renders_the_snapshot_and_is_linked(admin_client):
    ok = enqueue("ok", priority=10)
    bad = enqueue("bad", max_retries=0, priority=9)
    run_to("succeeded", ok)
    run_to("failed", bad)
    enqueue("waiting", queue="mail", type="simulate")

    index = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("tasks-dashboard")}"' in index

    response = admin_client.get(reverse("tasks-dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="live-status"' in html and "tasks/dashboard.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    data = json.loads(re.search(r'<script id="dashboard-data" type="application/json">(.*?)'
                                r"</script>", html, re.S).group(1))
    snap = data["snapshot"]
    assert snap["counts"]["succeeded"] == 1 and snap["counts"]["failed"] == 1
    assert snap["counts"]["queued"] == 1
    assert [(q["queue"], q["queued"], q["due"]) for q in snap["queues"]] == [("mail", 1, 1)]
    assert [f["id"] for f in snap["failing"]] == [bad.pk]
    assert "it broke" in snap["failing"][0]["message"]
    assert len(snap["throughput"]) == 60
    assert sum(p["succeeded"] for p in snap["throughput"]) == 1
    assert sum(p["failed"] for p in snap["throughput"]) == 1
    assert data["events"][0]["event"] == "task_queued"


@pytest.mark.parametrize("url", [CHANGELIST, ADD, reverse("tasks-dashboard"),
                                 reverse("admin:tasks_worker_changelist")])
def test_non_staff_and_anonymous_are_sent_to_login(client, django_user_model, url):
    assert client.get(url).status_code == 302
    user = django_user_model.objects.create_user("visitor", password="pw-123456-x")
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_change_permission_cannot_steer(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-123456-x",
                                                 is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_task", "view_all_tasks"]))
    client.force_login(user)
    task = enqueue("look only")
    html = client.get(change_url(task.pk)).content.decode()
    assert 'id="task-cancel-button"' not in html
    assert 'value="cancel_selected"' not in client.get(CHANGELIST).content.decode()
    response = client.post(reverse("admin:tasks_task_cancel", args=[task.pk]), follow=True)
    assert messages_of(response) == ["You may not cancel tasks."]
    task.refresh_from_db()
    assert task.status == Status.QUEUED


def test_date_drill_down_links_come_from_the_index_and_filter(admin_client):
    task = enqueue("dated")
    created = timezone.localtime(task.created_at)
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(CHANGELIST).content.decode()
    assert not any("DISTINCT DATE_TRUNC" in q["sql"].upper() for q in queries.captured_queries)
    assert "Filter by created at" in html
    day_link = (f"?created_at__day={created.day}&amp;created_at__month={created.month}"
                f"&amp;created_at__year={created.year}")
    assert day_link in html  # one task: the drill-down starts at its month's days
    response = admin_client.get(CHANGELIST + day_link.replace("&amp;", "&"))
    assert row_ids(response) == [task.pk]
    other_year = admin_client.get(CHANGELIST, {"created_at__year": created.year - 1})
    assert row_ids(other_year) == []
    assert admin_client.get(CHANGELIST, {"created_at__year": "abc"}).status_code in (200, 302)


def test_a_number_searches_the_id_only(admin_client):
    by_id = enqueue("first")
    named = enqueue(f"report {by_id.pk}")
    assert row_ids(admin_client.get(CHANGELIST, {"q": f"#{by_id.pk}"})) == [by_id.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": str(by_id.pk)})) == [by_id.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": f"report {by_id.pk}"})) == [named.pk]
    assert row_ids(admin_client.get(CHANGELIST, {"q": "9" * 30})) == []


@pytest.mark.parametrize("action", ["cancel_selected", "retry_selected",
                                    "delete_selected_finished"])
def test_too_many_selected_is_refused_and_changes_nothing(admin_client, monkeypatch, action):
    monkeypatch.setattr("tasks.admin.actions.MAX_BULK", 2)
    tasks = [enqueue(f"t{i}") for i in range(3)]
    for task in tasks[:2]:
        engine.cancel(task.pk)
    before = dict(Task.objects.values_list("pk", "status"))
    response = admin_client.post(CHANGELIST, {
        "action": action, "_selected_action": [str(t.pk) for t in tasks],
        "select_across": "1", "index": "0"}, follow=True)
    assert messages_of(response) == [
        "Select at most 2 tasks at a time (filter the list first). Nothing was changed."]
    assert dict(Task.objects.values_list("pk", "status")) == before
