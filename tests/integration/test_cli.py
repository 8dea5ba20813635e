"""manage.py task / createtoken: every action, every output format, local and --address."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import yaml
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tasks import engine
from tasks.models import Task, TaskHistory
from tests.factories import TaskFactory, UserFactory
from tests.support import processes, users
from tests.support.users import grant


def task_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("task", *args, stdout=out)
    return out.getvalue()


def as_json(*args: str):
    return json.loads(task_cmd(*args, "-o", "json"))


# --- local ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_parses_params_and_prints_the_task_in_each_format():
    body = as_json("create", "welcome", "--type", "send_email", "-p", "to=bob@example.com",
                   "-p", "subject=Hi there", "-p", "body=Hello", "--priority", "7",
                   "--queue", "mail", "--max-retries", "1", "--timeout", "60")
    assert body["status"] == "queued"
    assert body["payload"] == {"to": ["bob@example.com"], "subject": "Hi there", "body": "Hello"}
    assert (body["priority"], body["queue"], body["max_retries"], body["timeout_seconds"]) == (
        7, "mail", 1, 60)
    task = Task.objects.get(pk=body["id"])
    assert task.name == "welcome"

    as_yaml = yaml.safe_load(task_cmd("get", "--id", str(task.pk), "-o", "yaml"))
    assert as_yaml["id"] == task.pk
    assert as_yaml["payload"]["to"] == ["bob@example.com"]

    table = task_cmd("get", "--id", str(task.pk)).splitlines()
    assert table[0].split() == ["FIELD", "VALUE"]
    assert ["status", "queued"] in [line.split() for line in table]
    assert any(line.startswith("payload ") and '"subject": "Hi there"' in line for line in table)


@pytest.mark.django_db
def test_create_with_json_payload_numbers_and_run_at():
    body = as_json("create", "nap", "-t", "simulate", "--payload-json",
                   '{"duration": 1, "failure_rate": 0.5}', "-p", "duration=0.25",
                   "--run-at", "2030-01-02T03:04:05+00:00", "--idempotency-key", "nap-1")
    assert body["payload"] == {"duration": 0.25, "failure_rate": 0.5}
    assert body["run_at"] == "2030-01-02T03:04:05Z"
    again = as_json("create", "nap", "-t", "simulate", "--payload-json",
                    '{"duration": 0.25, "failure_rate": 0.5}',
                    "--run-at", "2030-01-02T03:04:05+00:00", "--idempotency-key", "nap-1")
    assert again["id"] == body["id"]
    with pytest.raises(CommandError, match=f"already used for task {body['id']}"):
        task_cmd("create", "nap", "-t", "simulate", "--idempotency-key", "nap-1")
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_list_filters_and_pages_in_each_format():
    failed = TaskFactory(name="mail bob", type="send_email", failed=True)
    queued = TaskFactory(name="sleepy")
    TaskFactory(name="done", succeeded=True)

    data = as_json("list", "--status", "failed,queued", "--page-size", "1")
    assert data["count"] == 2
    assert [t["id"] for t in data["results"]] == [queued.pk]
    assert as_json("list", "--status", "failed", "--status", "queued", "--page", "2",
                   "--page-size", "1")["results"][0]["id"] == failed.pk
    assert [t["id"] for t in as_json("list", "--type", "send_email")["results"]] == [failed.pk]
    assert [t["id"] for t in as_json("list", "-q", "BOB")["results"]] == [failed.pk]
    assert yaml.safe_load(task_cmd("list", "-o", "yaml"))["count"] == 3

    lines = task_cmd("list", "--status", "failed").splitlines()
    assert lines[0].split() == ["ID", "NAME", "TYPE", "STATUS", "PRIORITY", "QUEUE", "RETRIES",
                                "CREATED", "PROGRESS"]
    # Aligned: every column starts at the same offset on every row.
    assert lines[1].index("send_email") == lines[0].index("TYPE")
    assert lines[1].index("failed") == lines[0].index("STATUS")
    assert lines[-1] == "1 task(s); page 1 of 1"


def running_with_progress(done, total, message, worker: str = "host:1:cli") -> Task:
    task = engine.enqueue(name="long", type="noop", max_retries=1)
    (claimed,) = engine.claim(worker_id=worker, limit=1)
    engine.progress(worker_id=worker, task_id=task.pk, attempt=claimed.attempt, done=done,
                    total=total, message=message)
    return task


def value_of(table: str, field: str) -> str:
    (line,) = [line for line in table.splitlines() if line.split()[:1] == [field]]
    return line[len(field):].strip()


@pytest.mark.django_db
def test_get_and_list_show_a_running_tasks_progress_readably():
    task = running_with_progress(3, 10, "three of ten files, the last one quite large indeed")
    counted = running_with_progress(2.5, None, "", worker="host:2:cli")
    queued = engine.enqueue(name="later", type="noop")
    assert value_of(task_cmd("get", "--id", str(task.pk)), "progress") == \
        "3/10 30% three of ten files, the last one quite large indeed"
    assert value_of(task_cmd("get", "--id", str(counted.pk)), "progress") == "2.5"
    assert value_of(task_cmd("get", "--id", str(queued.pk)), "progress") == ""
    assert as_json("get", "--id", str(task.pk))["progress"]["done"] == 3  # json: the API's

    lines = task_cmd("list").splitlines()
    column = lines[0].index("PROGRESS")
    rows = {int(line.split()[0]): line[column:] for line in lines[1:-1]}
    assert rows == {task.pk: "3/10 30% three of ten files, the last one quit...",
                    counted.pk: "2.5", queued.pk: ""}

    # A running task's progress only: one that failed shows none in the list.
    engine.fail(worker_id="host:1:cli", outcomes=[engine.Outcome(
        task_id=task.pk, attempt=1, error="boom")])
    engine.cancel(task.pk)
    assert Task.objects.get(pk=task.pk).status == "cancelled"
    lines = task_cmd("list").splitlines()
    assert {int(line.split()[0]): line[column:] for line in lines[1:-1]}[task.pk] == ""


@pytest.mark.django_db
def test_status_counts_per_status():
    TaskFactory.create_batch(2)
    TaskFactory(failed=True)
    counts = as_json("status")  # the API's /api/stats, as it answers
    assert {k: v for k, v in counts.items() if k.endswith("_tasks")} == {
        "total_tasks": 3, "waiting_tasks": 0, "queued_tasks": 2, "running_tasks": 0,
        "retrying_tasks": 0, "succeeded_tasks": 0, "failed_tasks": 1, "cancelled_tasks": 0}
    assert counts["by_type"] == {"simulate": 3}
    lines = task_cmd("status").splitlines()
    assert lines[0].split() == ["STATUS", "COUNT"]
    assert lines[1].split() == ["waiting", "0"]
    assert lines[2].split() == ["queued", "2"]
    assert lines[-1].split() == ["total", "3"]
    assert yaml.safe_load(task_cmd("status", "-o", "yaml")) == counts


@pytest.mark.django_db
def test_cancel_retry_and_history():
    task = engine.enqueue(name="c", type="noop")
    assert as_json("cancel", "--id", str(task.pk))["status"] == "cancelled"
    assert as_json("retry", "--id", str(task.pk))["status"] == "queued"
    rows = as_json("history", "--id", str(task.pk))
    assert [r["event_type"] for r in rows] == ["task_queued", "task_cancelled", "task_requeued"]
    assert rows[1]["details"] == "cancelled from the command line"
    table = task_cmd("history", "--id", str(task.pk)).splitlines()
    assert table[0].split()[:4] == ["ID", "EVENT", "STATUS", "ATTEMPT"]
    assert "task_requeued" in table[3]
    assert yaml.safe_load(task_cmd("history", "--id", str(task.pk), "-o", "yaml")) == rows


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "-t", "nope"], "Known types:"),
        (["create", "x", "-t", "send_email", "-p", "to=bad"], "payload.to: Not a valid email"),
        (["create", "x", "-t", "noop", "--priority", "5000"], "priority: Must be between"),
        (["create", "x", "-t", "noop", "--payload-json", "{oops"], "not valid JSON"),
        (["create", "x", "-t", "noop", "-p", "novalue"], "KEY=VALUE"),
        (["create", "x", "-t", "noop", "--run-at", "soon"], "run_at:"),
        (["get", "--id", "424242"], "Task 424242 not found."),
        (["get", "--id", "abc"], "Task abc not found."),
        (["history", "--id", "99999999999999999999"], "not found"),
        (["list", "--status", "bogus"], "status: Select a valid choice"),
        (["list", "--page", "0"], "--page must be at least 1"),
        (["status", "--token", "t"], "only used with --address"),
        (["status", "--address", "http://127.0.0.1:9"], "needs --token"),
        (["status", "--address", "ftp://x", "--token", "t"], "http(s):// URL"),
    ],
)
def test_errors_are_one_line_and_change_nothing(args, message):
    with pytest.raises(CommandError) as info:
        task_cmd(*args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_a_finished_task_cannot_be_cancelled():
    task = TaskFactory(succeeded=True)
    with pytest.raises(CommandError, match=f"Cannot cancel task {task.pk}: it is succeeded"):
        task_cmd("cancel", "--id", str(task.pk))


@pytest.mark.django_db
def test_as_a_process_an_error_is_one_line_and_a_non_zero_exit():
    result = subprocess.run(
        [sys.executable, str(processes.ROOT / "manage.py"), "task", "create", "x", "-t", "nope"],
        env=processes.process_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Unknown task type 'nope'" in result.stderr


# --- createtoken ------------------------------------------------------------------------


@pytest.mark.django_db
def test_createtoken():
    user = UserFactory(username="ops")
    out = io.StringIO()
    call_command("createtoken", "ops", stdout=out)
    key = out.getvalue().strip()
    assert Token.objects.get(user=user).key == key
    out = io.StringIO()
    call_command("createtoken", "ops", stdout=out)
    assert out.getvalue().strip() == key  # the same token again
    out = io.StringIO()
    call_command("createtoken", "ops", "--reset", stdout=out)
    assert out.getvalue().strip() not in ("", key)
    with pytest.raises(CommandError, match="No user 'ghost'"):
        call_command("createtoken", "ghost")
    call_command("createtoken", "robot", "--create-user", stdout=io.StringIO())
    assert Token.objects.filter(user__username="robot").exists()


# --- remote: --address against a live server --------------------------------------------


@pytest.fixture
def remote(live_server) -> list[str]:
    token = Token.objects.create(user=grant(UserFactory(username="remote"), *users.OPERATOR))
    return ["--address", live_server.url, "--token", token.key]


def test_remote_output_is_identical_to_local(remote):
    created = as_json("create", "far away", "-t", "simulate", "-p", "duration=0.5",
                      "--priority", "3", *remote)
    assert created["status"] == "queued"
    assert Task.objects.get(pk=created["id"]).priority == 3
    TaskFactory(failed=True, type="send_email")
    running = str(running_with_progress(1, 4, "a quarter").pk)
    task_id = str(created["id"])
    for args in (["get", "--id", task_id], ["history", "--id", task_id], ["status"],
                 ["list"], ["list", "--status", "failed", "--page-size", "1"],
                 ["get", "--id", running]):
        for fmt in ("table", "json", "yaml"):
            local = task_cmd(*args, "-o", fmt)
            assert task_cmd(*args, "-o", fmt, *remote) == local, (args, fmt)


def test_remote_cancel_and_retry(remote):
    task = engine.enqueue(name="c", type="noop")
    assert as_json("cancel", "--id", str(task.pk), *remote)["status"] == "cancelled"
    assert as_json("retry", "--id", str(task.pk), *remote)["status"] == "queued"
    events = list(TaskHistory.objects.filter(task=task).values_list("event_type", flat=True))
    assert events == ["task_queued", "task_cancelled", "task_requeued"]


@pytest.mark.parametrize(
    "args",
    [["create", "x", "-t", "nope"], ["create", "x", "-t", "send_email", "-p", "to=bad"],
     ["get", "--id", "424242"], ["get", "--id", "abc"], ["list", "--status", "bogus"]],
)
def test_remote_errors_match_local_errors(remote, args):
    with pytest.raises(CommandError) as local:
        task_cmd(*args)
    with pytest.raises(CommandError) as far:
        task_cmd(*args, *remote)
    assert str(far.value) == str(local.value)
    assert not Task.objects.exists()


def test_remote_with_a_bad_token_or_no_server(live_server):
    with pytest.raises(CommandError, match="Invalid token"):
        task_cmd("status", "--address", live_server.url, "--token", "wrong")
    with pytest.raises(CommandError, match="Cannot reach http://127.0.0.1:9"):
        task_cmd("status", "--address", "http://127.0.0.1:9", "--token", "t")


def test_remote_redirects_are_not_followed(live_server):
    # /admin/... redirects anonymous requests to the login page. urllib would follow it
    # (and turn a POST into a GET); the client names the new address instead.
    address = f"{live_server.url}/admin"
    with pytest.raises(CommandError, match="The server redirected to .*login.* --address"):
        task_cmd("status", "--address", address, "--token", "t")


# --- the seed's spellings, the version, pages past the end, the token from the environment


@pytest.mark.django_db
def test_the_seeds_spellings_are_accepted():
    created = as_json("create", "seeded", "--type", "simulate", "--parameter", "duration=0")
    task_id = str(created["id"])
    assert as_json("get", "-i", task_id)["id"] == created["id"]
    assert task_cmd("s") == task_cmd("stat") == task_cmd("status")
    assert task_cmd("l") == task_cmd("list")
    assert as_json("list", "--pageNumber", "1", "--pageCount", "1")["page_size"] == 1
    assert task_cmd("status", "--log-level", "DEBUG") == task_cmd("status")


@pytest.mark.django_db
def test_a_page_past_the_end_is_empty_not_an_error(client):
    TaskFactory()
    data = as_json("list", "--page", "2")
    assert (data["count"], data["page"], data["results"], data["next"]) == (1, 2, [], None)
    assert data["previous"] == "/api/tasks?page_size=50"
    assert task_cmd("list", "--page", "3").splitlines()[-1] == "1 task(s); page 3 of 1"


def test_version_is_ours():
    from importlib.metadata import version

    result = subprocess.run([sys.executable, str(processes.ROOT / "manage.py"), "task",
                             "--version"], env=processes.process_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == f"task-service {version('task-service')}"


def test_remote_token_from_the_environment(remote, monkeypatch):
    address, token = remote[1], remote[3]
    monkeypatch.setenv("TASKS_TOKEN", token)
    assert task_cmd("status", "--address", address) == task_cmd("status")
    monkeypatch.delenv("TASKS_TOKEN")
    with pytest.raises(CommandError, match="--address needs --token or \\$TASKS_TOKEN"):
        task_cmd("status", "--address", address)


def test_end2end_takes_the_seeds_num_tasks():
    with pytest.raises(CommandError, match="-n must be between 1 and 100000"):
        call_command("end2end", "--num-tasks", "0")
