"""The pages work in a real headless Chromium under the Content Security Policy, served by
a real daphne process: no violation reported, scripts run, websockets connect, forms post.
"""

from __future__ import annotations

import datetime
import os

import pytest
from django.utils import timezone

from tasks import engine
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


def test_admin_dashboard_and_api_docs_work_under_the_policy(daphne, django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)
    # Committed at once (a transactional test), so daphne's connection sees it.
    engine.enqueue(name="csp check", type="noop", queue="later",
                   run_at=timezone.now() + datetime.timedelta(hours=1))
    console: list[str] = []
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(15_000)
            page.add_init_script(WATCH_VIOLATIONS)
            page.on("console", lambda message: console.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))

            def no_violations(where: str) -> None:
                reported = page.evaluate("window.__cspViolations")
                policy_lines = [m for m in console if "Content Security Policy" in m]
                assert not reported and not policy_lines, (where, reported, policy_lines)
                assert not errors, (where, errors)

            # The login form posts.
            page.goto(f"{daphne.url}/admin/login/?next=/admin/tasks/task/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/tasks/task/")

            # The task list: its live script runs and its websocket connects.
            expect(page.locator("#live-status")).to_have_attribute("data-state", "ok")
            expect(page.locator("#result_list .task-status").first).to_have_text("queued")
            no_violations("task list")

            # A bulk action: the admin's own script ticks the box, the forms post.
            page.check("#result_list input.action-select")
            page.select_option("select[name=action]", "cancel_selected")
            page.click("button[name=index]")
            page.click("input[type=submit]")
            expect(page.locator("ul.messagelist")).to_contain_text("cancelled")
            no_violations("bulk action")

            # The task page.
            page.click("#result_list a:text('csp check')")
            expect(page.locator(".field-status_display .task-status")).to_have_text(
                "cancelled")
            no_violations("task page")

            # The dashboard: scripts, chart and websocket.
            page.goto(f"{daphne.url}/admin/dashboard/")
            expect(page.locator("#live-status")).to_have_attribute("data-state", "ok")
            expect(page.locator("#count-cancelled")).to_have_text("1")
            no_violations("dashboard")

            # Swagger UI: its inline start-up script runs by nonce and renders the API.
            page.goto(f"{daphne.url}/api/docs/")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Task Service API")
            expect(page.locator(".opblock").first).to_be_visible()
            no_violations("api docs")
        finally:
            browser.close()
