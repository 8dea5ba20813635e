"""Housekeeping: renew leases, notice lost ones, poll cancels without LISTEN.

Every HEARTBEAT_INTERVAL the worker renews the leases of its running tasks (and its own
row, registering again if an outage expired it); a run the database no longer gives to
this worker lost its lease, and is stopped and dropped unreported, because someone else
may already run it. Expired leases of any worker are the maintainer's (tasks/maintenance/).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from django.db import Error as DatabaseError

from plugins import registry
from tasks import engine
from tasks.conf import EngineSettings
from tasks.worker.commits import commit_without_waiting
from tasks.worker.dbretry import close_connection
from tasks.worker.hooks import Hooks
from tasks.worker.slots import Slots

logger = logging.getLogger("tasks.worker")


class Heartbeat:
    def __init__(self, *, slots: Slots, cfg: EngineSettings, worker_id: str,
                 queues: Sequence[str], listen: bool,
                 request_cancel: Callable[[Iterable[int]], None], hooks: Hooks):
        self.slots = slots
        self.cfg = cfg
        self.worker_id = worker_id
        self.queues = list(queues)
        self.listen = listen
        self.request_cancel = request_cancel
        self.hooks = hooks

    def register(self) -> None:
        engine.register_worker(worker_id=self.worker_id, hostname=socket.gethostname(),
                               pid=os.getpid(), queues=self.queues,
                               concurrency=self.slots.concurrency,
                               types=registry.runnable_types())

    def run(self, stopped: threading.Event) -> None:
        """The housekeeping thread: until `stopped` is set."""
        commit_without_waiting()
        cfg = self.cfg
        now = time.monotonic()
        next_beat, next_cancel_poll = now, now
        while not stopped.wait(min(0.25, cfg.POLL_INTERVAL)):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + cfg.HEARTBEAT_INTERVAL
                    self.beat(now)
                if not self.listen and now >= next_cancel_poll and self.slots.running:
                    # Without LISTEN, cancellations are polled at the poll interval.
                    next_cancel_poll = now + cfg.POLL_INTERVAL
                    self.request_cancel(engine.cancel_requested_ids(worker_id=self.worker_id))
            except DatabaseError as exc:
                logger.warning("database error during housekeeping (%s); will retry",
                               type(exc).__name__, extra={"action": "db_retry"})
                close_connection()

    def beat(self, started: float) -> None:
        """Renew this worker's leases; drop the runs claimed before `started` that it no
        longer holds."""
        beat = engine.heartbeat(worker_id=self.worker_id)
        if not beat.registered:
            self.register()
        if beat.cancel_requested:
            self.request_cancel(beat.cancel_requested)
        lost = [job for job in self.slots.jobs()
                if job.task.id not in beat.held and job.claimed_at < started]
        for job in lost:
            # The rescuer gave this run to someone else; stop it and report nothing.
            if job.finish():
                job.ctx.cancel("lease lost")
                self.slots.remove(job)
                logger.warning("task %s: lease lost; dropping this run", job.task.id,
                               extra={"action": "lease_lost", "task_id": job.task.id})
                self.hooks.emit("lease_lost", task_id=job.task.id)
