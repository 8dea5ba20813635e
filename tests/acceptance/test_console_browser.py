"""The operator's console in a real headless Chromium against a real daphne: pages fit
1440x900 and 1920x1080 with the admin's sidebar open, act-on-filter changes exactly the
matching tasks, a killed worker turns "late" then "lost" on the dashboard at the liveness
window's boundary, the admin index's counts follow without a reload, and pages work
without JavaScript. Screenshots go to test-output/ (git-ignored)."""

from __future__ import annotations

import datetime
import os
import signal
import time
from types import SimpleNamespace

import pytest
from django.utils import timezone

from tests.support.browser import CHROMIUM, MISSING, OUTPUT, Daphne, db, login
from tests.support.processes import free_port

if not os.path.exists(CHROMIUM):
    pytest.skip(MISSING, allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

VIEWPORTS = [(1440, 900), (1920, 1080)]
# A short liveness window, max(LEASE, 3 x HEARTBEAT) = 5 s: online up to 1.5 s of silence,
# late until 5 s, then lost.
HEARTBEAT, LEASE = 1.0, 5.0

OVERFLOW = """() => {
  const found = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1) {
    found.push("page " + doc.scrollWidth + " > " + doc.clientWidth);
  }
  for (const sel of ["#changelist .results", "#content-main", ".task-grid .module",
                     ".task-chart-grid", ".inline-group .tabular", "#task-run"]) {
    for (const el of document.querySelectorAll(sel)) {
      if (el.scrollWidth > el.clientWidth + 1) {
        found.push(sel + " " + el.scrollWidth + " > " + el.clientWidth);
      }
    }
  }
  return found;
}"""


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A daphne whose workers' liveness window is the short one above."""
    monkeypatch.setenv("TASKS_HEARTBEAT_INTERVAL", str(HEARTBEAT))
    monkeypatch.setenv("TASKS_LEASE_SECONDS", str(LEASE))
    daphne = Daphne(free_port(), tmp_path / "daphne.log")
    daphne.start()
    yield daphne
    daphne.stop()


def mixed_tasks():
    """A few hundred tasks in every state, long names, errors with tracebacks, a worker."""
    from tasks import engine

    engine.register_worker(worker_id="console-host:4242:abcd", hostname="console-host",
                           pid=4242, queues=["mail", "default"], concurrency=4)
    long_name = "nightly export of every customer invoice to the accounting system " * 3
    engine.enqueue_many([{"name": f"{long_name} {i}" if i % 10 == 0 else f"task {i}",
                          "type": ["noop", "send_email", "simulate"][i % 3]
                          if i % 3 != 1 else "noop",
                          "queue": ["default", "mail", "reports"][i % 3],
                          "max_retries": i % 2, "priority": i % 5} for i in range(300)])
    claimed = engine.claim(worker_id="console-host:4242:abcd", limit=120)
    trace = ("Traceback (most recent call last):\n"
             '  File "/srv/app/plugins/export.py", line 120, in run\n'
             "    self.upload(batch, destination=self.settings.destination_url_with_a_long_"
             "name_that_goes_on)\n"
             "ConnectionError: the accounting system refused the connection")
    outcomes = [engine.Outcome(task_id=c.id, attempt=c.attempt, retry_count=c.retry_count,
                               error="refused", error_class="builtins.ConnectionError",
                               error_message="refused", traceback=trace)
                for c in claimed[:40]]
    engine.fail(worker_id="console-host:4242:abcd", outcomes=outcomes)
    engine.complete(worker_id="console-host:4242:abcd", outcomes=[
        engine.Outcome(task_id=c.id, attempt=c.attempt) for c in claimed[40:100]])
    engine.enqueue(name="later", type="noop", run_at=timezone.now() + datetime.timedelta(hours=2))
    return claimed[0].id, claimed[110].id  # a failed task, a running one


def test_pages_fit_both_screens_with_the_sidebar_open(server, browser, django_user_model):
    failed_id, running_id = db(mixed_tasks)
    OUTPUT.mkdir(exist_ok=True)
    pages = {
        "list": "/admin/tasks/task/",
        "dashboard": "/admin/dashboard/",
        "task-page": f"/admin/tasks/task/{failed_id}/change/",
        "running-task-page": f"/admin/tasks/task/{running_id}/change/",
        "workers": "/admin/tasks/worker/",
        "history": "/admin/tasks/taskhistory/",
        "index": "/admin/",
    }
    for size in VIEWPORTS:
        page = login(browser, server, django_user_model, size)
        for name, path in pages.items():
            page.goto(server.url + path)
            if name not in ("dashboard", "index"):
                expect(page.locator("#nav-sidebar")).to_be_visible()
            page.screenshot(path=str(OUTPUT / f"console-{name}-{size[0]}x{size[1]}.png"),
                            full_page=True)
            columns = page.evaluate("() => [...document.querySelectorAll('#result_list th')]"
                                    ".map(th => th.className + ' ' + th.offsetWidth)")
            overflow = page.evaluate(OVERFLOW)
            assert overflow == [], f"{name} at {size}: {overflow}; columns {columns}"
        # The list: one line a row, the whole name on hover, times localised with ISO kept.
        page.goto(server.url + "/admin/tasks/task/?q=nightly")
        heights = page.evaluate("() => [...document.querySelectorAll('#result_list tbody tr')]"
                                ".map(r => r.getBoundingClientRect().height)")
        assert heights and max(heights) < 40, heights
        name = page.locator("#result_list a.task-name").first
        assert name.get_attribute("title").startswith("nightly export")
        created = page.locator("#result_list td.field-created time").first
        assert created.get_attribute("title").endswith("Z")
        # The task page: the traceback keeps its indentation.
        page.goto(server.url + f"/admin/tasks/task/{failed_id}/change/")
        page.locator("#task-timeline summary").first.click()
        trace = page.locator("#task-timeline pre.task-traceback").first
        assert "\n  File " in trace.inner_text()
        assert trace.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
        assert trace.evaluate("e => getComputedStyle(e).fontFamily").lower().find("mono") >= 0
        page.context.close()


def test_act_on_filter_cancels_exactly_the_matching_tasks(server, browser, django_user_model):
    from tasks import engine
    from tasks.models import Task

    mail = db(lambda: [engine.enqueue(name=f"mail {i}", type="noop", queue="mail")
                       for i in range(6)])
    other = db(lambda: [engine.enqueue(name=f"other {i}", type="noop", queue="reports")
                        for i in range(4)])
    page = login(browser, server, django_user_model)
    page.goto(f"{server.url}/admin/tasks/task/?queue=mail")
    page.click("#act-cancel")
    expect(page.locator("#act-will")).to_contain_text("6 matching tasks will be cancelled")
    expect(page.locator("#act-cap")).to_contain_text("At most 5000 tasks")
    page.screenshot(path=str(OUTPUT / "console-act-on-filter-preview.png"), full_page=True)
    page.click("#act-confirm")
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Every task matching the filter: 6 cancelled")
    statuses = db(lambda: dict(Task.objects.values_list("pk", "status")))
    assert [statuses[t.pk] for t in mail] == ["cancelled"] * 6
    assert [statuses[t.pk] for t in other] == ["queued"] * 4
    page.context.close()


def test_a_killed_worker_turns_lost_on_the_dashboard(server, browser, django_user_model,
                                                     worker_factory):
    from tasks import states
    from tasks.models import Worker

    thresholds = states.liveness_thresholds(SimpleNamespace(HEARTBEAT_INTERVAL=HEARTBEAT,
                                                            LEASE_SECONDS=LEASE))
    page = login(browser, server, django_user_model)
    page.goto(f"{server.url}/admin/dashboard/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "ok")
    worker = worker_factory("--concurrency", "1")
    row = page.locator("#workers-online tr[data-worker]")
    badge = row.locator(".task-worker-state")
    expect(badge).to_have_text("online", timeout=30_000)
    # The page ages workers by the thresholds of the settings the processes run with.
    tbody = page.locator("#workers-online")
    assert float(tbody.get_attribute("data-online")) == thresholds["online"]
    assert float(tbody.get_attribute("data-lost")) == thresholds["lost"]
    # Alive, it stays online past the window: heartbeats reach the open page.
    alive_until = time.time() + thresholds["lost"] + 1
    while time.time() < alive_until:
        assert badge.text_content() == "online"
        time.sleep(0.2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    last_seen = db(lambda: Worker.objects.get().last_seen).timestamp()
    lost_at = last_seen + thresholds["lost"]
    # Within the window the worker is online, then late; never lost. (The page repaints
    # once a second, so it may show a state up to a second late, never early.)
    seen = []
    while time.time() < lost_at - 0.5:
        seen.append(badge.text_content())
        time.sleep(0.1)
    assert seen and set(seen) <= {"online", "late"}, seen
    assert seen[-1] == "late", seen
    # Past it, lost: the page ages the worker itself, as a killed worker sends no event.
    wait = lost_at + 2.5 - time.time()  # the repaint interval and a margin
    expect(badge).to_have_text("lost", timeout=wait * 1000)
    page.screenshot(path=str(OUTPUT / "console-dashboard-worker-lost.png"), full_page=True)
    page.context.close()


def test_the_admin_index_counts_follow_without_a_reload(server, browser, django_user_model):
    from tasks import engine

    db(lambda: engine.enqueue(name="first", type="noop"))
    page = login(browser, server, django_user_model)  # lands on the admin index
    queued = page.locator("#count-queued")
    expect(queued).to_have_text("1")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "ok")
    page.evaluate("() => { window.notReloaded = true; }")
    db(lambda: engine.enqueue_many([{"name": f"more {i}", "type": "noop"} for i in range(2)]))
    expect(queued).to_have_text("3", timeout=15_000)
    assert page.evaluate("() => window.notReloaded === true")
    page.context.close()


def test_pages_work_without_javascript(server, browser, django_user_model):
    db(mixed_tasks)
    page = login(browser, server, django_user_model, javascript=False)
    page.goto(f"{server.url}/admin/dashboard/?range=24h")
    expect(page.locator("#queue-depth tr[data-queue='mail']")).to_be_visible()
    expect(page.locator("#failing tr").first).to_contain_text("builtins.ConnectionError")
    expect(page.locator("#workers-online tr[data-worker]").first).to_contain_text("console-host")
    expect(page.locator("#chart-throughput-svg rect").first).to_be_attached()
    expect(page.locator(".task-range-chosen")).to_have_text("24 h")
    page.screenshot(path=str(OUTPUT / "console-dashboard-no-js.png"), full_page=True)
    page.goto(f"{server.url}/admin/tasks/task/?status__exact=failed")
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    page.click("#act-retry")
    page.click("#act-confirm")
    expect(page.locator("ul.messagelist")).to_contain_text("requeued")
    page.context.close()


def test_a_queue_is_paused_and_resumed_from_the_dashboard(server, browser, django_user_model):
    from tasks import engine
    from tasks.models import Queue

    db(lambda: engine.enqueue_many([{"name": f"mail {i}", "type": "noop", "queue": "mail"}
                                    for i in range(3)]))
    page = login(browser, server, django_user_model)
    page.goto(f"{server.url}/admin/dashboard/")
    controls = page.locator('#queue-depth td.task-queue-controls[data-queue="mail"]')
    expect(controls.locator(".task-queue-state")).to_have_text("running")
    controls.locator("form.task-queue-pause button").click()
    page.wait_for_url("**/admin/dashboard/")
    expect(controls.locator(".task-queue-state")).to_have_text("paused")
    assert db(lambda: Queue.objects.get(name="mail").paused)
    expect(controls.locator("form.task-queue-pause")).to_be_hidden()
    # Resumed elsewhere: the open page follows through its websocket.
    db(lambda: engine.resume_queue("mail", actor="another operator"))
    expect(controls.locator(".task-queue-state")).to_have_text("running", timeout=15_000)
    expect(controls.locator("form.task-queue-pause")).to_be_visible()
    controls.locator("form.task-queue-pause button").click()
    # The same URL after the redirect: wait for the new page's state, not the URL.
    expect(controls.locator(".task-queue-state")).to_have_text("paused")
    controls.locator("form.task-queue-resume button").click()
    page.wait_for_url("**/admin/dashboard/")
    expect(controls.locator(".task-queue-state")).to_have_text("running")
    assert not db(lambda: Queue.objects.get(name="mail").paused)
    page.screenshot(path=str(OUTPUT / "console-dashboard-queue-controls.png"), full_page=True)
    page.context.close()
