"""Acting on every task that matches the list's filter, and running a deferred task now:
a preview that states the cap, then the engine's bulk verbs in batches, then a report."""

from __future__ import annotations

import datetime
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from tasks import engine, states
from tasks.admin import filtered
from tasks.models import Status, Task, TaskHistory
from tests.integration.test_admin import CHANGELIST, change_url, enqueue, messages_of, run_to

pytestmark = pytest.mark.django_db


def act_url(verb: str) -> str:
    return reverse("admin:tasks_task_act_on_filter", args=[verb])


def statuses(*tasks: Task) -> list[str]:
    return [Task.objects.get(pk=t.pk).status for t in tasks]


def test_the_list_links_each_verb_with_the_current_filter(admin_client):
    enqueue("x")
    html = admin_client.get(CHANGELIST, {"type": "noop", "p": "1"}).content.decode()
    for verb in ("cancel", "retry", "run_now", "delete"):
        assert f'href="{act_url(verb)}?type=noop"' in html


def test_preview_states_the_cap_and_changes_nothing(admin_client):
    mail = [enqueue(f"mail {i}", type="send_email", payload={"to": "a@example.com",
                                                              "subject": "s", "body": ""})
            for i in range(3)]
    fourth = enqueue("fourth mail", type="send_email", payload={"to": "a@example.com",
                                                             "subject": "s", "body": ""})
    other = enqueue("other")
    response = admin_client.get(act_url("cancel"), {"type": "send_email"})
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'id="act-will"><strong>4</strong> matching tasks will be cancelled', html)
    assert f"At most {filtered.CAP} tasks are changed per confirmation" in html
    assert f"#{other.pk} other" not in html
    assert statuses(*mail, fourth, other) == [Status.QUEUED] * 5


def test_cancel_every_match_cancels_exactly_the_matching_tasks(admin_client):
    mail = [enqueue(f"mail {i}", queue="mail") for i in range(4)]
    finished = enqueue("finished mail", queue="mail")
    engine.cancel(finished.pk)
    elsewhere = [enqueue(f"default {i}") for i in range(2)]
    url = act_url("cancel") + "?queue=mail"
    preview = admin_client.get(url).content.decode()
    assert re.search(r'id="act-will"><strong>4</strong>', preview)
    assert re.search(r'id="act-others">1 other matching task is left as it is', preview)
    response = admin_client.post(url, {"post": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == CHANGELIST + "?queue=mail"
    assert messages_of(response) == ["Every task matching the filter: 4 cancelled"]
    assert statuses(*mail) == [Status.CANCELLED] * 4
    assert statuses(*elsewhere) == [Status.QUEUED] * 2
    assert TaskHistory.objects.filter(event_type="task_cancelled",
                                      details__contains="(filter)").count() == 4


def test_retry_and_delete_every_match_respect_search_and_status(admin_client):
    failed = [enqueue(f"bad {i}", max_retries=0, payload={"batch": 7}) for i in range(2)]
    run_to("failed", *failed)
    kept = enqueue("other batch", payload={"batch": 8}, max_retries=0)
    run_to("failed", kept)
    response = admin_client.post(act_url("retry") + "?q=batch%3D7", {"post": "yes"},
                                 follow=True)
    assert messages_of(response) == ["Every task matching the filter: 2 requeued"]
    assert statuses(*failed, kept) == [Status.QUEUED, Status.QUEUED, Status.FAILED]

    response = admin_client.post(act_url("delete") + "?status__exact=failed", {"post": "yes"},
                                 follow=True)
    assert messages_of(response) == ["Every task matching the filter: 1 deleted"]
    assert not Task.objects.filter(pk=kept.pk).exists()
    assert Task.objects.filter(pk__in=[t.pk for t in failed]).count() == 2


def test_acting_is_capped_and_batched(admin_client, monkeypatch):
    monkeypatch.setattr(filtered, "CAP", 5)
    monkeypatch.setattr(filtered, "BATCH", 2)
    tasks = [enqueue(f"t{i}") for i in range(7)]
    preview = admin_client.get(act_url("cancel")).content.decode()
    assert "More than 5</strong> matching tasks will be cancelled" in preview
    assert "confirm again, or narrow the filter" in preview
    response = admin_client.post(act_url("cancel"), {"post": "yes"}, follow=True)
    assert messages_of(response) == [
        "Every task matching the filter: 5 cancelled, capped at 5: more match, act again"]
    assert statuses(*tasks) == [Status.CANCELLED] * 5 + [Status.QUEUED] * 2


def test_run_now_every_deferred_match(admin_client):
    later = timezone.now() + datetime.timedelta(hours=2)
    deferred = [enqueue(f"later {i}", run_at=later) for i in range(3)]
    due = enqueue("due now")
    response = admin_client.post(act_url("run_now"), {"post": "yes"}, follow=True)
    assert messages_of(response) == ["Every task matching the filter: 3 made due now"]
    for task in deferred:
        task.refresh_from_db()
        assert task.run_at <= timezone.now() and task.status == Status.QUEUED
        assert TaskHistory.objects.filter(task=task, event_type="task_run_now").count() == 1
    assert not TaskHistory.objects.filter(task=due, event_type="task_run_now").exists()
    assert {c.id for c in engine.claim(worker_id="w", limit=10)} == \
        {t.pk for t in [*deferred, due]}


def test_run_now_button_on_a_deferred_task_page(admin_client):
    task = enqueue("later", run_at=timezone.now() + datetime.timedelta(hours=1))
    html = admin_client.get(change_url(task.pk)).content.decode()
    assert 'id="task-run-now-button"' in html
    response = admin_client.post(reverse("admin:tasks_task_run_now", args=[task.pk]),
                                 follow=True)
    assert messages_of(response) == [f"Task #{task.pk} made due now."]
    assert 'id="task-run-now-button"' not in response.content.decode()
    again = admin_client.post(reverse("admin:tasks_task_run_now", args=[task.pk]), follow=True)
    assert messages_of(again) == [
        f"Cannot run now task {task.pk}: it is queued and already due."]


def test_bad_verb_and_filter_are_400_and_permissions_hold(client, admin_client,
                                                          django_user_model):
    task = enqueue("x")
    assert admin_client.get(act_url("explode")).status_code == 400
    assert admin_client.get(act_url("cancel"), {"created_at__year": "x"}).status_code == 400
    assert admin_client.post(act_url("cancel")).status_code == 400  # not confirmed
    viewer = django_user_model.objects.create_user("viewer", password="pw-123456789",
                                                   is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_task", "view_all_tasks"]))
    client.force_login(viewer)
    assert client.get(act_url("cancel")).status_code == 403
    assert client.post(act_url("cancel"), {"post": "yes"}).status_code == 403
    assert 'id="act-on-filter"' not in client.get(CHANGELIST).content.decode()
    assert Task.objects.get(pk=task.pk).status == Status.QUEUED


def one_task_in_each_status() -> dict[str, Task]:
    """A task per status; the queued and retrying ones deferred (run now applies to them)."""
    later = timezone.now() + datetime.timedelta(hours=1)
    failed, retrying = enqueue("failed", max_retries=0), enqueue("retrying", max_retries=3)
    run_to("failed", failed, retrying)
    succeeded = enqueue("succeeded")
    run_to("succeeded", succeeded)
    running = enqueue("running")
    run_to("running", running)
    cancelled = enqueue("cancelled")
    engine.cancel(cancelled.pk)
    queued = enqueue("queued", run_at=later)
    waiting = enqueue("waiting", depends_on=[queued.pk])
    found = {t.name: Task.objects.get(pk=t.pk) for t in (
        running, failed, retrying, succeeded, cancelled, queued, waiting)}
    assert {name: t.status for name, t in found.items()} == {n: n for n in found}
    assert found["retrying"].run_at > timezone.now()
    return found


@pytest.mark.parametrize("verb", ["cancel", "retry", "run_now", "delete"])
def test_each_verb_takes_the_statuses_the_lifecycle_allows(admin_client, verb):
    tasks = one_task_in_each_status()
    expected = states.FINISHED if verb == "delete" else states.sources(verb)
    preview = admin_client.get(act_url(verb)).content.decode()
    shown = {t.pk for t in tasks.values() if f"#{t.pk} {t.name}</a>" in preview}
    assert shown == {t.pk for t in tasks.values() if t.status in expected}


def test_cancel_every_match_takes_waiting_tasks_and_reports_the_running_ones(admin_client):
    tasks = one_task_in_each_status()
    response = admin_client.post(act_url("cancel"), {"post": "yes"}, follow=True)
    assert messages_of(response) == [
        "Every task matching the filter: 3 cancelled, 1 stopping (running: its worker will "
        "end it as cancelled)"]
    assert statuses(tasks["waiting"], tasks["queued"], tasks["retrying"]) == \
        [Status.CANCELLED] * 3
    running = Task.objects.get(pk=tasks["running"].pk)
    assert running.status == Status.RUNNING and running.cancel_requested_at is not None
    # Asked once: the next cancel on the filter leaves it alone.
    again = admin_client.post(act_url("cancel"), {"post": "yes"}, follow=True)
    assert messages_of(again) == ["Every task matching the filter: 0 cancelled"]
    assert TaskHistory.objects.filter(task_id=running.pk,
                                      event_type="cancel_requested").count() == 1
