"""The task page: the attempts timeline from history, a running task's clock and worker,
tracebacks with their indentation, the run-now button, and a running task's progress."""

from __future__ import annotations

import re

import pytest

from tasks import engine
from tests.integration.conftest import WORKER, make_due, outcome
from tests.integration.test_admin import change_url, enqueue

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
