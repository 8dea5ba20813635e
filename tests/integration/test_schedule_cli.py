"""manage.py schedule: every action, each format, local and --address."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tasks import authz
from tasks.models import AuditEntry, Schedule, Task
from tests.factories import UserFactory
from tests.support import users
from tests.support.users import grant


def schedule_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("schedule", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create_list_get_pause_resume_run_now_delete_locally():
    made = json.loads(schedule_cmd("create", "nightly", "-t", "simulate", "-p", "duration=0.1",
                                   "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
                                   "-o", "json"))
    assert made["payload"] == {"duration": 0.1} and len(made["next_runs"]) == 3
    sid = str(made["id"])
    table = schedule_cmd("list").splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "TYPE", "WHEN"]
    assert "0 3 * * * (Europe/Paris)" in table[1]
    assert yaml.safe_load(schedule_cmd("get", sid, "-o", "yaml"))["name"] == "nightly"
    assert json.loads(schedule_cmd("pause", sid, "-o", "json"))["enabled"] is False
    assert json.loads(schedule_cmd("resume", sid, "-o", "json"))["enabled"] is True
    task = json.loads(schedule_cmd("run-now", sid, "-o", "json"))
    assert Task.objects.get(pk=task["id"]).origin == "schedule"
    schedule_cmd("delete", sid)
    assert not Schedule.objects.exists()
    assert AuditEntry.objects.filter(actor="the command line").count() == 5


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["create", "x", "-t", "simulate", "--cron", "nope"], "cron"),
    (["create", "x", "-t", "simulate", "-p", "duration=slow", "--interval", "5"], "payload"),
    (["create", "x", "-t", "simulate", "--interval", "0"], "interval_seconds"),
    (["get", "42"], "No schedule"),
    (["pause", "abc"], "No schedule"),
])
def test_errors_are_one_line_and_change_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        schedule_cmd(*args)
    assert not Schedule.objects.exists()


@pytest.fixture
def remote(live_server) -> list[str]:
    user = grant(UserFactory(username="planner"), *users.SCHEDULES, authz.ADD,
                 authz.ENQUEUE_ANY)
    return ["--address", live_server.url, "--token", Token.objects.create(user=user).key]


def test_remote_matches_local(remote):
    made = json.loads(schedule_cmd("create", "often", "-t", "simulate", "--interval", "60",
                                   "-o", "json", *remote))
    sid = str(made["id"])
    for args in (["list"], ["get", sid]):
        for fmt in ("table", "json", "yaml"):
            assert schedule_cmd(*args, "-o", fmt, *remote) == schedule_cmd(*args, "-o", fmt)
    schedule_cmd("pause", sid, *remote)
    assert AuditEntry.objects.filter(actor="planner via the API").count() == 2
    with pytest.raises(CommandError, match="cron"):
        schedule_cmd("create", "bad", "-t", "simulate", "--cron", "x", *remote)
    schedule_cmd("delete", sid, *remote)
    assert not Schedule.objects.exists()
