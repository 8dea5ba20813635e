"""The REST API against real PostgreSQL: every endpoint, filter and error of issue 3."""

from __future__ import annotations

import datetime
import json
import re

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import authz, engine
from tasks.conf import engine as engine_settings
from tasks.models import Task, TaskHistory, Worker
from tasks.worker import describe_error
from tests.factories import TaskFactory, UserFactory
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db

TASK_KEYS = {"id", "name", "type", "payload", "status", "priority", "queue", "retry_count",
             "max_retries", "last_error", "timeout_seconds", "run_at", "result", "locked_by",
             "created_at", "updated_at", "started_at", "finished_at"}


@pytest.fixture
def user():
    return grant(UserFactory(username="alice"), *users.OPERATOR)


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def post(api: APIClient, url: str, data) -> object:
    return api.post(url, data=json.dumps(data), content_type="application/json")


EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}


# --- authentication ------------------------------------------------------------------


def test_anonymous_requests_are_refused_and_write_nothing(client):
    assert client.get("/api/tasks").status_code == 401
    assert client.get("/api/stats").status_code == 401
    response = client.post("/api/tasks", {"name": "x", "type": "noop"},
                           content_type="application/json")
    assert response.status_code == 401
    assert "credentials" in response.json()["detail"]
    assert not Task.objects.exists()


def test_a_wrong_token_is_refused(client):
    response = client.get("/api/tasks", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_a_token_authenticates_its_own_user_with_their_permissions(client):
    user, other = grant(UserFactory(), *users.CLIENT), UserFactory()
    mine = Token.objects.create(user=user)
    Token.objects.create(user=other)
    TaskFactory(owner=other)
    response = client.get("/api/tasks", HTTP_AUTHORIZATION=f"Token {mine.key}")
    assert response.status_code == 200
    assert response.json()["results"] == []  # not the other user's task
    created = client.post("/api/tasks", {"name": "x", "type": "noop"},
                          content_type="application/json",
                          HTTP_AUTHORIZATION=f"Token {mine.key}")
    assert created.status_code == 201 and created.json()["owner"] == user.pk


def test_the_token_lookup_finds_what_drfs_finds(user):
    from rest_framework.authentication import TokenAuthentication as DrfTokenAuthentication

    from tasks.api.authentication import TokenAuthentication

    key = Token.objects.create(user=user).key
    (mine, my_token), (theirs, their_token) = (
        cls().authenticate_credentials(key)
        for cls in (TokenAuthentication, DrfTokenAuthentication))

    def fields(obj):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}

    assert fields(mine) == fields(theirs) and mine.pk == user.pk
    assert fields(my_token) == fields(their_token) and my_token.user is mine
    assert mine.has_perm(f"tasks.{authz.VIEW_ALL}") and theirs.has_perm(f"tasks.{authz.VIEW_ALL}")


def test_the_token_of_an_inactive_user_is_refused(client, user):
    token = Token.objects.create(user=user)
    user.is_active = False
    user.save()
    response = client.get("/api/tasks", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 401
    assert response.json() == {"detail": "User inactive or deleted."}


def test_a_deleted_token_is_refused_at_once(client, user):
    token = Token.objects.create(user=user)
    assert client.get("/api/tasks", HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200
    token.delete()
    response = client.get("/api/tasks", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_session_login_works_for_people(client, user):
    client.force_login(user)
    assert client.get("/api/tasks").status_code == 200


@override_settings(TASKS_API_ALLOW_ANONYMOUS=True)
def test_anonymous_access_only_when_the_operator_allows_it(client):
    response = client.post("/api/tasks", {"name": "x", "type": "noop"},
                           content_type="application/json")
    assert response.status_code == 201
    assert client.get("/api/stats").json()["total_tasks"] == 1


def test_check_deploy_warns_about_anonymous_access(capsys):
    with override_settings(TASKS_API_ALLOW_ANONYMOUS=True):
        call_command("check", "--deploy", "--tag", "security", fail_level="CRITICAL")
    assert "tasks_api.W001" in capsys.readouterr().err
    call_command("check", "--deploy", "--tag", "security", fail_level="CRITICAL")
    assert "tasks_api.W001" not in capsys.readouterr().err


# --- create ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/tasks", "/api/tasks/"])
def test_create_returns_the_full_queued_task(api, url):
    response = post(api, url, {"name": "welcome", "type": "send_email", "payload": EMAIL,
                               "priority": 5, "queue": "mail", "max_retries": 2,
                               "timeout_seconds": 30})
    assert response.status_code == 201, response.content
    body = response.json()
    assert TASK_KEYS <= set(body)
    assert body["status"] == "queued"
    assert (body["name"], body["type"], body["priority"], body["queue"]) == (
        "welcome", "send_email", 5, "mail")
    assert body["payload"]["to"] == ["bob@example.com"]  # the plugin's cleaned payload
    assert (body["max_retries"], body["timeout_seconds"], body["retry_count"]) == (2, 30, 0)
    task = Task.objects.get(pk=body["id"])
    assert task.status == "queued"
    assert list(task.history.values_list("event_type", flat=True)) == ["task_queued"]


def test_create_with_run_at_parses_the_datetime(api):
    when = (timezone.now() + datetime.timedelta(hours=1)).replace(microsecond=0)
    response = post(api, "/api/tasks", {"name": "later", "type": "noop",
                                        "run_at": when.isoformat()})
    assert response.status_code == 201
    assert Task.objects.get(pk=response.json()["id"]).run_at == when


def test_an_existing_idempotency_key_returns_the_existing_task_with_200(api):
    spec = {"name": "once", "type": "noop", "idempotency_key": "order-42"}
    first = post(api, "/api/tasks", spec)
    second = post(api, "/api/tasks", spec)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert Task.objects.count() == 1


def test_an_existing_idempotency_key_with_another_body_is_409_naming_the_task(api):
    spec = {"name": "once", "type": "noop", "idempotency_key": "order-42"}
    first = post(api, "/api/tasks", spec).json()
    response = post(api, "/api/tasks", {**spec, "name": "twice"})
    assert response.status_code == 409
    assert response.json()["task_id"] == first["id"]
    assert f"task {first['id']}" in response.json()["detail"]
    many = post(api, "/api/tasks", [{"name": "new", "type": "noop"}, {**spec, "priority": 5}])
    assert many.status_code == 409 and many.json()["task_id"] == first["id"]
    assert Task.objects.count() == 1


def test_a_key_repeated_inside_one_bulk_request_is_400(api):
    spec = {"name": "once", "type": "noop", "idempotency_key": "k"}
    response = post(api, "/api/tasks", [spec, {"name": "other", "type": "noop"}, spec])
    assert response.status_code == 400
    assert response.json() == {"2": {"idempotency_key": [
        "Repeats the key of task 0 in this request."]}}
    assert not Task.objects.exists()


def test_an_array_creates_many_tasks_in_order(api):
    specs = [{"name": f"t{i}", "type": "noop", "priority": i} for i in range(5)]
    response = post(api, "/api/tasks", specs)
    assert response.status_code == 201
    body = response.json()
    assert [t["name"] for t in body] == ["t0", "t1", "t2", "t3", "t4"]
    assert all(t["status"] == "queued" for t in body)
    assert Task.objects.count() == 5


def test_one_bad_task_in_an_array_rejects_the_batch_naming_its_index(api):
    specs = [{"name": "ok", "type": "noop"}, {"name": "bad", "type": "nope"},
             {"name": "bad too", "type": "noop", "priority": "high"}]
    response = post(api, "/api/tasks", specs)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"1", "2"}
    assert "Known types" in body["1"]["type"][0]
    assert "priority" in body["2"]
    assert not Task.objects.exists()


def test_an_empty_array_is_a_bad_request(api):
    response = post(api, "/api/tasks", [])
    assert response.status_code == 400
    assert "at least one" in response.json()["non_field_errors"][0]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"type": "noop"}, "name", "Required"),
        ({"name": "x"}, "type", "Required"),
        ({"name": "", "type": "noop"}, "name", "Required"),
        ({"name": "x", "type": "nope"}, "type", "Known types: "),
        ({"name": "x", "type": "noop", "priority": 1001}, "priority", "between -1000 and 1000"),
        ({"name": "x", "type": "noop", "priority": -5000}, "priority", "between -1000 and 1000"),
        ({"name": "x", "type": "noop", "priority": "high"}, "priority", "valid integer"),
        ({"name": "x", "type": "noop", "timeout_seconds": 0}, "timeout_seconds", "between 1"),
        ({"name": "x", "type": "noop", "timeout_seconds": 10**9}, "timeout_seconds", "between"),
        ({"name": "x", "type": "noop", "max_retries": -1}, "max_retries", "between 0"),
        ({"name": "x", "type": "noop", "queue": "no spaces"}, "queue", "letters"),
        ({"name": "x", "type": "noop", "payload": [1, 2]}, "payload", "JSON object"),
        ({"name": "x", "type": "noop", "run_at": "tomorrow"}, "run_at", "format"),
        ({"name": "x\x00", "type": "noop"}, "name", "contains a NUL character"),
        ({"name": "x", "type": "noop", "colour": "red"}, "colour", "Unknown field"),
    ],
)
def test_bad_fields_are_400_naming_the_field_and_write_nothing(api, body, field, words):
    response = post(api, "/api/tasks", body)
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert words in " ".join(errors[field]), errors
    assert not Task.objects.exists()


def test_an_unknown_type_lists_the_known_ones(api):
    response = post(api, "/api/tasks", {"name": "x", "type": "nope"})
    message = response.json()["type"][0]
    for known in ("send_email", "run_query", "simulate"):
        assert known in message


def test_a_payload_the_plugin_rejects_returns_the_plugins_field_errors(api):
    response = post(api, "/api/tasks", {"name": "x", "type": "send_email",
                                        "payload": {"to": "not-an-address", "body": "b"}})
    assert response.status_code == 400
    errors = response.json()["payload"]
    assert "not-an-address" in errors["to"][0]
    assert "subject" in errors
    assert not Task.objects.exists()


def test_an_oversized_payload_names_the_documented_limit(api):
    limit = engine_settings().MAX_PAYLOAD_BYTES
    response = post(api, "/api/tasks", {"name": "x", "type": "noop",
                                        "payload": {"blob": "a" * (limit + 10)}})
    assert response.status_code == 400
    assert f"the limit is {limit} bytes" in response.json()["payload"][0]
    assert not Task.objects.exists()


@override_settings(TASKS_API_MAX_BODY_BYTES=2048)
def test_a_body_over_the_request_limit_is_413_naming_the_limit(api):
    response = post(api, "/api/tasks", {"name": "x", "type": "noop",
                                        "payload": {"blob": "a" * 5000}})
    assert response.status_code == 413
    assert "the limit is 2048 bytes" in response.json()["detail"]
    assert not Task.objects.exists()


def test_malformed_json_is_400_with_a_message(api):
    response = api.post("/api/tasks", data='{"name": "x", ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not Task.objects.exists()


@pytest.mark.parametrize("body", ['"just a string"', "42", "null", "[1, 2]"])
def test_json_that_is_not_a_task_is_400(api, body):
    response = api.post("/api/tasks", data=body, content_type="application/json")
    assert response.status_code == 400
    assert not Task.objects.exists()


def test_a_wrong_content_type_is_415(api):
    response = api.post("/api/tasks", data="name=x&type=noop",
                        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["detail"]
    assert not Task.objects.exists()


@pytest.mark.parametrize(("method", "url"), [
    ("delete", "/api/tasks/1"), ("put", "/api/tasks/1"), ("patch", "/api/tasks"),
    ("get", "/api/tasks/1/cancel"), ("post", "/api/stats"),
])
def test_unsupported_methods_are_405(api, method, url):
    task = TaskFactory()
    response = getattr(api, method)(url.replace("/1", f"/{task.pk}"),
                                    content_type="application/json")
    assert response.status_code == 405
    assert "not allowed" in response.json()["detail"]


# --- read ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_get_one_task(api, suffix):
    task = engine.enqueue(name="one", type="noop")
    response = api.get(f"/api/tasks/{task.pk}{suffix}")
    assert response.status_code == 200
    assert response.json()["id"] == task.pk
    assert TASK_KEYS <= set(response.json())


@pytest.mark.parametrize("task_id", ["999999", "abc", "99999999999999999999", "-1", "1.5", "0"])
@pytest.mark.parametrize("suffix", ["", "/history", "/cancel", "/retry"])
def test_unknown_or_non_integer_ids_are_404(api, task_id, suffix):
    url = f"/api/tasks/{task_id}{suffix}"
    response = api.post(url) if suffix in ("/cancel", "/retry") else api.get(url)
    assert response.status_code == 404, response.content
    assert "not found" in response.json()["detail"].lower()


def test_unknown_api_paths_are_json_404(api):
    response = api.get("/api/nothing/here")
    assert response.status_code == 404
    assert "No API endpoint" in response.json()["detail"]


def test_history_is_a_plain_array_oldest_first(api):
    task = engine.enqueue(name="h", type="noop")
    engine.cancel(task.pk, reason="testing")
    response = api.get(f"/api/tasks/{task.pk}/history")
    assert response.status_code == 200
    rows = response.json()
    assert [r["event_type"] for r in rows] == ["task_queued", "task_cancelled"]
    assert set(rows[0]) == {"id", "task_id", "status", "event_type", "attempt", "worker_id",
                            "details", "error_class", "error_message", "traceback",
                            "created_at"}
    assert rows[0]["task_id"] == task.pk
    assert rows[1]["status"] == "cancelled"
    assert rows[1]["details"] == "testing"
    assert rows[1]["error_class"] == rows[1]["traceback"] == ""  # no run ended


def test_history_shows_a_failed_runs_error_as_data(api):
    task = engine.enqueue(name="h", type="noop", max_retries=0)
    [claimed] = engine.claim(worker_id="w-1", limit=1)
    try:
        {}["missing"]
    except KeyError as exc:
        fields = describe_error(exc)
    engine.fail(worker_id="w-1", outcomes=[engine.Outcome(
        task_id=claimed.id, attempt=claimed.attempt, **fields)])
    rows = api.get(f"/api/tasks/{task.pk}/history").json()
    failed = rows[-1]
    assert failed["event_type"] == "task_failed"
    assert failed["error_class"] == "builtins.KeyError"
    assert failed["error_message"] == "'missing'"
    assert failed["traceback"].startswith("Traceback (most recent call last)")


# --- list and filters ------------------------------------------------------------------


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [t["id"] for t in response.json()["results"]]


def test_list_is_paginated(api):
    TaskFactory.create_batch(7)
    body = api.get("/api/tasks?page_size=3&page=2").json()
    assert body["count"] == 7
    assert len(body["results"]) == 3
    assert (body["page"], body["page_size"]) == (2, 3)
    assert body["next"] == "/api/tasks?page=3&page_size=3"
    assert body["previous"] == "/api/tasks?page_size=3"
    # Past the end: an empty page that links back to the last one, not an error.
    past = api.get("/api/tasks?page_size=3&page=99")
    assert past.status_code == 200
    assert past.json() == {"count": 7, "page": 99, "page_size": 3, "next": None,
                           "previous": "/api/tasks?page=3&page_size=3", "results": []}
    assert api.get("/api/tasks?page=0").status_code == 404


def test_page_size_is_capped_at_500(api):
    TaskFactory.create_batch(501)
    assert len(api.get("/api/tasks?page_size=10000").json()["results"]) == 500


def test_filters(api):
    now = timezone.now()
    old = TaskFactory(name="old report", type="run_query", queue="reports", priority=-3,
                      created_at=now - datetime.timedelta(days=2))
    failed = TaskFactory(name="mail bob", type="send_email", queue="mail", failed=True,
                         priority=7)
    done = TaskFactory(name="mail carol", type="send_email", queue="mail", succeeded=True)
    queued = TaskFactory(name="sleepy", type="simulate")

    assert set(ids(api.get("/api/tasks?status=failed"))) == {failed.pk}
    assert set(ids(api.get("/api/tasks?status=failed&status=succeeded"))) == {failed.pk, done.pk}
    assert set(ids(api.get("/api/tasks?status=failed,queued"))) == {failed.pk, queued.pk, old.pk}
    assert set(ids(api.get("/api/tasks?type=send_email"))) == {failed.pk, done.pk}
    assert set(ids(api.get("/api/tasks?queue=reports"))) == {old.pk}
    assert set(ids(api.get("/api/tasks?priority=7"))) == {failed.pk}
    after = (now - datetime.timedelta(days=1)).isoformat()
    assert set(ids(api.get("/api/tasks", {"created_after": after}))) == {
        failed.pk, done.pk, queued.pk}
    assert set(ids(api.get("/api/tasks", {"created_before": after}))) == {old.pk}
    assert set(ids(api.get("/api/tasks?q=MAIL"))) == {failed.pk, done.pk}
    assert ids(api.get("/api/tasks?ordering=priority"))[0] == old.pk
    assert ids(api.get("/api/tasks?ordering=-priority"))[0] == failed.pk
    # Newest first by default.
    assert ids(api.get("/api/tasks"))[-1] == old.pk


@pytest.mark.parametrize("query", ["status=exploded", "priority=high", "created_after=yesterday",
                                   "ordering=password", "priority=99999999999999"])
def test_bad_filter_values_are_400_naming_the_filter(api, query):
    response = api.get(f"/api/tasks?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()


# --- cancel and retry ------------------------------------------------------------------


def test_cancel_a_queued_task(api):
    task = engine.enqueue(name="c", type="noop")
    response = api.post(f"/api/tasks/{task.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Task.objects.get(pk=task.pk).status == "cancelled"
    assert TaskHistory.objects.filter(task=task, event_type="task_cancelled").count() == 1


def test_cancel_a_finished_task_is_409(api):
    task = TaskFactory(succeeded=True)
    response = api.post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 409
    assert response.json() == {"detail": f"Cannot cancel task {task.pk}: it is succeeded.",
                               "status": "succeeded"}
    assert Task.objects.get(pk=task.pk).status == "succeeded"


def test_retry_a_failed_task(api):
    task = TaskFactory(failed=True)
    response = api.post(f"/api/tasks/{task.pk}/retry")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert TaskHistory.objects.get(task=task).event_type == "task_requeued"


def test_retry_a_queued_task_is_409(api):
    task = engine.enqueue(name="r", type="noop")
    response = api.post(f"/api/tasks/{task.pk}/retry")
    assert response.status_code == 409
    assert "Cannot retry" in response.json()["detail"]


# --- stats, health, schema ---------------------------------------------------------------


def test_stats(api):
    TaskFactory.create_batch(2, type="send_email", queue="mail")
    TaskFactory(failed=True, retry_count=2)
    TaskFactory(succeeded=True, retry_count=1, queue="mail")
    TaskFactory(succeeded=True, finished_at=timezone.now() - datetime.timedelta(minutes=5))
    Worker.objects.create(id="w1", hostname="h", pid=1, concurrency=2)
    Worker.objects.create(id="w2", hostname="h", pid=2, concurrency=2,
                          last_seen=timezone.now() - datetime.timedelta(hours=1))
    response = api.get("/api/stats/")
    assert response.status_code == 200
    assert response.json() == {
        "total_tasks": 5, "waiting_tasks": 0, "queued_tasks": 2, "running_tasks": 0,
        "retrying_tasks": 0, "succeeded_tasks": 2, "failed_tasks": 1, "cancelled_tasks": 0,
        "avg_retry_count": 0.6, "tasks_with_retries": 2,
        "by_type": {"send_email": 2, "simulate": 3},
        "by_queue": {"default": 2, "mail": 3},
        "workers_online": 1, "finished_last_minute": 2,
    }


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "database": "connected"}


def test_schema_and_docs_are_served_without_external_assets(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert {"/api/tasks/", "/api/tasks/{id}/", "/api/tasks/{id}/history/",
            "/api/tasks/{id}/cancel/", "/api/tasks/{id}/retry/", "/api/stats/"} <= set(paths)
    docs = api.get("/api/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
    assert "https://" not in html and "http://" not in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    for asset in assets:
        response = api.get(asset)
        assert response.status_code == 200, asset
        b"".join(response.streaming_content if response.streaming else [response.content])


def test_schema_needs_authentication(client):
    assert client.get("/api/schema/").status_code in (401, 403)
