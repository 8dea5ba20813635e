"""/api/queues against real PostgreSQL: list, pause, resume, limits, permissions, errors."""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import authz, engine
from tasks.models import AuditEntry, Queue
from tests.factories import UserFactory
from tests.support.users import grant

pytestmark = pytest.mark.django_db


def _api(*codenames: str, username: str = "olga") -> APIClient:
    user = grant(UserFactory(username=username), *codenames)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api() -> APIClient:
    return _api(authz.VIEW_QUEUE, authz.CHANGE_QUEUE)


def patch(api, url, data):
    return api.patch(url, data=json.dumps(data), content_type="application/json")


def test_list_shows_each_queue_with_depth_and_controls(api):
    engine.enqueue(name="a", type="count", queue="mail")
    engine.set_queue_limits("api", rate_limit=5)
    rows = {q["name"]: q for q in api.get("/api/queues").json()}
    assert set(rows) == {"mail", "api"}
    assert rows["mail"]["due"] == 1 and rows["mail"]["paused"] is False
    assert rows["api"]["rate_limit"] == 5.0 and rows["api"]["concurrency_limit"] is None


def test_pause_and_resume_name_the_user_in_the_audit(api):
    engine.enqueue(name="a", type="count", queue="mail")
    response = api.post("/api/queues/mail/pause")
    assert response.status_code == 200 and response.json()["paused"] is True
    assert api.post("/api/queues/mail/resume/").json()["paused"] is False
    assert list(AuditEntry.objects.values_list("action", "actor")) == [
        ("queue_paused", "olga via the API"), ("queue_resumed", "olga via the API")]


def test_patch_sets_one_limit_and_keeps_the_other(api):
    patch(api, "/api/queues/api", {"concurrency_limit": 3, "rate_limit": 2.5})
    body = patch(api, "/api/queues/api", {"rate_limit": None}).json()
    assert (body["concurrency_limit"], body["rate_limit"]) == (3, None)


@pytest.mark.parametrize("data,field", [
    ({"concurrency_limit": 0}, "concurrency_limit"),
    ({"concurrency_limit": "lots"}, "concurrency_limit"),
    ({"rate_limit": -2}, "rate_limit"),
    ({"rate_limit": True}, "rate_limit"),
    ({"paused": True}, "paused"),
    ({}, "non_field_errors"),
    ([1], "non_field_errors"),
])
def test_bad_limits_are_a_400_naming_the_field_and_change_nothing(api, data, field):
    response = patch(api, "/api/queues/api", data)
    assert response.status_code == 400
    assert field in response.json()
    assert not Queue.objects.exists() and not AuditEntry.objects.exists()


def test_an_unknown_queue_is_404_and_a_bad_name_never_reaches_the_engine(api):
    assert api.get("/api/queues/nothing-here").status_code == 404
    assert api.post("/api/queues/bad%20name/pause").status_code == 404
    assert not Queue.objects.exists()


def test_permissions(client):
    assert client.get("/api/queues").status_code == 401
    viewer = _api(authz.VIEW_QUEUE, username="vic")
    assert viewer.get("/api/queues").status_code == 200
    response = viewer.post("/api/queues/mail/pause")
    assert response.status_code == 403 and "tasks.change_queue" in response.json()["detail"]
    assert _api(authz.VIEW, username="tess").get("/api/queues").status_code == 403
    assert not Queue.objects.exists()
