"""Websocket consumers of the live admin: staff only, fed by this process's relay.

Close codes for refused connections (sent after accepting, so browsers can see them):
4401 not logged in, 4403 logged in but not staff or without tasks.view_task.
A user without tasks.view_all_tasks hears only of their own tasks (tasks.authz): their
snapshots are their own, and event entries are kept only for ids they own.

Messages sent (JSON, `type` first):
- `snapshot`: the dashboard's data (tasks.live.dashboard.snapshot); `throughput` only when
  re-read (every THROUGHPUT_REFRESH seconds; clients add live events in between).
- `workers`: the workers (as in a snapshot) and the server's `at`, every workers_refresh()
  seconds: heartbeats send no event, so without it a live worker would age to "late" on
  the page of a quiet service.
- `events`: a coalesced batch: `events` (latest entries), `totals` (event -> tasks),
  `dropped` (events only counted), `resync` (events may have been lost).
- `tasks`: {id: {status, retries, progress}} for the task ids a list page watches
  (`{"watch": [ids]}`).
- `error`: a message the client sent was not understood, or the connection is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from tasks import authz, selectors
from tasks.conf import engine
from tasks.live import dashboard
from tasks.live.relay import Batch, Subscription, relay

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
MAX_WATCHED = 500
MIN_SNAPSHOT_INTERVAL = 0.5  # seconds; raised to 3x a slow snapshot's own duration
THROUGHPUT_REFRESH = 10.0  # seconds between re-reads of the per-minute chart
LISTEN_TIMEOUT = 5.0


class _SharedSnapshot:
    """One dashboard snapshot per relay flush per event loop, however many clients ask.

    Snapshots are also spaced by at least MIN_SNAPSHOT_INTERVAL (or 3x the last one's
    duration, so a slow database is not hammered by its own dashboard).
    """

    def __init__(self):
        self._states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _state(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = {"lock": asyncio.Lock(), "value": None, "generation": -1,
                     "started": float("-inf"), "duration": 0.0,
                     "throughput_at": float("-inf")}
            self._states[loop] = state
        return state

    async def get(self, generation: int) -> dict[str, Any]:
        state = self._state()
        loop = asyncio.get_running_loop()
        async with state["lock"]:
            if state["value"] is not None and state["generation"] >= generation:
                return state["value"]
            spacing = max(MIN_SNAPSHOT_INTERVAL, 3 * state["duration"])
            wait = state["started"] + spacing - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            # Everything flushed so far was committed before this read starts.
            covered = relay.generation
            started = loop.time()
            with_throughput = started - state["throughput_at"] >= THROUGHPUT_REFRESH
            value = await database_sync_to_async(dashboard.snapshot)(
                include_throughput=with_throughput)
            state.update(value=value, generation=covered, started=started,
                         duration=loop.time() - started)
            if with_throughput:
                state["throughput_at"] = started
            return value


shared_snapshot = _SharedSnapshot()


def workers_refresh() -> float:
    """Seconds between the dashboard's re-reads of the workers: a third of the heartbeat
    interval keeps a live worker's age on the page within the "online" threshold (1.5
    intervals: tasks.states.liveness_thresholds)."""
    return max(0.25, engine().HEARTBEAT_INTERVAL / 3)


_workers_read: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def shared_workers() -> dict[str, Any]:
    """The workers message for clients who see every task: read once per half refresh
    per event loop, however many dashboards are open."""
    loop = asyncio.get_running_loop()
    at, value = _workers_read.get(loop, (float("-inf"), None))
    if loop.time() - at >= workers_refresh() / 2:
        value = await database_sync_to_async(_workers)(None)
        _workers_read[loop] = (loop.time(), value)
    return value


def _workers(owner_id: int | None) -> dict[str, Any]:
    now = timezone.now()
    return {"type": "workers", "at": now.isoformat(),
            "workers": selectors.workers(now, owner_id=owner_id)}


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


class StaffConsumer(AsyncWebsocketConsumer):
    """Accepts staff only; subscribes to the relay and pumps its batches to `on_batch`."""

    subscription: Subscription | None = None
    pump: asyncio.Task | None = None
    owner_id: int | None = None  # set when the user sees only their own tasks

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED, "Log in to the admin first.")
            return
        if not (user.is_active and user.is_staff):
            await self.refuse(CLOSE_FORBIDDEN, "Staff only.")
            return
        if not await database_sync_to_async(authz.may)(user, "view"):
            await self.refuse(CLOSE_FORBIDDEN, "You may not view tasks (tasks.view_task).")
            return
        self.owner_id = await database_sync_to_async(authz.owner_scope)(user)
        self.subscription = await relay.subscribe()
        if not await relay.wait_listening(LISTEN_TIMEOUT):
            logger.warning("websocket relay is not listening yet; live events may lag",
                           extra={"action": "relay_not_listening"})
        await self.on_connected()
        self.pump = asyncio.ensure_future(self._pump())

    async def refuse(self, code: int, reason: str) -> None:
        await self.send(_dumps({"type": "error", "code": code, "reason": reason}))
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.subscription is not None:
            relay.unsubscribe(self.subscription)
            self.subscription = None

    async def _pump(self) -> None:
        try:
            while True:
                batch = await self.subscription.next()
                await self.on_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("websocket relay pump failed", extra={"action": "relay_error"})
            await self.close(code=1011)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(_dumps(message))

    async def on_connected(self) -> None:
        """Send the first state, after LISTEN is active so nothing falls in between."""

    async def on_batch(self, batch: Batch) -> None:
        raise NotImplementedError


class DashboardConsumer(StaffConsumer):
    """The dashboard page: a snapshot on connect, then events + snapshot per batch."""

    ticker: asyncio.Task | None = None

    async def on_connected(self) -> None:
        # Read after this connection opened, never an earlier shared one: the page was
        # rendered just before, and a snapshot older than it would undo what it shows.
        await self.send_json({"type": "snapshot", **await self.snapshot(relay.generation + 1)})
        self.ticker = asyncio.ensure_future(self._refresh_workers())

    async def disconnect(self, code: int) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        await super().disconnect(code)

    async def _refresh_workers(self) -> None:
        try:
            while True:
                await asyncio.sleep(workers_refresh())
                await self.send_json(await shared_workers() if self.owner_id is None else
                                     await database_sync_to_async(_workers)(self.owner_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("dashboard workers refresh failed",
                             extra={"action": "relay_error"})

    async def snapshot(self, generation: int) -> dict[str, Any]:
        if self.owner_id is None:
            return await shared_snapshot.get(generation)
        return await database_sync_to_async(dashboard.snapshot)(owner_id=self.owner_id)

    async def on_batch(self, batch: Batch) -> None:
        if self.owner_id is None:
            events, totals, dropped = list(batch.events), batch.totals, batch.dropped
        else:  # only entries about their own tasks; service-wide totals are not theirs
            events = await database_sync_to_async(_own_events)(batch.events, self.owner_id)
            totals, dropped = {}, 0
        await self.send_json({"type": "events", "events": events, "totals": totals,
                              "dropped": dropped, "resync": batch.resync})
        await self.send_json({"type": "snapshot", **await self.snapshot(batch.generation)})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        # The dashboard only listens; say so rather than ignore the client silently.
        await self.send_json({"type": "error", "reason": "This endpoint takes no messages."})


class TaskListConsumer(StaffConsumer):
    """The task list: the client says which task ids are on screen; gets their statuses."""

    watched: frozenset[int] = frozenset()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        try:
            message = json.loads(text_data or "")
            ids = message["watch"]
            if (not isinstance(ids, list) or len(ids) > MAX_WATCHED
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            await self.send_json({"type": "error", "reason": (
                f'Expected {{"watch": [task ids]}} with at most {MAX_WATCHED} integer ids.')})
            return
        self.watched = frozenset(ids)
        await self.send_statuses(self.watched)  # rows may have changed since the page loaded

    async def on_batch(self, batch: Batch) -> None:
        if not self.watched:
            return
        wanted = (self.watched if batch.resync or not batch.ids_complete
                  else self.watched & batch.ids)
        if wanted:
            await self.send_statuses(wanted)

    async def send_statuses(self, ids: frozenset[int]) -> None:
        rows = await database_sync_to_async(_statuses)(ids, self.owner_id)
        await self.send_json({"type": "tasks", "tasks": rows})


def _own_events(events, owner_id: int) -> list[dict[str, Any]]:
    """The batch's entries that name a task of this owner, with only those ids."""
    ids = {i for entry in events for i in entry.get("ids") or ()}
    own = selectors.owned_ids(ids, owner_id)
    kept = []
    for entry in events:
        mine = [i for i in entry.get("ids") or () if i in own]
        if mine:
            kept.append({**entry, "ids": mine, "count": len(mine)})
    return kept


def _statuses(ids: frozenset[int], owner_id: int | None) -> dict[str, dict[str, Any]]:
    return {str(pk): {"status": status, "retries": f"{retries}/{max_retries}",
                      "progress": progress}
            for pk, (status, retries, max_retries, progress)
            in selectors.task_statuses(ids, owner_id).items()}
