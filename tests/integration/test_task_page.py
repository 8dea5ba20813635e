"""The task page: the attempts timeline from history, a running task's clock and worker,
tracebacks with their indentation, the run-now button, and a running task's progress."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasks import engine, selectors
from tasks.admin import runs
from tests.integration.conftest import WORKER, make_due, outcome, sql
from tests.integration.test_admin import CHANGELIST, change_url, enqueue, row_ids

pytestmark = pytest.mark.django_db

TRACE = ('Traceback (most recent call last):\n  File "plugins/mail.py", line 3, in run\n'
         '    send()\nConnectionError: refused')


def test_timeline_lists_each_attempt_with_worker_outcome_and_traceback(admin_client):
    engine.register_worker(worker_id=WORKER, hostname="host-a", pid=101, queues=[],
                           concurrency=1)
    task = enqueue("flaky", max_retries=2)
    (first,) = engine.claim(worker_id=WORKER, limit=1)
    engine.fail(worker_id=WORKER, outcomes=[outcome(
        first, error="refused", error_class="builtins.ConnectionError",
        error_message="refused", traceback=TRACE)])
    make_due(task.pk)
    (second,) = engine.claim(worker_id="gone-worker", limit=1)
    engine.complete(worker_id="gone-worker", outcomes=[outcome(second)])

    html = admin_client.get(change_url(task.pk)).content.decode()
    timeline = html[html.index('id="task-timeline"'):html.index("</table>",
                                                                 html.index('id="task-timeline"'))]
    rows = re.findall(r"<tr class=\"task-run-([\w-]+)\">", timeline)
    assert rows == ["failed-retry-scheduled", "succeeded"]
    assert f'href="/admin/tasks/worker/{WORKER.replace(":", "_3A")}/change/"' in timeline
    assert 'title="no longer registered">gone-worker<' in timeline
    assert "<code>builtins.ConnectionError</code>: refused" in timeline
    # The traceback keeps its lines and indentation in a <pre>.
    assert '<pre class="task-pre task-traceback">Traceback (most recent call last):\n' \
           '  File &quot;plugins/mail.py&quot;, line 3, in run\n    send()' in timeline
    assert 'id="task-running"' not in html


def test_a_running_task_shows_elapsed_deadline_and_its_worker(admin_client):
    engine.register_worker(worker_id=WORKER, hostname="host-a", pid=101, queues=[],
                           concurrency=1)
    task = enqueue("long", timeout_seconds=600)
    engine.claim(worker_id=WORKER, limit=1)
    html = admin_client.get(change_url(task.pk)).content.decode()
    running = re.search(r'<p class="task-running" id="task-running">(.*?)</p>', html, re.S)
    assert running, "a running task shows its clock"
    text = running.group(1)
    assert re.search(r'Running for <strong id="task-elapsed">\d+\.\ds</strong>', text)
    assert 'id="task-worker-link"' in text and WORKER in text
    assert re.search(r"\(9m \d\ds left\)", text)
    assert "<tr class=\"task-run-running\">" in html


def test_a_running_task_shows_its_plugins_progress_in_one_place(admin_client):
    task = enqueue("long", timeout_seconds=600)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    html = admin_client.get(change_url(task.pk)).content.decode()
    assert (f'<span data-task-progress="{task.pk}"><span class="task-empty">—</span></span>'
            in html)
    engine.progress(worker_id=WORKER, task_id=task.pk, attempt=claimed.attempt, done=3,
                    total=10, message="three <files>")
    html = admin_client.get(change_url(task.pk)).content.decode()
    # The field task_live.js repaints, with the value escaped; no other progress markup.
    assert (f'<span data-task-progress="{task.pk}"><span class="task-progress">3 / 10 (30%)'
            "</span> three &lt;files&gt;</span>") in html
    assert html.count("data-task-progress=") == 1 and 'id="task-progress"' not in html


def rows_of(html: str, start: str, cell: str) -> int:
    """How many rows (cells of class `cell`) the table after `start` has."""
    body = html[html.index(start):]
    return body[:body.index("</table>")].count(cell)


def test_a_long_history_shows_its_newest_rows_and_links_the_rest(admin_client):
    task = enqueue("chatty")
    # Fixture rows: 250 more history rows for one task (as a person's run-now clicks).
    sql("INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, "
        "details, created_at) SELECT %s, 'queued', 'task_run_now', 0, '', 'click ' || g, "
        "now() + make_interval(secs => g) FROM generate_series(1, 250) g", [task.pk])
    html = admin_client.get(change_url(task.pk)).content.decode()
    assert rows_of(html, 'id="history-group"', '<td class="field-event_type">') == \
        runs.HISTORY_SHOWN
    assert "click 250" in html and "click 50<" not in html  # the newest, oldest first
    assert html.index("click 51<") < html.index("click 250")
    note = re.search(r'<p class="task-truncated" id="task-history-more">(.*?)</p>', html)
    assert "the newest 200 of 251 events" in note.group(1)
    assert f'href="/admin/tasks/taskhistory/?q={task.pk}">51 more' in note.group(1)


def test_a_task_retried_many_times_shows_its_latest_attempts(admin_client):
    task = enqueue("retried")
    # Fixture rows: 300 runs, each a start and a scheduled retry.
    sql("INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, "
        "details, created_at) SELECT %s, s.status, s.event, g, 'w', '', now() + "
        "make_interval(secs => "
        "2 * g + s.n) FROM generate_series(1, 300) g, (VALUES ('running', 'task_started', 0),"
        " ('retrying', 'retry_scheduled', 1)) s(status, event, n)", [task.pk])
    sql("UPDATE tasks SET attempts = 300 WHERE id = %s", [task.pk])
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(change_url(task.pk)).content.decode()
    timeline = html[html.index('id="task-timeline"'):]
    timeline = timeline[:timeline.index("</table>")]
    attempts = [int(n) for n in re.findall(r'<td class="num">(\d+)</td>\s*<td><time', timeline)]
    assert attempts == list(range(101, 301))
    assert re.search(r'id="task-runs-earlier">The latest 200 attempts are shown; 100 earlier '
                     rf'ones are in <a href="/admin/tasks/taskhistory/\?q={task.pk}">', html)
    (read,) = [q["sql"] for q in queries.captured_queries
               if '"task_history"."attempt" > 0' in q["sql"]]
    assert read.endswith(f"LIMIT {selectors.ATTEMPTS_SHOWN * selectors.ROWS_PER_ATTEMPT}")


def test_a_fan_out_and_a_fan_in_show_the_first_and_link_all(admin_client):
    parent = enqueue("parent")
    children = engine.enqueue_many([{"name": f"child {i}", "type": "noop",
                                     "depends_on": [parent.pk]} for i in range(250)])
    html = admin_client.get(change_url(parent.pk)).content.decode()
    assert rows_of(html, "field-children_display", "<tr><td>") == 200
    assert f'href="/admin/tasks/task/?after={parent.pk}" class="task-children-all">50 more' \
        in html and "The first 200 of 250 are shown" in html
    listed = admin_client.get(CHANGELIST, {"after": parent.pk})
    assert listed.context["cl"].result_count == 250
    assert set(row_ids(listed)) <= {c.pk for c in children}

    joined = engine.enqueue(name="join", type="noop", depends_on=[c.pk for c in children])
    html = admin_client.get(change_url(joined.pk)).content.decode()
    assert rows_of(html, "field-parents_display", "<tr><td>") == 200
    assert f'href="/admin/tasks/task/?before={joined.pk}" class="task-parents-all">50 more' \
        in html
    assert admin_client.get(CHANGELIST, {"before": joined.pk}).context["cl"].result_count \
        == 250
    assert admin_client.get(CHANGELIST, {"after": "nonsense"}).context["cl"].result_count == 0


def test_a_large_workflow_shows_its_first_steps_and_links_all(admin_client):
    workflow, steps = engine.enqueue_workflow(
        [{"name": f"step {i}", "type": "noop"} for i in range(205)], name="big")
    html = admin_client.get(reverse("admin:tasks_workflow_change",
                                    args=[workflow.pk])).content.decode()
    assert rows_of(html, 'class="task-steps"', "<tr><td>") == 200
    assert f'href="/admin/tasks/task/?workflow={workflow.pk}" class="task-steps-all">5 more' \
        in html
    listed = admin_client.get(CHANGELIST, {"workflow": workflow.pk})
    assert listed.context["cl"].result_count == 205


def test_the_task_page_reads_its_dependencies_once(admin_client):
    parent = enqueue("parent")
    task = enqueue("middle", depends_on=[parent.pk])
    enqueue("child", depends_on=[task.pk])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(change_url(task.pk))
    assert response.status_code == 200
    reads = [q["sql"] for q in queries.captured_queries if "task_dependencies" in q["sql"]]
    assert len(reads) == 2, reads  # parents, children
    html = response.content.decode()
    assert f"#{parent.pk}</a>" in html and "task-truncated" not in html
