"""The API's contract as documented: the OpenAPI document, a person's retry and run_at,
the 413 that names our setting, and the README's Python example."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import engine
from tasks.models import Task, Worker
from tests.factories import TaskFactory, UserFactory
from tests.support import users
from tests.support.processes import ROOT, wait_until
from tests.support.users import grant


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_operation_ids_read_as_verbs_and_ids_are_integers(schema):
    ids = {(method.upper(), path): op["operationId"]
           for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert ids == {
        ("GET", "/api/stats/"): "stats_get", ("GET", "/api/tasks/"): "tasks_list",
        ("POST", "/api/tasks/"): "tasks_create", ("GET", "/api/tasks/{id}/"): "tasks_get",
        ("POST", "/api/tasks/{id}/cancel/"): "tasks_cancel",
        ("GET", "/api/tasks/{id}/history/"): "tasks_history",
        ("POST", "/api/tasks/{id}/retry/"): "tasks_retry",
        ("GET", "/health"): "health", ("GET", "/metrics"): "metrics",
        ("GET", "/api/queues/"): "queues_list", ("GET", "/api/queues/{name}/"): "queues_get",
        ("PATCH", "/api/queues/{name}/"): "queues_update",
        ("POST", "/api/queues/{name}/pause/"): "queues_pause",
        ("POST", "/api/queues/{name}/resume/"): "queues_resume",
        ("GET", "/api/schedules/"): "schedules_list",
        ("POST", "/api/schedules/"): "schedules_create",
        ("GET", "/api/schedules/{id}/"): "schedules_get",
        ("PATCH", "/api/schedules/{id}/"): "schedules_update",
        ("DELETE", "/api/schedules/{id}/"): "schedules_delete",
        ("POST", "/api/schedules/{id}/pause/"): "schedules_pause",
        ("POST", "/api/schedules/{id}/resume/"): "schedules_resume",
        ("POST", "/api/schedules/{id}/run-now/"): "schedules_run_now",
        ("POST", "/api/workflows/"): "workflows_create",
        ("GET", "/api/workflows/{id}/"): "workflows_get",
    }
    for path, ops in schema["paths"].items():
        for op in ops.values():
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    assert parameter["schema"]["type"] == "integer", path


def test_create_requires_name_and_type_and_a_400_is_typed(schema):
    components = schema["components"]["schemas"]
    assert components["TaskCreateRequest"]["required"] == ["name", "type"]
    bad = schema["paths"]["/api/tasks/"]["post"]["responses"]["400"]
    assert bad["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FieldErrors"}
    assert components["FieldErrors"]["type"] == "object"


def test_every_400_in_the_document_is_typed_as_field_errors(schema):
    bad = {(method.upper(), path): op["responses"]["400"]
           for path, ops in schema["paths"].items() for method, op in ops.items()
           if "400" in op.get("responses", {})}
    assert {("PATCH", "/api/queues/{name}/"), ("POST", "/api/queues/{name}/pause/"),
            ("POST", "/api/schedules/"), ("PATCH", "/api/schedules/{id}/"),
            ("POST", "/api/schedules/{id}/run-now/"), ("POST", "/api/tasks/")} <= set(bad)
    untyped = {where: response.get("content") for where, response in bad.items()
               if response.get("content") != {"application/json": {
                   "schema": {"$ref": "#/components/schemas/FieldErrors"}}}}
    assert untyped == {}
    assert all(response["description"] for response in bad.values())


def test_filters_and_the_page_size_cap_are_documented(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/tasks/"]["get"]["parameters"]}
    assert "comma-separate" in parameters["status"]["description"]
    assert "at most 500" in parameters["page_size"]["description"]
    listing = schema["paths"]["/api/tasks/"]["get"]["responses"]["200"]["content"]
    ref = listing["application/json"]["schema"]["$ref"].rpartition("/")[2]
    envelope = schema["components"]["schemas"][ref]
    assert set(envelope["required"]) == {"count", "page", "page_size", "next", "previous",
                                         "results"}


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    token = Token.objects.create(user=grant(UserFactory(), *users.OPERATOR))
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.mark.django_db
def test_a_retry_keeps_a_future_run_at_unless_asked_to_run_now(api):
    later = timezone.now() + datetime.timedelta(hours=2)
    kept = TaskFactory(failed=True, run_at=later)
    now = TaskFactory(failed=True, run_at=later)
    past = TaskFactory(failed=True, run_at=timezone.now() - datetime.timedelta(hours=1))

    assert api.post(f"/api/tasks/{kept.pk}/retry").status_code == 200
    assert Task.objects.get(pk=kept.pk).run_at == later
    response = api.post(f"/api/tasks/{now.pk}/retry", {"run_now": True}, format="json")
    assert response.status_code == 200
    assert Task.objects.get(pk=now.pk).run_at <= timezone.now()
    engine.retry(past.pk)
    assert Task.objects.get(pk=past.pk).run_at > past.run_at  # due now, not in the past

    bad = api.post(f"/api/tasks/{kept.pk}/retry", {"run_now": "soon"}, format="json")
    assert bad.status_code == 400 and "run_now" in bad.json()


@pytest.mark.django_db
def test_djangos_own_body_limit_names_our_setting(api):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        response = api.post("/api/tasks", '{"name": "' + "y" * 4096 + '"}',
                            content_type="application/json")
    assert response.status_code == 413
    assert "TASKS_API_MAX_BODY_BYTES" in response.json()["detail"]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.process
def test_the_readme_python_example_runs_while_a_worker_runs(worker_factory, capsys):
    worker = worker_factory("--concurrency", "4", TASKS_POLL_INTERVAL="0.1")
    wait_until(lambda: Worker.objects.filter(pid=worker.pid).exists(), timeout=30)
    code = _readme_example()
    for _ in range(5):
        exec(compile(code, str(Path("README.md")), "exec"), {})  # noqa: S102
    assert Task.objects.filter(name="n1").count() == 5
