"""A run's progress belongs to its attempt: a new attempt does not show the value an earlier
one left, and a person's retry or run-now clears it. Every reader is checked: the API, the
live view's statuses, the dashboard's workers, the task page and the command line."""

from __future__ import annotations

import datetime
import io
import json
import re

import pytest
from django.core.management import call_command
from django.utils import timezone

from tasks import engine, selectors
from tasks.api.serializers import TaskSerializer
from tasks.models import Task
from tests.integration.conftest import WORKER, enqueue, make_due, outcome
from tests.integration.test_admin import change_url

pytestmark = pytest.mark.django_db


def report(claimed: engine.ClaimedTask, done: float, total: float | None = None,
           message: str = "") -> None:
    assert engine.progress(worker_id=WORKER, task_id=claimed.id, attempt=claimed.attempt,
                           done=done, total=total, message=message, at="t")


def shown(task_id: int) -> dict:
    """The progress each reader shows for the task."""
    out = io.StringIO()
    call_command("task", "get", "--id", str(task_id), "-o", "json", stdout=out)
    return {"api": TaskSerializer(Task.objects.get(pk=task_id)).data["progress"],
            "live": selectors.task_statuses([task_id])[task_id][3],
            "cli": json.loads(out.getvalue())["progress"]}


def everywhere(value) -> dict:
    return {"api": value, "live": value, "cli": value}


def page_progress(client, task_id: int) -> str:
    html = client.get(change_url(task_id)).content.decode()
    found = re.search(rf'<span data-task-progress="{task_id}">(.*?)</span>\s*</div>', html,
                      re.S)
    assert found, "the task page has no progress field"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def dashboard_progress() -> list[str]:
    (worker,) = [w for w in selectors.workers() if w["id"] == WORKER]
    return worker["running_progress"]


def test_a_new_attempt_does_not_show_the_progress_the_one_before_left(admin_client):
    engine.register_worker(worker_id=WORKER, hostname="h", pid=1, queues=[], concurrency=1)
    task = enqueue(max_retries=2)
    (first,) = engine.claim(worker_id=WORKER, limit=1)
    report(first, 3, 10, "first try")
    first_value = {"done": 3, "total": 10, "message": "first try", "at": "t", "attempt": 1}
    assert shown(task.pk) == everywhere(first_value)
    assert dashboard_progress() == ["30%"]
    engine.fail(worker_id=WORKER, outcomes=[outcome(first, error="boom")])
    # Retrying: where the failed attempt got to is still that attempt's, and shown.
    assert shown(task.pk) == everywhere(first_value)
    assert page_progress(admin_client, task.pk) == "3 / 10 (30%) first try"

    make_due(task.pk)
    (second,) = engine.claim(worker_id=WORKER, limit=1)
    assert second.attempt == 2
    assert Task.objects.get(pk=task.pk).progress["attempt"] == 1  # stored, not shown
    assert shown(task.pk) == everywhere(None)
    assert dashboard_progress() == [""]
    assert page_progress(admin_client, task.pk) == "—"

    report(second, 1, 10, "second try")
    assert shown(task.pk)["api"] == {"done": 1, "total": 10, "message": "second try",
                                     "at": "t", "attempt": 2}
    assert dashboard_progress() == ["10%"]
    assert page_progress(admin_client, task.pk) == "1 / 10 (10%) second try"


def test_a_persons_retry_clears_the_progress():
    task = enqueue(max_retries=0)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    report(claimed, 7, 10)
    engine.fail(worker_id=WORKER, outcomes=[outcome(claimed, error="boom")])
    assert Task.objects.get(pk=task.pk).progress["done"] == 7
    engine.retry(task.pk)
    assert Task.objects.get(pk=task.pk).progress is None
    assert shown(task.pk) == everywhere(None)


def test_run_now_clears_the_progress_of_the_run_that_failed():
    task = enqueue(max_retries=3)
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    report(claimed, 2)
    engine.fail(worker_id=WORKER, outcomes=[outcome(claimed, error="boom")])
    Task.objects.filter(pk=task.pk).update(run_at=timezone.now() + datetime.timedelta(hours=1))
    engine.run_now(task.pk)
    assert Task.objects.get(pk=task.pk).progress is None


def test_a_declined_run_leaves_no_progress_for_the_next_claim_of_the_same_attempt():
    task = enqueue()
    (claimed,) = engine.claim(worker_id=WORKER, limit=1)
    report(claimed, 5)
    engine.decline(worker_id=WORKER, outcomes=[outcome(claimed, error="cannot import")])
    (again,) = engine.claim(worker_id="host-c:3:cccc", limit=1)
    assert again.attempt == claimed.attempt  # the declined attempt was not counted
    assert Task.objects.get(pk=task.pk).progress is None
    assert shown(task.pk) == everywhere(None)
