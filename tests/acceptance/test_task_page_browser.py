"""The task page of a running task in a real headless Chromium against a real daphne: the
progress its plugin reports is repainted live (NOTIFY -> the relay -> the websocket ->
task_live.js), and cleared when a new attempt starts."""

from __future__ import annotations

import os

import pytest

from tests.support.browser import CHROMIUM, MISSING, db, login

if not os.path.exists(CHROMIUM):
    pytest.skip(MISSING, allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

WORKER = "page-host:1:abcd"


def test_the_task_page_shows_progress_live_and_clears_it_for_a_new_attempt(
        daphne, browser, django_user_model):
    from tasks import engine

    def start():
        engine.register_worker(worker_id=WORKER, hostname="page-host", pid=1, queues=[],
                               concurrency=1)
        engine.enqueue(name="long", type="noop", max_retries=1)
        (claimed,) = engine.claim(worker_id=WORKER, limit=1)
        return claimed

    claimed = db(start)
    page = login(browser, daphne, django_user_model)
    page.goto(f"{daphne.url}/admin/tasks/task/{claimed.id}/change/")
    field = page.locator(f'[data-task-progress="{claimed.id}"]')
    expect(field).to_have_text("—")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "ok")

    db(lambda: engine.progress(worker_id=WORKER, task_id=claimed.id, attempt=claimed.attempt,
                               done=2, total=5, message="two of five"))
    expect(field).to_have_text("2 / 5 (40%) two of five")

    def next_attempt():
        from django.utils import timezone

        from tasks.models import Task

        engine.fail(worker_id=WORKER, outcomes=[engine.Outcome(
            task_id=claimed.id, attempt=claimed.attempt, error="boom")])
        Task.objects.filter(pk=claimed.id).update(run_at=timezone.now())  # due at once
        (again,) = engine.claim(worker_id=WORKER, limit=1)
        return again

    assert db(next_attempt).attempt == claimed.attempt + 1
    expect(field).to_have_text("—")
