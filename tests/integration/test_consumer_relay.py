"""The relay's coalescing under thousands of events a second (no database: the LISTEN
thread is replaced by one that fires events as fast as it can)."""

from __future__ import annotations

import asyncio
import threading
import time

from tasks.live.relay import FEED_LIMIT, MAX_IDS, Relay


class FiringListener(threading.Thread):
    """Stands in for tasks.listener.Listener: same constructor, same callbacks."""

    def __init__(self, on_event, *, on_reconnect=None, name="fake"):
        super().__init__(name=name, daemon=True)
        self.on_event, self.on_reconnect = on_event, on_reconnect
        self.connected = threading.Event()
        self.stop_event = threading.Event()
        self.go = threading.Event()
        self.events = 0

    def stop(self):
        self.stop_event.set()
        self.go.set()

    def run(self):
        self.connected.set()
        self.go.wait()
        task_id = 0
        while not self.stop_event.is_set() and self.events < FiringListener.total:
            task_id += 1
            self.on_event({"event": "task_succeeded", "count": 1, "ids": [task_id]})
            self.events += 1
            if self.events % 500 == 0:
                time.sleep(0.05)  # ~ 10,000 events/s in bursts of 500
        self.stop_event.wait()


def test_thousands_of_events_a_second_become_a_few_batches_per_client():
    FiringListener.total = 20_000
    relay = Relay(interval=0.25, listener_factory=FiringListener)

    async def client(sub, received):
        while sum(b.totals.get("task_succeeded", 0) for b in received) < FiringListener.total:
            received.append(await sub.next())

    async def scenario():
        subs = [await relay.subscribe() for _ in range(3)]
        assert await relay.wait_listening(2)
        loop = asyncio.get_running_loop()
        received = [[] for _ in subs]
        start = loop.time()
        relay._listener.go.set()
        await asyncio.wait_for(asyncio.gather(*(client(s, r) for s, r in zip(subs, received,
                                                                                strict=True))),
                               timeout=30)
        elapsed = loop.time() - start
        for sub in subs:
            relay.unsubscribe(sub)
        return received, elapsed

    try:
        received, elapsed = asyncio.run(scenario())
    finally:
        relay.shutdown()
    for batches in received:
        assert sum(b.totals["task_succeeded"] for b in batches) == FiringListener.total
        assert sum(b.received for b in batches) == FiringListener.total
        # At most one batch per interval, whatever the event rate.
        assert len(batches) <= elapsed / 0.25 + 2, (len(batches), elapsed)
        assert all(len(b.events) <= FEED_LIMIT for b in batches)
        assert all(len(b.ids) <= MAX_IDS for b in batches)
        assert sum(b.dropped for b in batches) > 0  # the feed shows only the latest
    assert relay.subscriber_count == 0


def test_a_busy_client_gets_one_merged_batch_and_a_resync_after_reconnect():
    FiringListener.total = 1000
    relay = Relay(interval=0.05, listener_factory=FiringListener)

    async def scenario():
        sub = await relay.subscribe()
        assert await relay.wait_listening(2)
        relay._listener.go.set()
        while relay._listener.events < FiringListener.total:
            await asyncio.sleep(0.05)  # the client is busy elsewhere meanwhile
        await asyncio.sleep(0.2)  # the last flush
        batch = await asyncio.wait_for(sub.next(), 2)
        assert batch.received == FiringListener.total
        assert batch.totals == {"task_succeeded": FiringListener.total}
        assert batch.ids_complete and batch.ids == set(range(1, FiringListener.total + 1))
        assert [e["ids"][0] for e in batch.events] == list(range(951, 1001))

        relay._listener.on_reconnect()  # events may have been lost: clients re-read
        resync = await asyncio.wait_for(sub.next(), 2)
        assert resync.resync and resync.received == 0
        relay.unsubscribe(sub)

    try:
        asyncio.run(scenario())
    finally:
        relay.shutdown()
