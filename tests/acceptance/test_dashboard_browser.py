"""The live dashboard in a real headless Chromium, served by a real daphne process.

Tasks are enqueued by other processes (`manage.py shell`, a real worker), so what the
page shows travels the whole way: PostgreSQL NOTIFY -> the relay's LISTEN in daphne ->
the websocket -> our JavaScript. Screenshots go to test-output/ (git-ignored).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import processes
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, MISSING, OUTPUT, PASSWORD, sign_in

if not os.path.exists(CHROMIUM):
    pytest.skip(MISSING, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def run_python(code: str) -> str:
    """Run code in `manage.py shell` (another process, another database connection)."""
    result = subprocess.run([sys.executable, str(processes.ROOT / "manage.py"), "shell",
                             "-v", "0", "-c", code], cwd=processes.ROOT,
                            env=processes.process_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_dashboard_updates_live_and_survives_a_server_restart(
        daphne, worker_factory, django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)
    OUTPUT.mkdir(exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(15_000)
            sign_in(page, daphne.url, "/admin/dashboard/")
            status = page.locator("#live-status")
            expect(status).to_have_attribute("data-state", "ok")
            expect(page.locator("#count-queued")).to_have_text("0")
            page.evaluate("window.__notReloaded = true")

            # Another process enqueues: counts, queue depth and the feed change live.
            run_python("from tasks import engine; engine.enqueue_many("
                       "[{'name': f'browser {i}', 'type': 'noop', 'queue': 'mail'} "
                       "for i in range(5)])")
            expect(page.locator("#count-queued")).to_have_text("5")
            expect(page.locator("#queue-depth")).to_contain_text("mail")
            expect(page.locator("#event-feed li").first).to_contain_text("task_queued")
            expect(page.locator("#event-feed li").first).to_contain_text("5 tasks")

            # A real worker runs them: succeeded count, chart and workers table follow.
            worker_factory("--concurrency", "2", "--queues", "mail")
            expect(page.locator("#count-succeeded")).to_have_text("5", timeout=30_000)
            expect(page.locator("#count-queued")).to_have_text("0")
            expect(page.locator("#throughput-chart rect.chart-succeeded").first).to_be_visible()
            expect(page.locator("#throughput-total")).to_contain_text("5 succeeded")
            expect(page.locator("#workers-online")).to_contain_text(str(os.uname().nodename))
            expect(page.locator("#event-feed")).to_contain_text("task_succeeded")
            assert page.evaluate("window.__notReloaded") is True
            page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)

            # The server goes away: the page says so, then reconnects when it is back.
            daphne.stop()
            expect(status).to_have_attribute("data-state", "lost")
            expect(status).to_contain_text("connection lost")
            page.screenshot(path=str(OUTPUT / "dashboard-connection-lost.png"))
            daphne.start()
            expect(status).to_have_attribute("data-state", "ok", timeout=30_000)
            run_python("import datetime\n"
                       "from django.utils import timezone\n"
                       "from tasks import engine\n"
                       "engine.enqueue(name='after restart', type='noop', queue='later',\n"
                       "              run_at=timezone.now() + datetime.timedelta(hours=1))")
            expect(page.locator("#count-queued")).to_have_text("1")
            assert page.evaluate("window.__notReloaded") is True

            # The task list repaints the badges of the rows on screen.
            page.goto(f"{daphne.url}/admin/tasks/task/")
            expect(page.locator("#live-status")).to_have_attribute("data-state", "ok")
            badge = page.locator("#result_list .task-status").first
            expect(badge).to_have_text("queued")
            page.evaluate("window.__notReloaded = true")
            run_python("from tasks import engine; from tasks.models import Task; "
                       "engine.cancel(Task.objects.get(name='after restart').pk)")
            expect(badge).to_have_text("cancelled")
            expect(badge).to_have_class("task-status task-status-cancelled task-flash")
            assert page.evaluate("window.__notReloaded") is True
            page.screenshot(path=str(OUTPUT / "task-list.png"))

            # The task page: Retry is offered for a cancelled task, and goes through.
            page.click("#result_list a:text('after restart')")
            page.click("#task-retry-button")
            expect(page.locator("ul.messagelist")).to_contain_text("requeued")
            expect(page.locator(".field-status_display .task-status")).to_have_text("queued")
            expect(page.locator("#task-cancel-button")).to_be_visible()
            page.screenshot(path=str(OUTPUT / "task-page.png"), full_page=True)

            # The add form shows the plugin's payload errors on the field.
            page.goto(f"{daphne.url}/admin/tasks/task/add/")
            page.fill("#id_name", "by hand")
            page.select_option("#id_type", "send_email")
            page.fill("#id_payload", '{"to": "nobody", "subject": "hi", "body": ""}')
            page.click("input[name=_save]")
            expect(page.locator(".field-payload .errorlist")).to_contain_text(
                "to: Not a valid email address: nobody.")
            page.screenshot(path=str(OUTPUT / "add-task-errors.png"), full_page=True)
        finally:
            browser.close()
