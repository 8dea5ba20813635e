"""Dependencies and workflows at the edges: the REST API, the CLI, the admin, and the
Python chain/group helpers, against the real database."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import engine
from tasks.models import Task, TaskDependency, Workflow
from tasks.states import Status
from tasks.workflows import chain, group
from tests.factories import UserFactory
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def alice():
    return grant(UserFactory(username="alice"), *users.CLIENT)


@pytest.fixture
def api(alice) -> APIClient:
    return client_for(alice)


def post(api: APIClient, url: str, data):
    return api.post(url, data=json.dumps(data), content_type="application/json")


def task(name: str, **extra) -> dict:
    return {"name": name, "type": "simulate", **extra}


# --- API -------------------------------------------------------------------------------


def test_api_creates_a_task_that_waits_for_its_parent_and_shows_its_parents(api):
    parent = post(api, "/api/tasks", task("parent")).json()
    response = post(api, "/api/tasks", task("child", depends_on=[parent["id"]],
                                            on_parent_failure="run"))
    assert response.status_code == 201, response.json()
    child = response.json()
    assert (child["status"], child["depends_on"], child["on_parent_failure"]) == (
        "waiting", [parent["id"]], "run")
    shown = api.get(f"/api/tasks/{child['id']}").json()
    assert shown["depends_on"] == [parent["id"]] and shown["progress"] is None
    listed = api.get("/api/tasks").json()["results"]
    assert {t["status"] for t in listed} == {"queued", "waiting"}


def test_api_bulk_creates_a_graph_by_position(api):
    response = post(api, "/api/tasks", [task("a"), task("b", after=[0]), task("c", after=[0]),
                                        task("d", after=[1, 2])])
    assert response.status_code == 201, response.json()
    a, b, c, d = response.json()
    assert [t["status"] for t in (a, b, c, d)] == ["queued", "waiting", "waiting", "waiting"]
    assert d["depends_on"] == [b["id"], c["id"]]


@pytest.mark.parametrize(("body", "errors"), [
    (task("x", depends_on=[987654321]), {"depends_on": ["Task 987654321 does not exist."]}),
    (task("x", depends_on="7"), {"depends_on": ["Must be a list."]}),
    (task("x", on_parent_failure="later"),
     {"on_parent_failure": ["Must be one of 'fail', 'run'."]}),
    ([task("a", after=[1]), task("b")],
     {"0": {"after": ["Position 1 is not an earlier task of this request."]}}),
])
def test_api_bad_dependencies_are_400_naming_the_field_and_write_nothing(api, body, errors):
    response = post(api, "/api/tasks", body)
    assert response.status_code == 400
    assert response.json() == errors
    assert Task.objects.count() == 0


def test_api_another_users_task_cannot_be_a_parent(api):
    bob = grant(UserFactory(username="bob"), *users.CLIENT)
    his = post(client_for(bob), "/api/tasks", task("his")).json()
    response = post(api, "/api/tasks", task("mine", depends_on=[his["id"]]))
    assert response.status_code == 400
    assert response.json() == {"depends_on": [f"Task {his['id']} does not exist."]}
    assert TaskDependency.objects.count() == 0


def test_api_workflow_is_created_and_listed_with_statuses_and_parents(api):
    response = post(api, "/api/workflows", {"name": "pipeline", "steps": [
        task("fetch"), task("left", after=[0]), task("right", after=[0]),
        task("join", after=[1, 2])]})
    assert response.status_code == 201, response.json()
    body = response.json()
    workflow = api.get(f"/api/workflows/{body['id']}").json()
    assert workflow["name"] == "pipeline" and workflow["id"] == body["id"]
    steps = workflow["tasks"]
    assert [(s["name"], s["status"]) for s in steps] == [
        ("fetch", "queued"), ("left", "waiting"), ("right", "waiting"), ("join", "waiting")]
    ids = [s["id"] for s in steps]
    assert [s["depends_on"] for s in steps] == [[], [ids[0]], [ids[0]], [ids[1], ids[2]]]
    assert set(Task.objects.filter(workflow_id=body["id"]).values_list("pk", flat=True)) \
        == set(ids)


@pytest.mark.parametrize(("body", "field"), [
    ({"steps": []}, "steps"),
    ({"steps": [task("a"), task("b", after=[5])]}, "steps"),
    ({"steps": [{"name": "a", "type": "nope"}]}, "steps"),
    ({"name": "x" * 300, "steps": [task("a")]}, "name"),
])
def test_api_bad_workflows_are_400_and_write_nothing(api, body, field):
    response = post(api, "/api/workflows", body)
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert (Workflow.objects.count(), Task.objects.count()) == (0, 0)


def test_api_workflows_of_others_are_404(api):
    bob = grant(UserFactory(username="bob"), *users.CLIENT)
    his = post(client_for(bob), "/api/workflows", {"steps": [task("a")]}).json()
    assert api.get(f"/api/workflows/{his['id']}").status_code == 404
    assert api.get("/api/workflows/nope").status_code == 404


# --- CLI -------------------------------------------------------------------------------


def task_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("task", *args, stdout=out)
    return out.getvalue()


def test_cli_creates_a_task_with_dependencies_and_get_shows_them():
    a = engine.enqueue(name="a", type="simulate")
    b = engine.enqueue(name="b", type="simulate")
    body = json.loads(task_cmd("create", "c", "-t", "simulate", "--depends-on", f"{a.pk}",
                               "--depends-on", f"{b.pk}", "--on-parent-failure", "run",
                               "-o", "json"))
    assert (body["status"], body["depends_on"], body["on_parent_failure"]) == (
        "waiting", [a.pk, b.pk], "run")
    table = [line.split(None, 1) for line in task_cmd("get", "--id", str(body["id"]))
             .splitlines()]
    assert ["depends_on", f"[{a.pk}, {b.pk}]"] in table


@pytest.mark.parametrize(("value", "message"), [
    ("x", "--depends-on: 'x' is not a task id."),
    ("987654321", "depends_on: Task 987654321 does not exist."),
])
def test_cli_bad_parents_are_a_command_error(value, message):
    with pytest.raises(CommandError, match=message):
        task_cmd("create", "c", "-t", "simulate", "--depends-on", value)
    assert Task.objects.count() == 0


# --- Python helpers --------------------------------------------------------------------


def test_chain_and_group_store_a_workflow_in_step_order():
    workflow, (a, b, c, d) = chain(
        task("a"), group([task("b"), task("c")]), task("d")).enqueue(name="shape")
    assert Workflow.objects.get(pk=workflow.pk).name == "shape"
    assert (a.status, b.status, c.status, d.status) == (
        Status.QUEUED, Status.WAITING, Status.WAITING, Status.WAITING)
    edges = set(TaskDependency.objects.values_list("child_id", "parent_id"))
    assert edges == {(b.pk, a.pk), (c.pk, a.pk), (d.pk, b.pk), (d.pk, c.pk)}


# --- admin -----------------------------------------------------------------------------


def test_admin_add_form_takes_parents_and_refuses_unknown_ones(admin_client):
    parent = engine.enqueue(name="parent", type="simulate")
    form = {"name": "child", "type": "simulate", "payload": "{}", "priority": 0,
            "queue": "default", "on_parent_failure": "fail"}
    response = admin_client.post("/admin/tasks/task/add/", {**form, "depends_on": "987654321"})
    assert response.status_code == 200
    assert "Task 987654321 does not exist." in response.content.decode()
    response = admin_client.post("/admin/tasks/task/add/",
                                 {**form, "depends_on": f"{parent.pk}"}, follow=True)
    child = Task.objects.get(name="child")
    assert child.status == Status.WAITING
    assert "is waiting for its parents" in response.content.decode()
    page = admin_client.get(f"/admin/tasks/task/{parent.pk}/change/").content.decode()
    assert f"/admin/tasks/task/{child.pk}/change/" in page  # listed under "runs before"


def test_admin_shows_a_workflows_steps_with_their_parents(admin_client):
    workflow, (a, b) = chain(task("first"), task("second")).enqueue(name="two steps")
    page = admin_client.get(f"/admin/tasks/workflow/{workflow.pk}/change/").content.decode()
    assert "first" in page and "second" in page and "two steps" in page
    assert page.count(f"/admin/tasks/task/{a.pk}/change/") == 2  # its row, and b's parent
    task_page = admin_client.get(f"/admin/tasks/task/{b.pk}/change/").content.decode()
    assert f"/admin/tasks/workflow/{workflow.pk}/change/" in task_page
