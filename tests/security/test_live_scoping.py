"""The live view tells a user without tasks.view_all_tasks only about their own tasks."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from tasks import engine
from tasks.live.consumers import CLOSE_FORBIDDEN
from tasks.live.relay import relay
from tests.integration.test_consumer import DASHBOARD, TASK_LIST, communicator, receive_until
from tests.security.test_console_scoping import SHARED, two_owners
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db(transaction=True)

enqueue = database_sync_to_async(engine.enqueue)


@pytest.fixture
def session_of(client, django_user_model):
    def make(username: str, *perms: str) -> tuple[object, bytes]:
        user = django_user_model.objects.create_user(username, is_staff=True)
        grant(user, *perms)
        client.force_login(user)
        return user, f"sessionid={client.cookies['sessionid'].value}".encode()

    return make


def test_staff_without_view_permission_is_closed(session_of):
    _, cookie = session_of("bare")

    async def scenario():
        comm = communicator(DASHBOARD, cookie)
        assert (await comm.connect(timeout=5))[0]
        error = await comm.receive_json_from(timeout=5)
        assert error["code"] == CLOSE_FORBIDDEN and "view_task" in error["reason"]

    asyncio.run(scenario())
    assert relay.subscriber_count == 0


def test_events_snapshots_and_statuses_are_the_users_own(session_of, django_user_model):
    mallory = grant(django_user_model.objects.create_user("mallory"), *users.CLIENT)
    alice, cookie = session_of("alice", *users.CLIENT)

    async def scenario():
        dash = communicator(DASHBOARD, cookie)
        assert (await dash.connect(timeout=5))[0]
        first = await receive_until(dash, "snapshot")
        assert sum(first["counts"].values()) == 0
        theirs = await enqueue(name="mallory's", type="noop", owner=mallory)
        mine = await enqueue(name="alice's", type="noop", owner=alice)
        seen: set[int] = set()
        while mine.pk not in seen:
            batch = await receive_until(dash, "events", timeout=3)
            seen |= {i for entry in batch["events"] for i in entry["ids"]}
            assert batch["totals"] == {} and theirs.pk not in seen
        snapshot = await receive_until(dash, "snapshot", timeout=3)
        assert snapshot["counts"]["queued"] == 1
        await dash.disconnect()

        tasks = communicator(TASK_LIST, cookie)
        assert (await tasks.connect(timeout=5))[0]
        await tasks.send_json_to({"watch": [mine.pk, theirs.pk]})
        statuses = await receive_until(tasks, "tasks", timeout=3)
        assert set(statuses["tasks"]) == {str(mine.pk)}
        await tasks.disconnect()

    asyncio.run(scenario())


def test_the_dashboard_snapshot_lists_workers_with_only_her_running_tasks(
        client, django_user_model):
    owners = two_owners(django_user_model)
    client.force_login(owners.alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario():
        dash = communicator(DASHBOARD, cookie)
        assert (await dash.connect(timeout=5))[0]
        snapshot = await receive_until(dash, "snapshot")
        (worker,) = snapshot["workers"]
        assert worker["id"] == SHARED
        assert (worker["running"], worker["running_ids"]) == (1, [owners.a_run.pk])
        assert snapshot["counts"]["running"] == 1 and snapshot["failing"] == []
        assert [q["queue"] for q in snapshot["queues"]] == ["default"]
        (worker,) = (await receive_until(dash, "workers", timeout=15))["workers"]
        assert (worker["running"], worker["running_ids"]) == (1, [owners.a_run.pk])
        await dash.disconnect()

    asyncio.run(scenario())
