"""The admin's Queues and Schedules pages in a real headless Chromium, served by a real
daphne process: a person pauses and resumes a queue, sets a limit, and disables and runs a
schedule, under the Content Security Policy."""

from __future__ import annotations

import os

import pytest

from tasks import engine
from tasks.models import AuditEntry, Queue, Schedule, Task
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MISSING,
    PASSWORD,
    WATCH_VIOLATIONS,
)

if not os.path.exists(CHROMIUM):
    pytest.skip(MISSING, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def test_queues_and_schedules_pages_steer_through_the_engine(daphne, django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)
    engine.enqueue(name="waiting", type="noop", queue="mail")
    schedule = engine.schedules.create(name="often", type="noop", interval_seconds=600)
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(15_000)
            page.add_init_script(WATCH_VIOLATIONS)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{daphne.url}/admin/login/?next=/admin/tasks/queue/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/tasks/queue/")

            row = page.locator('tr[data-queue="mail"]')
            expect(row.locator(".task-queue-state")).to_have_text("active")
            row.locator(".task-queue-toggle").click()
            expect(page.locator('tr[data-queue="mail"] .task-queue-state')).to_have_text("paused")
            row = page.locator('tr[data-queue="mail"]')
            row.locator('input[name="concurrency_limit"]').fill("3")
            row.locator('input[value="Set limits"]').click()
            expect(page.locator(".messagelist")).to_contain_text("Queue mail: limits set.")
            page.locator('tr[data-queue="mail"] .task-queue-toggle').click()
            expect(page.locator('tr[data-queue="mail"] .task-queue-state')).to_have_text("active")

            page.goto(f"{daphne.url}/admin/tasks/schedule/")
            expect(page.locator("#result_list")).to_contain_text("every 600s")
            page.check("#result_list input.action-select")
            page.select_option("select[name=action]", "disable_selected")
            page.click("button[name=index]")
            expect(page.locator(".messagelist")).to_contain_text("1 schedule(s) disabled.")
            page.check("#result_list input.action-select")
            page.select_option("select[name=action]", "run_selected_now")
            page.click("button[name=index]")
            expect(page.locator(".messagelist")).to_contain_text("enqueued now")
            violations = page.evaluate("window.__cspViolations")
        finally:
            browser.close()
    # The database is read after the browser closes (Playwright runs an event loop).
    assert violations == [] and not errors
    mail = Queue.objects.get(name="mail")
    assert (mail.paused, mail.concurrency_limit) == (False, 3)
    assert not Schedule.objects.get(pk=schedule.pk).enabled
    assert Task.objects.filter(origin="schedule").count() == 1
    assert list(AuditEntry.objects.values_list("action", flat=True)) == [
        "schedule_created", "queue_paused", "queue_limits_changed", "queue_resumed",
        "schedule_paused", "schedule_run_now"]
