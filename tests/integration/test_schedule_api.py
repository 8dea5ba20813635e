"""/api/schedules against real PostgreSQL: every verb, next runs, errors, permissions."""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import authz, engine
from tasks.models import AuditEntry, Schedule, Task
from tests.factories import UserFactory
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db


def _api(*codenames: str, username: str = "sam") -> APIClient:
    user = grant(UserFactory(username=username), *codenames)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api() -> APIClient:
    return _api(*users.SCHEDULES, authz.ADD, authz.ENQUEUE_ANY)


def send(api, method, url, data=None):
    return getattr(api, method)(url, data=json.dumps(data), content_type="application/json")


NIGHTLY = {"name": "nightly", "type": "simulate", "payload": {"duration": 0.1},
           "cron": "0 3 * * *", "timezone": "Europe/Paris"}


def test_create_get_list_with_next_runs(api):
    response = send(api, "post", "/api/schedules", NIGHTLY)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["cron"] == "0 3 * * *" and len(body["next_runs"]) == 3
    assert body["next_runs"][0] == body["next_run_at"]
    assert body["missed_ticks"] == "catch_up_once" and body["owner"] is not None
    assert api.get(f"/api/schedules/{body['id']}").json()["name"] == "nightly"
    assert [s["name"] for s in api.get("/api/schedules").json()] == ["nightly"]
    assert AuditEntry.objects.get().actor == "sam via the API"


@pytest.mark.parametrize("change,field", [
    ({"payload": {"duration": "forever"}}, "payload"),
    ({"cron": "99 * * * *"}, "cron"),
    ({"timezone": "Moon/Base"}, "timezone"),
    ({"cron": "", "interval_seconds": -5}, "interval_seconds"),
    ({"type": "nope"}, "type"),
    ({"owner": 1}, "owner"),
    ({"actor": "x"}, "actor"),
])
def test_a_bad_schedule_is_a_400_naming_the_field(api, change, field):
    response = send(api, "post", "/api/schedules", {**NIGHTLY, **change})
    assert response.status_code == 400
    assert field in response.json()
    assert not Schedule.objects.exists()


def test_patch_pause_resume_run_now_delete(api):
    created = send(api, "post", "/api/schedules", NIGHTLY).json()
    url = f"/api/schedules/{created['id']}"
    changed = send(api, "patch", url, {"interval_seconds": 60}).json()
    assert (changed["cron"], changed["interval_seconds"]) == ("", 60)
    assert send(api, "patch", url, {"cron": "bad"}).status_code == 400
    assert api.post(f"{url}/pause").json()["next_runs"] == []
    assert len(api.post(f"{url}/resume/").json()["next_runs"]) == 3
    run = api.post(f"{url}/run-now")
    assert run.status_code == 201 and run.json()["status"] == "queued"
    shown = api.get(url).json()
    assert (shown["last_task_id"], shown["last_task_status"]) == (run.json()["id"], "queued")
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert Task.objects.count() == 1  # its task stays


def test_unknown_ids_are_404(api):
    assert api.get("/api/schedules/999").status_code == 404
    assert api.post("/api/schedules/abc/pause").status_code == 404


def test_permissions(client):
    assert client.get("/api/schedules").status_code == 401
    viewer = _api(authz.VIEW_SCHEDULE, username="val")
    assert viewer.get("/api/schedules").status_code == 200
    refused = send(viewer, "post", "/api/schedules", NIGHTLY)
    assert refused.status_code == 403 and "tasks.add_schedule" in refused.json()["detail"]
    # Scheduling a type needs the right to enqueue it.
    adder = _api(authz.ADD_SCHEDULE, authz.ADD, username="ann")
    refused = send(adder, "post", "/api/schedules", NIGHTLY)
    assert refused.status_code == 403 and "simulate" in refused.json()["detail"]
    assert not Schedule.objects.exists()
    schedule = engine.schedules.create(**NIGHTLY)
    assert viewer.post(f"/api/schedules/{schedule.pk}/run-now").status_code == 403
    assert viewer.delete(f"/api/schedules/{schedule.pk}").status_code == 403
    assert not Task.objects.exists()


def test_a_schedule_whose_type_is_no_longer_registered_is_shown_and_steered_not_run(
        api, plugins_here):
    schedule = engine.schedules.create(name="retired", type="boom", interval_seconds=60)
    plugins_here(without=["boom"])
    url = f"/api/schedules/{schedule.pk}"
    assert api.get(url).json()["type"] == "boom"
    assert [s["name"] for s in api.get("/api/schedules").json()] == ["retired"]
    run = api.post(f"{url}/run-now")
    assert run.status_code == 400 and "Unknown task type 'boom'" in run.json()["type"][0]
    assert not Task.objects.exists()
    assert api.post(f"{url}/pause").json()["next_runs"] == []
    unchanged_type = send(api, "patch", url, {"priority": 2})
    assert unchanged_type.status_code == 400 and list(unchanged_type.json()) == ["type"]
    fixed = send(api, "patch", url, {"type": "noop"})
    assert fixed.status_code == 200 and fixed.json()["type"] == "noop"
