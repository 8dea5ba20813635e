"""Hostile input through the real API, admin and CLI: a clear 400 (or form error, or
CommandError) naming the problem, nothing written, never a 500; pages of bounded size."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import engine, jsonsafe, states
from tasks.exceptions import InvalidTask
from tasks.models import Status, Task
from tests.factories import TaskFactory, UserFactory
from tests.support import processes, users
from tests.support.users import grant

CHANGELIST = reverse("admin:tasks_task_changelist")
ADD = reverse("admin:tasks_task_add")
DEPTH = jsonsafe.DEFAULT_MAX_DEPTH


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text: `depth` arrays, one inside the other."""
    return "[" * depth + leaf + "]" * depth


def deep_object(depth: int) -> dict:
    """A payload `depth` objects deep: {"a": {"a": ... {}}}."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    token = Token.objects.create(user=grant(UserFactory(username="attacker"), *users.OPERATOR))
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def post_raw(api: APIClient, body: str):
    return api.generic("POST", "/api/tasks", body.encode(), content_type="application/json")


def task_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("task", *args, stdout=out)
    return out.getvalue()


# --- the checker itself ------------------------------------------------------------------


def test_problem_names_the_path_of_the_first_problem():
    assert jsonsafe.problem({"a": {"b": [0, 1, 2, "\ud800"]}}, "payload") == (
        "payload.a.b[3]: contains an unpaired surrogate")
    assert jsonsafe.problem({"a": "x", "b": {"k\x00": 1}}, "payload") == (
        "payload.b.k\\u0000: the key contains a NUL character")
    assert jsonsafe.problem(deep_object(DEPTH), "payload") is None
    assert "nested deeper than 32 levels" in jsonsafe.problem(deep_object(DEPTH + 1), "p")
    # Paired surrogates decode to one character: that is fine text.
    assert jsonsafe.problem(json.loads(r'{"emoji": "\ud83d\ude00"}'), "payload") is None


def test_the_depth_scan_ignores_brackets_inside_strings():
    assert not jsonsafe.text_depth_exceeds(json.dumps({"s": "[" * 10_000}), 3)
    assert not jsonsafe.text_depth_exceeds(json.dumps({"s": '\\"[[[[[[' * 100}), 3)
    assert jsonsafe.text_depth_exceeds(nested(100_000), DEPTH)
    assert not jsonsafe.text_depth_exceeds(nested(DEPTH), DEPTH)


# --- API: surrogates, NULs, depth --------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field", "message"), [
    (r'{"name": "x", "type": "noop", "payload": {"a": "\ud800"}}', "payload",
     "payload.a: contains an unpaired surrogate"),
    (r'{"name": "x", "type": "noop", "payload": {"a": {"b": [0, 1, 2, "\udc00"]}}}', "payload",
     "payload.a.b[3]: contains an unpaired surrogate"),
    (r'{"name": "x", "type": "noop", "payload": {"\ud800k": 1}}', "payload",
     "payload.\\ud800k: the key contains an unpaired surrogate"),
    (r'{"name": "x", "type": "noop", "payload": {"k\u0000": 1}}', "payload",
     "payload.k\\u0000: the key contains a NUL character"),
    (r'{"name": "x\ud800", "type": "noop"}', "name", "name: contains an unpaired surrogate"),
    (r'{"name": "x", "type": "noop", "queue": "q\udfff"}', "queue",
     "queue: contains an unpaired surrogate"),
    (r'{"name": "x", "type": "noop", "idempotency_key": "\ud800"}', "idempotency_key",
     "idempotency_key: contains an unpaired surrogate"),
])
def test_api_unstorable_text_is_a_400_naming_the_field(api, body, field, message):
    response = post_raw(api, body)
    assert response.status_code == 400, response.content
    assert response.json() == {field: [message]}
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_api_bulk_names_the_index_and_writes_nothing(api):
    body = (r'[{"name": "ok", "type": "noop"}, '
            r'{"name": "x", "type": "noop", "payload": {"a": "\ud800"}}]')
    response = post_raw(api, body)
    assert response.status_code == 400
    assert response.json() == {"1": {"payload": ["payload.a: contains an unpaired surrogate"]}}
    assert Task.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [100_000, 3_000])
def test_api_very_deep_json_is_a_400_before_parsing(api, depth):
    in_payload = '{"name": "x", "type": "noop", "payload": {"a": ' + nested(depth) + "}}"
    for body in (nested(depth), in_payload):
        response = post_raw(api, body)
        assert response.status_code == 400, response.content[:200]
        assert "nested too deep" in response.json()["detail"]
        assert "TASKS_MAX_JSON_DEPTH" in response.json()["detail"]
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_api_a_payload_one_level_too_deep_names_the_path(api):
    ok = api.post("/api/tasks", {"name": "x", "type": "noop", "payload": deep_object(DEPTH)},
                  format="json")
    assert ok.status_code == 201
    response = api.post("/api/tasks", {"name": "y", "type": "noop",
                                       "payload": deep_object(DEPTH + 1)}, format="json")
    assert response.status_code == 400
    [message] = response.json()["payload"]
    assert message == "payload" + ".a" * DEPTH + ": nested deeper than 32 levels"
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_python_callers_get_invalid_task_for_the_same_problems():
    for payload, text in [({"a": "\ud800"}, "payload.a: contains an unpaired surrogate"),
                          ({"a\x00": 1}, "payload.a\\u0000: the key contains a NUL"),
                          (deep_object(500), "nested deeper than 32 levels")]:
        with pytest.raises(InvalidTask) as raised:
            engine.enqueue(name="x", type="noop", payload=payload)
        assert text in raised.value.errors["payload"][0]
    with pytest.raises(InvalidTask) as raised:
        engine.enqueue(name="x\udcff", type="noop")
    assert "unpaired surrogate" in raised.value.errors["name"][0]
    assert Task.objects.count() == 0


# --- API: search and filters -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["q=%C2%B2", "q=%E2%91%A0", "q=" + "9" * 5000,
                                   "q=99999999999999999999", "q=%F0%9F%98%80",
                                   "q=%ED%A0%80", "type=%C2%B2&queue=%C2%B2"])
def test_api_search_of_any_unicode_works(api, query):
    squared = TaskFactory(name="area m²")
    response = api.get(f"/api/tasks?{query}")
    assert response.status_code == 200, response.content[:300]
    expected = [squared.pk] if query == "q=%C2%B2" else []
    assert [t["id"] for t in response.json()["results"]] == expected


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["q", "queue", "type", "status", "priority", "ordering",
                                   "created_after", "created_before", "page", "page_size",
                                   "anything"])
def test_api_a_nul_in_any_query_value_or_name_is_a_400_naming_it(api, param):
    TaskFactory()
    response = api.get(f"/api/tasks?{param}=a%00b")
    assert response.status_code == 400
    assert response.json() == {param: ["The query parameter's value contains a NUL character."]}
    response = api.get(f"/api/tasks?{param}%00=1")
    assert response.status_code == 400
    assert "name contains a NUL character" in response.json()[f"{param}\\u0000"][0]


@pytest.mark.django_db
def test_the_filters_alone_refuse_unstorable_text():
    from tasks.api.filters import TaskFilter  # what the local CLI uses, without middleware

    for value in ("a\x00", "\ud800"):
        filterset = TaskFilter(data={"queue": value, "q": value}, queryset=Task.objects.all())
        assert not filterset.is_valid()
        assert set(filterset.errors) == {"queue", "q"}


@pytest.mark.django_db
@pytest.mark.parametrize("task_id", ["²", "9" * 5000, "99999999999999999999", "%00"])
def test_api_task_ids_that_cannot_be_are_404(api, task_id):
    for path in (f"/api/tasks/{task_id}", f"/api/tasks/{task_id}/history"):
        response = api.get(path)
        assert response.status_code == 404
        assert "not found" in response.json()["detail"]
    assert api.post(f"/api/tasks/{task_id}/cancel").status_code == 404
    assert states.parse_id("²") is None and states.parse_id("9" * 5000) is None


# --- API: list pages leave out payloads and results --------------------------------------


@pytest.mark.django_db
def test_api_lists_leave_out_payload_and_result_one_task_has_them(api):
    task = TaskFactory(succeeded=True, payload={"blob": "p" * 200_000},
                       result={"blob": "r" * 60_000})
    listing = api.get("/api/tasks?page_size=500")
    assert listing.status_code == 200
    [row] = listing.json()["results"]
    assert row["id"] == task.pk and "payload" not in row and "result" not in row
    assert len(listing.content) < 5_000
    one = api.get(f"/api/tasks/{task.pk}").json()
    assert one["payload"] == {"blob": "p" * 200_000}
    assert one["result"] == {"blob": "r" * 60_000}


# --- admin -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("payload", "message"), [
    (r'{"a": "\ud800"}', "payload.a: contains an unpaired surrogate"),
    (r'{"a": {"b\u0000": 1}}', "payload.a.b\\u0000: the key contains a NUL character"),
    (nested(100_000), "Nested too deep"),
    (nested(3_000), "Nested too deep"),
    (json.dumps(deep_object(DEPTH + 1)), "Nested too deep"),
])
def test_admin_add_form_names_the_problem_and_writes_nothing(admin_client, payload, message):
    response = admin_client.post(ADD, {"name": "x", "type": "noop", "payload": payload,
                                       "priority": "0", "queue": "default"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors["payload"]), errors
    assert len(response.content) < 2 * len(payload) + 200_000
    assert Task.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("query", [
    "q=%C2%B2", "q=%23%C2%B2", "q=" + "9" * 5000, "q=99999999999999999999", "q=%ED%A0%80",
    "type=%C2%B2", "queue=%C2%B2", "status__exact=%C2%B2", "created_at__year=%C2%B2",
    "created_at__year=2026&created_at__month=%C2%B2", "created_at__year=" + "9" * 5000,
    "created_at__year=9999", "created_at__year=2026&created_at__month=13",
    "created_at__year=2026&created_at__month=2&created_at__day=30",
    "created_at__gte=%C2%B2", "o=%C2%B2", "p=%C2%B2",
])
def test_admin_changelist_takes_any_unicode_without_a_500(admin_client, query):
    TaskFactory(name="area m²")
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code in (200, 302), (query, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["q", "queue", "type", "status__exact", "created_at__year",
                                   "created_at__gte", "o", "p", "e"])
def test_admin_a_nul_in_a_filter_or_search_is_a_400_page_naming_it(admin_client, param):
    TaskFactory()
    response = admin_client.get(f"{CHANGELIST}?{param}=%00")
    assert response.status_code == 400
    assert f"the query parameter '{param}': its value contains a NUL character" in (
        response.content.decode())


@pytest.mark.django_db
def test_admin_filters_and_search_alone_ignore_unstorable_text(admin_client, rf):
    from django.contrib.admin.sites import site

    from tasks.admin.filters import QueueFilter, TypeFilter

    model_admin = site._registry[Task]
    task = TaskFactory()
    request = rf.get(CHANGELIST)
    for value in ("a\x00", "\ud800"):
        for filter_class, param in ((QueueFilter, "queue"), (TypeFilter, "type")):
            list_filter = filter_class(request, {param: [value]}, Task, model_admin)
            assert list(list_filter.queryset(request, Task.objects.all())) == [task]
        found, _ = model_admin.get_search_results(request, Task.objects.all(), value)
        assert list(found) == []


@pytest.mark.django_db
def test_admin_task_page_stays_small_with_large_and_deep_values(admin_client):
    task = engine.enqueue(name="big", type="noop", payload={"blob": "p" * 250_000})
    # Rows written before these limits existed (or by hand): set up with SQL.
    deep = json.dumps(json.loads(nested(500, "{}")))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tasks SET result = %s::jsonb, last_error = %s WHERE id = %s",
                       [deep, "e" * 1_000_000, task.pk])
    response = admin_client.get(reverse("admin:tasks_task_change", args=[task.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert len(page) < 150_000
    assert "truncated: the first 20,000 of 250,0" in page  # the payload
    assert "truncated: the first 20,000 of 1,000,000 characters" in page  # the error
    assert "nested deeper than 32 levels: not shown" in page  # the result


# --- CLI ---------------------------------------------------------------------------------


CLI_CASES = [
    (["create", "x", "-t", "noop", "--payload-json", r'{"a": "\ud800"}'],
     "payload.a: contains an unpaired surrogate"),
    (["create", "x", "-t", "noop", "--payload-json", r'{"a": {"\u0000": 1}}'],
     "payload.a.\\u0000: the key contains a NUL character"),
    (["create", "x", "-t", "noop", "--payload-json", nested(100_000)], "nested too deep"),
    (["create", "x", "-t", "noop", "-p", "a=" + nested(100_000)], "-p a: JSON nested too deep"),
    (["create", "x", "-t", "noop", "--payload-json", json.dumps(deep_object(DEPTH + 1))],
     "--payload-json: JSON nested too deep: a payload may nest at most 32 levels"),
    (["create", "x", "-t", "noop", "-p", "a=" + json.dumps(deep_object(DEPTH))],
     "payload.a" + ".a" * (DEPTH - 1) + ": nested deeper than 32 levels"),
    # Argv bytes that are not UTF-8 arrive as lone surrogates (surrogateescape).
    (["create", "x\udcff", "-t", "noop"], "NAME: contains an unpaired surrogate"),
    (["create", "x", "-t", "noop", "-p", "k=\udcff"], "-p: contains an unpaired surrogate"),
    (["create", "x", "-t", "noop", "--queue", "q\x00"], "--queue: contains a NUL character"),
    (["list", "--queue", "\udcff"], "--queue: contains an unpaired surrogate"),
    (["list", "--type", "a\x00"], "--type: contains a NUL character"),
    (["list", "-q", "\udcff"], "--search: contains an unpaired surrogate"),
    (["get", "--id", "\udcff"], "--id: contains an unpaired surrogate"),
    (["get", "--id", "²"], "Task ² not found."),
    (["cancel", "--id", "9" * 5000], "not found."),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), CLI_CASES)
def test_cli_names_the_problem_and_writes_nothing(args, message):
    with pytest.raises(CommandError) as raised:
        task_cmd(*args)
    assert message in str(raised.value)
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_cli_search_of_any_unicode_works():
    squared = TaskFactory(name="area m²")
    assert [t["id"] for t in json.loads(task_cmd("list", "-q", "²", "-o", "json"))["results"]
            ] == [squared.pk]
    assert json.loads(task_cmd("list", "-q", "9" * 5000, "-o", "json"))["results"] == []


def test_cli_remote_says_what_local_says(live_server):
    token = Token.objects.create(user=grant(UserFactory(username="remote"), *users.OPERATOR))
    remote = ["--address", live_server.url, "--token", token.key]
    # Not the 5000-digit id: Django's live test server stats every path as a file, and
    # the OS refuses names past PATH_MAX (a test-server limit, not the service's).
    for args, message in [case for case in CLI_CASES if case[0][0] != "cancel"]:
        with pytest.raises(CommandError) as local:
            task_cmd(*args)
        with pytest.raises(CommandError) as far:
            task_cmd(*args, *remote)
        assert str(far.value) == str(local.value), args
        assert message in str(far.value)
    TaskFactory(name="area m²", payload={"blob": "p" * 1000})
    for fmt in ("json", "table"):
        assert task_cmd("list", "-q", "²", "-o", fmt, *remote) == task_cmd(
            "list", "-q", "²", "-o", fmt)
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_cli_process_with_non_utf8_argv_is_one_line_and_no_traceback():
    result = subprocess.run(
        [sys.executable.encode(), str(processes.ROOT / "manage.py").encode(), b"task", b"list",
         b"--queue", b"\xff\xfe"],
        env=processes.process_env(), capture_output=True, timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1
    assert "Traceback" not in stderr
    assert "--queue: contains an unpaired surrogate" in stderr
    assert len(stderr.strip().splitlines()) == 1


# --- results from a real plugin run ------------------------------------------------------


def run_worker_until_idle(worker_factory, **env: str) -> None:
    """A real `runworker --batch` process: it exits once nothing is left to claim."""
    proc = worker_factory("--batch", "--concurrency", "2", **env)
    assert proc.wait(timeout=120) == 0, proc.log_path.read_text()


@pytest.mark.django_db(transaction=True)
def test_results_are_stored_bounded_through_a_real_run(api, worker_factory):
    big = engine.enqueue(name="big", type="produce", payload={"bytes": 20 * 1024 * 1024})
    deep = engine.enqueue(name="deep", type="produce", payload={"depth": 100_000})
    bad = engine.enqueue(name="bad", type="produce", payload={"bad_text": True})
    small = engine.enqueue(name="small", type="produce", payload={"bytes": 10})
    run_worker_until_idle(worker_factory)
    for task in (big, deep, bad, small):
        task.refresh_from_db()
        assert task.status == Status.SUCCEEDED, (task.name, task.last_error)
    limit = jsonsafe.DEFAULT_MAX_RESULT_BYTES
    assert big.result["truncated"] is True
    assert big.result["bytes"] == len(json.dumps({"blob": "x" * 20 * 1024 * 1024},
                                              separators=(",", ":")))
    assert big.result["reason"] == f"larger than {limit} bytes"
    assert big.result["preview"].startswith('{"blob":"xxxx')
    assert len(json.dumps(big.result)) < 2000
    assert deep.result == {"truncated": True, "reason": "nested deeper than 32 levels"}
    assert bad.result == {"text": "a\ufffdb\ufffdc", "ok": "fine"}
    assert small.result == {"blob": "x" * 10}
    # The API serves the marker; the list page carries no results at all.
    assert api.get(f"/api/tasks/{big.pk}").json()["result"]["truncated"] is True
    assert len(api.get("/api/tasks").content) < 10_000


@pytest.mark.django_db(transaction=True)
def test_the_result_limit_is_a_setting(worker_factory):
    task = engine.enqueue(name="mid", type="produce", payload={"bytes": 4000})
    run_worker_until_idle(worker_factory, TASKS_MAX_RESULT_BYTES="2048")
    task.refresh_from_db()
    assert task.result["reason"] == "larger than 2048 bytes"
