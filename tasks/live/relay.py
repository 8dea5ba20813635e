"""Fan PostgreSQL NOTIFY events out to this process's websocket clients, without Redis.

One `tasks.listener.Listener` thread per process (started with the first subscriber,
stopped with the last) hears every event on the task channel. Events are folded into a
`Batch` per event loop and flushed at most every `interval` seconds, so a burst of
thousands of events a second reaches each client as a few updates a second. A client
that is still busy with one batch gets the next ones merged into a single batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from tasks.listener import Listener

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25  # seconds between batches to one client: at most 4 updates/s
FEED_LIMIT = 50  # events kept per batch for the live feed; the rest are only counted
MAX_IDS = 2000  # task ids kept per batch; beyond it clients re-read what they watch


@dataclass
class Batch:
    """Events folded together: the feed's latest entries plus totals of everything."""

    events: deque = field(default_factory=lambda: deque(maxlen=FEED_LIMIT))
    totals: dict[str, int] = field(default_factory=dict)  # event -> tasks affected
    ids: set[int] = field(default_factory=set)  # tasks touched (up to MAX_IDS)
    ids_complete: bool = True  # False when some touched ids are not in `ids`
    received: int = 0  # events folded in
    resync: bool = False  # events may have been lost: re-read everything
    generation: int = 0

    def add(self, event: dict[str, Any]) -> None:
        self.received += 1
        self.events.append(event)
        name = str(event.get("event", ""))
        count = event.get("count") or 0
        ids = [i for i in event.get("ids") or () if isinstance(i, int)]
        self.totals[name] = self.totals.get(name, 0) + (count if isinstance(count, int) else 0)
        if isinstance(count, int) and count > len(ids):
            self.ids_complete = False  # the NOTIFY carried only the first ids
        room = MAX_IDS - len(self.ids)
        if len(ids) > room:
            self.ids_complete = False
            ids = ids[:room]
        self.ids.update(ids)

    def merge(self, other: Batch) -> Batch:
        for event in other.events:
            self.events.append(event)
        for name, count in other.totals.items():
            self.totals[name] = self.totals.get(name, 0) + count
        room = MAX_IDS - len(self.ids)
        if len(other.ids) > room:
            self.ids_complete = False
        self.ids.update(list(other.ids)[:max(room, 0)])
        self.ids_complete = self.ids_complete and other.ids_complete
        self.received += other.received
        self.resync = self.resync or other.resync
        self.generation = max(self.generation, other.generation)
        return self

    @property
    def dropped(self) -> int:
        """Events folded in but not kept for the feed."""
        return self.received - len(self.events)


class Subscription:
    """One client's mailbox. Batches delivered while the client is busy merge into one."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._pending: Batch | None = None
        self._ready = asyncio.Event()

    def deliver(self, batch: Batch) -> None:
        """Called on the subscription's loop."""
        if self._pending is None:
            self._pending = Batch().merge(batch)
        else:
            self._pending.merge(batch)
        self._ready.set()

    async def next(self) -> Batch:
        await self._ready.wait()
        self._ready.clear()
        batch, self._pending = self._pending, None
        return batch


@dataclass
class _LoopState:
    subscriptions: set[Subscription] = field(default_factory=set)
    buffer: Batch = field(default_factory=Batch)
    scheduled: bool = False
    last_flush: float = float("-inf")


class Relay:
    """The process's one listener and its subscribers, grouped by event loop."""

    def __init__(self, *, interval: float = FLUSH_INTERVAL,
                 listener_factory: Callable[..., Listener] = Listener):
        self.interval = interval
        self.listener_factory = listener_factory
        self.generation = 0  # bumped by every flush; snapshots are cached per generation
        self._lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._listener: Listener | None = None
        self._retired: list[Listener] = []  # stopped, maybe not yet closed

    # --- subscribers (event loop side) ---------------------------------------------

    async def subscribe(self) -> Subscription:
        loop = asyncio.get_running_loop()
        sub = Subscription(loop)
        with self._lock:
            self._loops.setdefault(loop, _LoopState()).subscriptions.add(sub)
            if self._listener is None or not self._listener.is_alive():
                self._listener = self.listener_factory(
                    self._on_event, on_reconnect=self._on_reconnect, name="ws-relay")
                self._listener.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        listener = None
        with self._lock:
            state = self._loops.get(sub.loop)
            if state is not None:
                state.subscriptions.discard(sub)
                if not state.subscriptions:
                    del self._loops[sub.loop]
            if not self._loops and self._listener is not None:
                # No clients left: close the LISTEN connection rather than hold it idle.
                listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            with self._lock:
                self._retired = [t for t in self._retired if t.is_alive()] + [listener]

    async def wait_listening(self, timeout: float = 5.0) -> bool:
        """True once LISTEN is active, so every change committed from now on arrives."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            listener = self._listener
            if listener is not None and listener.connected.is_set():
                return True
            await asyncio.sleep(0.02)
        return False

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(s.subscriptions) for s in self._loops.values())

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the listener and wait for its connection to close (tests, shutdown)."""
        with self._lock:
            listeners = [t for t in [self._listener, *self._retired] if t is not None]
            self._listener, self._retired = None, []
            self._loops.clear()
        for listener in listeners:
            listener.stop()
        for listener in listeners:
            listener.join(timeout)

    # --- the listener thread's side ------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        event.setdefault("at", timezone.now().isoformat())
        self._fold(lambda batch: batch.add(event))

    def _on_reconnect(self) -> None:
        logger.info("websocket relay reconnected; clients will re-read the state",
                    extra={"action": "relay_resync"})

        def mark(batch: Batch) -> None:
            batch.resync = True

        self._fold(mark)

    def _fold(self, change: Callable[[Batch], None]) -> None:
        with self._lock:
            for loop, state in list(self._loops.items()):
                change(state.buffer)
                if state.scheduled:
                    continue
                try:
                    loop.call_soon_threadsafe(self._schedule, loop)
                except RuntimeError:  # that loop has closed without unsubscribing
                    del self._loops[loop]
                    continue
                state.scheduled = True

    # --- flushing (event loop side) ------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                return
            delay = max(0.0, state.last_flush + self.interval - loop.time())
        loop.call_later(delay, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                return
            batch, state.buffer = state.buffer, Batch()
            state.scheduled = False
            state.last_flush = loop.time()
            self.generation += 1
            batch.generation = self.generation
            subscriptions = list(state.subscriptions)
        for sub in subscriptions:
            sub.deliver(batch)


relay = Relay()
