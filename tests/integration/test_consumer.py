"""The websocket endpoints through the real ASGI application (origin check, session auth,
consumers) with Channels' WebsocketCommunicator; events are real NOTIFYs committed by
another database connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from tasks import engine
from tasks.live.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, MAX_WATCHED
from tasks.live.relay import FLUSH_INTERVAL, relay
from taskservice.asgi import application
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/ws/tasks/dashboard/"
TASK_LIST = "/ws/tasks/list/"


@pytest.fixture(autouse=True)
def _close_relay():
    yield
    relay.shutdown()  # the LISTEN connection must be gone before the database is flushed


@pytest.fixture
def login(client, django_user_model):
    """Returns a session cookie header for a new user with the given flags."""

    def make(username: str = "operator", perms=users.OPERATOR, **flags) -> bytes:
        user = django_user_model.objects.create_user(username, password="pw-123456-x", **flags)
        grant(user, *perms)
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    return make


def communicator(path: str, cookie: bytes | None = None,
                 origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    headers = [(b"host", b"testserver"), (b"origin", origin)]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_until(comm: WebsocketCommunicator, kind: str, timeout: float = 5.0,
                        where=lambda message: True) -> dict:
    """The next message of type `kind` that satisfies `where`, skipping others."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        message = await comm.receive_json_from(timeout=max(0.01, end - loop.time()))
        if message["type"] == kind and where(message):
            return message


enqueue = database_sync_to_async(engine.enqueue)  # committed by its own connection
cancel = database_sync_to_async(engine.cancel)


def test_staff_is_accepted_and_gets_a_snapshot(login):
    cookie = login(is_staff=True)

    async def scenario():
        comm = communicator(DASHBOARD, cookie)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        snapshot = await comm.receive_json_from(timeout=5)
        assert snapshot["type"] == "snapshot"
        assert snapshot["counts"] == {"waiting": 0, "queued": 0, "running": 0, "retrying": 0,
                                      "succeeded": 0, "failed": 0, "cancelled": 0}
        assert len(snapshot["throughput"]) == 60
        await comm.disconnect()

    asyncio.run(scenario())
    assert relay.subscriber_count == 0


@pytest.mark.parametrize("path", [DASHBOARD, TASK_LIST])
@pytest.mark.parametrize(("flags", "code"), [
    (None, CLOSE_UNAUTHENTICATED),
    ({}, CLOSE_FORBIDDEN),
    ({"is_staff": True, "is_active": False}, CLOSE_UNAUTHENTICATED),  # inactive: no session
])
def test_anonymous_and_non_staff_are_closed_with_a_clear_code(login, path, flags, code):
    cookie = None if flags is None else login(**flags)

    async def scenario():
        comm = communicator(path, cookie)
        connected, _ = await comm.connect(timeout=5)
        assert connected  # accepted only to say why it closes: browsers see the code
        error = await comm.receive_json_from(timeout=5)
        assert error["type"] == "error" and error["code"] == code
        assert await comm.receive_output(timeout=5) == {"type": "websocket.close",
                                                        "code": code}

    asyncio.run(scenario())
    assert relay.subscriber_count == 0


def test_a_foreign_origin_is_refused_before_the_handshake(login):
    cookie = login(is_staff=True)

    async def scenario():
        comm = communicator(DASHBOARD, cookie, origin=b"http://evil.example")
        connected, _ = await comm.connect(timeout=5)
        assert not connected

    asyncio.run(scenario())


def test_a_real_notify_from_another_connection_arrives_as_an_event(login):
    cookie = login(is_staff=True)

    async def scenario():
        comm = communicator(DASHBOARD, cookie)
        assert (await comm.connect(timeout=5))[0]
        await receive_until(comm, "snapshot")  # sent once LISTEN is active
        task = await enqueue(name="hello", type="noop", queue="mail")
        events = await receive_until(comm, "events", timeout=3)
        assert events["events"] == [{
            "event": "task_queued", "count": 1, "ids": [task.pk], "queue": "mail",
            "type": "noop", "at": events["events"][0]["at"]}]
        assert events["totals"] == {"task_queued": 1} and events["dropped"] == 0
        snapshot = await receive_until(comm, "snapshot", timeout=3)
        assert snapshot["counts"]["queued"] == 1
        (queue,) = snapshot["queues"]
        assert queue["oldest_due_seconds"] >= 0
        # No worker is online: nothing can run it.
        assert queue == {"queue": "mail", "queued": 1, "due": 1, "running": 0, "waiting": 0,
                         "oldest_due_seconds": queue["oldest_due_seconds"], "unrunnable": 1,
                         "paused": False, "concurrency_limit": None, "rate_limit": None,
                         "limits": ""}
        await comm.disconnect()

    asyncio.run(scenario())


def test_the_dashboard_rereads_workers_without_events(login, settings):
    """Heartbeats send no event: the dashboard re-reads the workers on its own, so a live
    worker's last heartbeat reaches an open page on a quiet service."""
    settings.TASKS_ENGINE = {**settings.TASKS_ENGINE, "HEARTBEAT_INTERVAL": 0.3}
    engine.register_worker(worker_id="quiet:1:w", hostname="quiet", pid=1, queues=[],
                           concurrency=1)
    cookie = login(is_staff=True)
    heartbeat = database_sync_to_async(engine.heartbeat)

    async def scenario():
        comm = communicator(DASHBOARD, cookie)
        assert (await comm.connect(timeout=5))[0]
        (first,) = (await receive_until(comm, "snapshot"))["workers"]
        await heartbeat(worker_id="quiet:1:w")  # no NOTIFY: no batch, no snapshot
        fresh = await receive_until(comm, "workers", timeout=3, where=lambda m: (
            m["workers"][0]["last_seen"] > first["last_seen"]))
        assert fresh["workers"][0]["id"] == "quiet:1:w" and fresh["at"] >= first["last_seen"]
        await comm.disconnect()

    asyncio.run(scenario())


def test_task_list_gets_live_statuses_for_watched_tasks_only(login):
    cookie = login(is_staff=True)

    async def scenario():
        watched = await enqueue(name="watched", type="noop")
        other = await enqueue(name="other", type="noop")
        comm = communicator(TASK_LIST, cookie)
        assert (await comm.connect(timeout=5))[0]
        await comm.send_json_to({"watch": [watched.pk]})
        first = await receive_until(comm, "tasks")
        assert first["tasks"] == {str(watched.pk): {"status": "queued", "retries": "0/3",
                                                    "progress": None}}

        await cancel(other.pk)  # not on screen: nothing is sent
        assert await comm.receive_nothing(timeout=4 * FLUSH_INTERVAL)
        await cancel(watched.pk)
        update = await receive_until(comm, "tasks", timeout=3)
        assert update["tasks"] == {str(watched.pk): {"status": "cancelled",
                                                     "retries": "0/3", "progress": None}}
        await comm.disconnect()

    asyncio.run(scenario())


def test_a_watched_running_tasks_progress_is_sent_live(login):
    cookie = login(is_staff=True)

    def start():
        task = engine.enqueue(name="long", type="noop")
        (claimed,) = engine.claim(worker_id="w1", limit=1)
        return task, claimed

    async def scenario():
        task, claimed = await database_sync_to_async(start)()
        comm = communicator(TASK_LIST, cookie)
        assert (await comm.connect(timeout=5))[0]
        await comm.send_json_to({"watch": [task.pk]})
        await receive_until(comm, "tasks")
        await database_sync_to_async(engine.progress)(
            worker_id="w1", task_id=task.pk, attempt=claimed.attempt, done=2, total=5,
            message="two of five", at="now")
        update = await receive_until(comm, "tasks", timeout=3)
        assert update["tasks"][str(task.pk)]["progress"] == {
            "done": 2, "total": 5, "message": "two of five", "at": "now",
            "attempt": claimed.attempt}
        await comm.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("text", ['{"watch": "all"}', "not json", '{"watch": [true]}',
                                  json.dumps({"watch": [1] * (MAX_WATCHED + 1)})])
def test_a_bad_watch_message_gets_a_clear_error(login, text):
    cookie = login(is_staff=True)

    async def scenario():
        comm = communicator(TASK_LIST, cookie)
        assert (await comm.connect(timeout=5))[0]
        await comm.send_to(text_data=text)
        error = await receive_until(comm, "error")
        assert "watch" in error["reason"] and str(MAX_WATCHED) in error["reason"]
        await comm.disconnect()

    asyncio.run(scenario())


def test_a_burst_of_notifies_is_coalesced_into_a_few_updates(login):
    cookie = login(is_staff=True)
    burst = 300

    def enqueue_one_by_one():
        for i in range(burst):  # one statement, one NOTIFY each
            engine.enqueue(name=f"burst {i}", type="noop")

    async def scenario():
        comm = communicator(DASHBOARD, cookie)
        assert (await comm.connect(timeout=5))[0]
        await receive_until(comm, "snapshot")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await database_sync_to_async(enqueue_one_by_one)()
        elapsed = loop.time() - start
        batches, total, feed, dropped = 0, 0, 0, 0
        while total < burst:
            events = await receive_until(comm, "events", timeout=5)
            batches += 1
            total += events["totals"].get("task_queued", 0)
            dropped += events["dropped"]
            feed += len(events["events"])
            assert len(events["events"]) <= 50  # the feed is bounded
        assert total == burst  # every event is accounted for ...
        # ... in at most one batch per flush interval (plus the first, immediate one).
        assert batches <= elapsed / FLUSH_INTERVAL + 3, (batches, elapsed)
        assert batches < burst / 5
        assert feed + dropped == burst  # shown in the feed, or summarised as dropped
        snapshot = await receive_until(comm, "snapshot", timeout=5,
                                       where=lambda s: s["counts"]["queued"] == burst)
        assert snapshot["counts"]["queued"] == burst
        await comm.disconnect()

    asyncio.run(scenario())


def _listen_backends() -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()")
        return [r[0] for r in cursor.fetchall()]


def _terminate(pids: list[int]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_relay_reconnects_to_the_database_and_clients_resync(login):
    cookie = login(is_staff=True)

    async def scenario():
        comm = communicator(DASHBOARD, cookie)
        assert (await comm.connect(timeout=5))[0]
        await receive_until(comm, "snapshot")
        listening = await database_sync_to_async(_listen_backends)()
        assert len(listening) == 1  # one LISTEN connection for the whole process
        await database_sync_to_async(_terminate)(listening)  # the database drops it
        resync = await receive_until(comm, "events", timeout=10, where=lambda m: m["resync"])
        assert resync["events"] == []
        await receive_until(comm, "snapshot")  # everything re-read
        task = await enqueue(name="after the drop", type="noop")
        events = await receive_until(comm, "events", timeout=3,
                                     where=lambda m: m["totals"].get("task_queued"))
        assert events["events"][0]["ids"] == [task.pk]
        await comm.disconnect()

    asyncio.run(scenario())
