"""manage.py queue: list, pause, resume, limit; every format, local and --address."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tasks import authz, engine
from tasks.models import AuditEntry, Queue
from tests.factories import UserFactory
from tests.support.users import grant


def queue_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("queue", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_pause_resume_and_limit_locally_in_each_format():
    engine.enqueue(name="a", type="count", queue="mail")
    paused = json.loads(queue_cmd("pause", "mail", "-o", "json"))
    assert paused["paused"] is True and paused["due"] == 1
    limited = yaml.safe_load(queue_cmd("limit", "mail", "--concurrency", "2", "--rate", "0.5",
                                       "-o", "yaml"))
    assert (limited["concurrency_limit"], limited["rate_limit"]) == (2, 0.5)
    queue_cmd("limit", "mail", "--rate", "none")
    table = queue_cmd("list")
    assert table.splitlines()[0].split()[:3] == ["QUEUE", "DUE", "DEFERRED"]
    assert table.splitlines()[1].split() == ["mail", "1", "0", "0",
                                             table.splitlines()[1].split()[4], "True", "2"]
    queue_cmd("resume", "mail")
    assert not Queue.objects.get(name="mail").paused
    assert list(AuditEntry.objects.values_list("action", "actor"))[0] == (
        "queue_paused", "the command line")


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["limit", "mail"], "needs --concurrency, --rate or both"),
    (["limit", "mail", "--concurrency", "0"], "concurrency_limit"),
    (["limit", "mail", "--rate", "-1"], "rate_limit"),
    (["pause", "bad name"], "name: Must be 1-100 characters"),
])
def test_errors_are_one_line_and_change_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        queue_cmd(*args)
    assert not Queue.objects.exists()


def test_limit_refuses_a_value_that_is_not_a_number():
    with pytest.raises(CommandError, match="expected a number or 'none'"):
        queue_cmd("limit", "mail", "--rate", "fast")


@pytest.fixture
def remote(live_server) -> list[str]:
    user = grant(UserFactory(username="ops"), authz.VIEW_QUEUE, authz.CHANGE_QUEUE)
    return ["--address", live_server.url, "--token", Token.objects.create(user=user).key]


def test_remote_matches_local(remote):
    engine.enqueue(name="a", type="count", queue="mail")
    assert json.loads(queue_cmd("pause", "mail", "-o", "json", *remote))["paused"]
    queue_cmd("limit", "mail", "--concurrency", "3", *remote)
    def without_age(text: str) -> list[dict]:  # the age grows between the two calls
        return [{k: v for k, v in q.items() if k != "oldest_due_age"}
                for q in yaml.safe_load(text)]

    for fmt in ("json", "yaml"):
        assert without_age(queue_cmd("list", "-o", fmt, *remote)) == without_age(
            queue_cmd("list", "-o", fmt))
    assert AuditEntry.objects.filter(actor="ops via the API").count() == 2
    with pytest.raises(CommandError, match="concurrency_limit"):
        queue_cmd("limit", "mail", "--concurrency", "0", *remote)
