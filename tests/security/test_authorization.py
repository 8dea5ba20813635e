"""Who may do what, tried as an attacker would against a live server: a non-staff token
holder, a staff user without permissions and an anonymous client (tasks.authz)."""

from __future__ import annotations

import io

import pytest
import requests
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tasks import engine
from tasks.models import Origin, Status, Task
from tests.factories import UserFactory
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    """A token holder talking to the live server over HTTP."""

    def __init__(self, base: str, token: str | None):
        self.base = base
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=10, allow_redirects=False)

    def post(self, path: str, body=None) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=10,
                                 allow_redirects=False)


def token_for(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def people(live_server):
    """alice and mallory: ordinary clients (own tasks, every type); ops: an operator;
    nobody: a token without permissions; staff: staff without permissions."""
    alice = grant(UserFactory(username="alice"), *users.CLIENT)
    mallory = grant(UserFactory(username="mallory"), *users.CLIENT)
    ops = grant(UserFactory(username="ops"), *users.OPERATOR)
    nobody = UserFactory(username="nobody")
    staff = UserFactory(username="staffer", is_staff=True)
    return {name: (user, Api(live_server.url, token_for(user)))
            for name, user in [("alice", alice), ("mallory", mallory), ("ops", ops),
                               ("nobody", nobody), ("staff", staff)]} | {
        "anonymous": (None, Api(live_server.url, None))}


def test_a_user_sees_and_steers_only_their_own_tasks(people):
    _, alice = people["alice"]
    _, mallory = people["mallory"]
    secret = alice.post("/api/tasks", {"name": "payroll", "type": "noop",
                                       "payload": {"iban": "DE00 1234"}}).json()
    failed = alice.post("/api/tasks", {"name": "x", "type": "noop"}).json()
    engine.cancel(failed["id"])
    mine = mallory.post("/api/tasks", {"name": "mine", "type": "noop"}).json()

    listed = mallory.get("/api/tasks").json()
    assert [t["id"] for t in listed["results"]] == [mine["id"]]
    assert "DE00" not in mallory.get("/api/tasks?q=payroll").text
    for path in (f"/api/tasks/{secret['id']}", f"/api/tasks/{secret['id']}/history"):
        response = mallory.get(path)
        assert response.status_code == 404, path
        assert "DE00" not in response.text
    assert mallory.post(f"/api/tasks/{secret['id']}/cancel").status_code == 404
    assert mallory.post(f"/api/tasks/{failed['id']}/retry").status_code == 404
    assert Task.objects.get(pk=secret["id"]).status == Status.QUEUED
    assert Task.objects.get(pk=failed["id"]).status == Status.CANCELLED
    stats = mallory.get("/api/stats").json()
    assert stats["total_tasks"] == 1 and stats["by_type"] == {"noop": 1}

    # The owner and an operator see it; the owner's record says who and from where.
    assert alice.get(f"/api/tasks/{secret['id']}").json()["payload"] == {"iban": "DE00 1234"}
    body = people["ops"][1].get(f"/api/tasks/{secret['id']}").json()
    assert (body["owner"], body["origin"]) == (people["alice"][0].pk, Origin.API)
    assert people["ops"][1].get("/api/stats").json()["total_tasks"] == 3
    assert people["ops"][1].post(f"/api/tasks/{secret['id']}/cancel").status_code == 200


@pytest.mark.parametrize("who", ["nobody", "staff"])
def test_without_permissions_nothing_is_allowed(people, who):
    task = engine.enqueue(name="someone's", type="noop")
    _, api = people[who]
    assert api.get("/api/tasks").status_code == 403
    assert api.get("/api/stats").status_code == 403
    assert api.get(f"/api/tasks/{task.pk}").status_code == 403
    response = api.post("/api/tasks", {"name": "x", "type": "noop"})
    assert response.status_code == 403
    assert "tasks.add_task" in response.json()["detail"]
    assert api.post(f"/api/tasks/{task.pk}/cancel").status_code == 403
    assert Task.objects.count() == 1
    assert Task.objects.get(pk=task.pk).status == Status.QUEUED


def test_anonymous_is_refused_everywhere(people):
    _, anon = people["anonymous"]
    task = engine.enqueue(name="t", type="noop")
    for response in (anon.get("/api/tasks"), anon.get(f"/api/tasks/{task.pk}"),
                     anon.get("/api/stats"), anon.post("/api/tasks", {"name": "x",
                                                                      "type": "noop"}),
                     anon.post(f"/api/tasks/{task.pk}/cancel")):
        assert response.status_code == 401
    assert Task.objects.count() == 1


def test_each_type_needs_its_own_permission(people, live_server):
    user = grant(UserFactory(username="mailer"), "add_task", "view_task",
                 "enqueue_type_noop")
    api = Api(live_server.url, token_for(user))
    assert api.post("/api/tasks", {"name": "ok", "type": "noop"}).status_code == 201
    refused = api.post("/api/tasks", {"name": "sql", "type": "run_query",
                                      "payload": {"sql": "SELECT 1"}})
    assert refused.status_code == 403
    assert "'run_query'" in refused.json()["detail"]
    bulk = api.post("/api/tasks", [{"name": "a", "type": "noop"},
                                   {"name": "b", "type": "simulate"},
                                   {"name": "c", "type": "run_query"}])
    assert bulk.status_code == 403
    assert "'simulate'" in bulk.json()["detail"] and "'run_query'" in bulk.json()["detail"]
    assert Task.objects.count() == 1
    # An unknown type is still the queue's 400 naming the known ones.
    assert api.post("/api/tasks", {"name": "?", "type": "nope"}).status_code == 400


def test_an_idempotency_key_cannot_be_squatted_by_another_user(people):
    _, alice = people["alice"]
    _, mallory = people["mallory"]
    spec = {"name": "invoice", "type": "noop", "idempotency_key": "invoice-2026-001"}
    squat = mallory.post("/api/tasks", {**spec, "name": "squatted"})
    assert squat.status_code == 201
    created = alice.post("/api/tasks", spec)
    assert created.status_code == 201
    assert created.json()["id"] != squat.json()["id"]
    assert alice.post("/api/tasks", spec).json()["id"] == created.json()["id"]
    conflict = alice.post("/api/tasks", {**spec, "priority": 9})
    assert conflict.status_code == 409
    assert conflict.json()["task_id"] == created.json()["id"]
    assert Task.objects.count() == 2


def test_the_admin_and_the_api_agree(people, client):
    alice_user, alice = people["alice"]
    _, mallory = people["mallory"]
    grant(alice_user, "view_task")
    alice_user.is_staff = True
    alice_user.save()
    own = alice.post("/api/tasks", {"name": "alice's own", "type": "noop"}).json()
    other = mallory.post("/api/tasks", {"name": "mallory's", "type": "noop"}).json()
    client.force_login(alice_user)

    listing = client.get("/admin/tasks/task/").content.decode()
    assert "alice&#x27;s own" in listing and "mallory" not in listing
    assert client.get(f"/admin/tasks/task/{own['id']}/change/").status_code == 200
    assert client.get(f"/admin/tasks/task/{other['id']}/change/").status_code == 302
    assert alice.get(f"/api/tasks/{other['id']}").status_code == 404
    cancel = client.post(f"/admin/tasks/task/{other['id']}/cancel/")
    assert cancel.status_code == 404
    bulk = client.post("/admin/tasks/task/", {"action": "cancel_selected", "post": "yes",
                                              "_selected_action": [other["id"], own["id"]]})
    assert bulk.status_code == 302
    assert Task.objects.get(pk=other["id"]).status == Status.QUEUED
    assert Task.objects.get(pk=own["id"]).status == Status.CANCELLED
    dashboard = client.get("/admin/dashboard/")
    assert dashboard.status_code == 200
    assert dashboard.context["data"]["snapshot"]["counts"]["cancelled"] == 1
    assert dashboard.context["data"]["snapshot"]["counts"]["queued"] == 0


def test_staff_without_view_permission_gets_no_dashboard(people, client):
    client.force_login(people["staff"][0])
    assert client.get("/admin/dashboard/").status_code == 403
    assert client.get("/admin/tasks/task/").status_code == 403


def test_the_admin_add_form_offers_only_permitted_types_and_records_the_owner(client):
    user = grant(UserFactory(username="clerk", is_staff=True), "add_task", "view_task",
                 "enqueue_type_noop")
    client.force_login(user)
    page = client.get("/admin/tasks/task/add/").content.decode()
    assert 'value="noop"' in page and 'value="run_query"' not in page
    base = {"name": "by hand", "payload": "{}", "priority": 0, "queue": "default"}
    refused = client.post("/admin/tasks/task/add/", {**base, "type": "run_query"})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not Task.objects.exists()
    assert client.post("/admin/tasks/task/add/", {**base, "type": "noop"}).status_code == 302
    task = Task.objects.get()
    assert (task.owner_id, task.origin) == (user.pk, Origin.ADMIN)


def test_origin_is_recorded_for_python_and_the_cli():
    assert engine.enqueue(name="py", type="noop").origin == Origin.PYTHON
    call_command("task", "create", "cli", "-t", "noop", stdout=io.StringIO())
    assert Task.objects.get(name="cli").origin == Origin.CLI


def test_createtoken_grants_exactly_the_named_permissions(capsys):
    call_command("createtoken", "billing", "--create-user", "--permission", "view", "add",
                 "--type", "send_email")
    key = capsys.readouterr().out.strip()
    user = Token.objects.get(key=key).user
    assert user.has_perm("tasks.add_task") and user.has_perm("tasks.view_task")
    assert user.has_perm("tasks.enqueue_type_send_email")
    assert not user.has_perm("tasks.enqueue_type_run_query")
    assert not user.has_perm("tasks.view_all_tasks") and not user.is_staff
    with pytest.raises(CommandError, match="Unknown permission 'fly'"):
        call_command("createtoken", "billing", "--permission", "fly")
    with pytest.raises(CommandError, match="Unknown type 'teleport'"):
        call_command("createtoken", "billing", "--type", "teleport")


@pytest.fixture
def throttle_rates():
    """Set the API's throttle rates for one test; DRF reads them once per class."""
    from django.conf import settings
    from django.core.cache import cache
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    def apply(rates: dict) -> None:
        SimpleRateThrottle.THROTTLE_RATES = rates
        cache.clear()

    yield apply
    apply(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"])
    assert api_settings.DEFAULT_THROTTLE_RATES == SimpleRateThrottle.THROTTLE_RATES


def test_the_api_is_throttled(people, throttle_rates):
    throttle_rates({"anon": "2/min", "user": "3/min"})
    _, alice = people["alice"]
    codes = [alice.get("/api/tasks").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert "Request was throttled" in alice.get("/api/tasks").json()["detail"]
    assert people["mallory"][1].get("/api/tasks").status_code == 200  # per user


def test_admin_log_in_is_locked_after_repeated_failures(live_server):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.com", "right-pw-123456")
    session = requests.Session()
    url = live_server.url + "/admin/login/"

    def attempt(password: str) -> requests.Response:
        session.get(url, timeout=10)
        return session.post(url, data={
            "username": "root", "password": password, "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": url}, timeout=10, allow_redirects=False)

    for _ in range(4):
        assert attempt("wrong").status_code == 200  # the form again, with its error
    assert attempt("wrong").status_code == 429  # the fifth failure locks
    locked = attempt("right-pw-123456")
    assert locked.status_code == 429
    assert "sessionid" not in session.cookies
