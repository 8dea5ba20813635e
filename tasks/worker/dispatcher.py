"""The dispatcher: the worker's main loop. It claims as many due tasks as there are free
slots, in one statement, and hands them to the executors.

It sleeps until a slot frees up or there may be work: a LISTEN wake-up, the rescuer
recovering tasks, or the poll fallback (sooner when a deferred task falls due or a
rate-limited queue's next token does, since those send no event). Paused and limited
queues never make it spin: their tasks count as due only when a claim could take them.
On a busy queue it lets a few slots free up so one claim takes several.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from plugins import registry
from plugins.base import TaskContext
from tasks import engine
from tasks.conf import EngineSettings
from tasks.worker.commits import commit_without_waiting
from tasks.worker.dbretry import with_db_retry
from tasks.worker.hooks import Hooks
from tasks.worker.slots import Job, Slots


class Dispatcher:
    def __init__(self, *, slots: Slots, cfg: EngineSettings, worker_id: str,
                 queues: Sequence[str], batch: bool, listen: bool,
                 hand_off: Callable[[Job], None], hooks: Hooks):
        self.slots = slots
        self.cfg = cfg
        self.worker_id = worker_id
        self.queues = list(queues)
        self.batch = batch
        self.listen = listen
        self.hand_off = hand_off
        self.hooks = hooks
        self.loggers: dict[str, logging.Logger] = {}  # plugins.<type>, one per type

    def run(self) -> None:
        """Claim and hand off until stopped, or until --batch / --max-tasks are done."""
        commit_without_waiting()
        slots = self.slots
        cond = slots.cond
        batch_min = slots.batch_min
        while True:
            with cond:
                if slots.stopping:
                    return
                if slots.all_claimed():
                    if not slots.running:
                        return
                    cond.wait(0.1)
                    continue
                if slots.free() <= 0:
                    cond.wait(self.cfg.POLL_INTERVAL)
                    continue
                idle = not slots.work_hint
            if idle:
                # Computed outside the lock: it may query (and wait out) the database.
                timeout = self._idle_timeout()
                with cond:
                    if not slots.work_hint and not slots.stopping:
                        cond.wait(timeout)
                    slots.work_hint = True  # a wake-up, or the poll fallback
                continue
            with cond:
                # Busy queue: let a few slots free up so one statement claims several.
                if slots.free() < batch_min and slots.running:
                    cond.wait_for(lambda: slots.free() >= batch_min or slots.stopping,
                                  timeout=0.005)
                free = slots.free()
                slots.work_hint = False
            if free <= 0:
                continue
            claimed = self._claim(free)
            if len(claimed) >= free:
                slots.work_hint = True  # likely more waiting
            elif self.batch and not claimed:
                with cond:
                    if not slots.running and not slots.work_hint:
                        return

    def _idle_timeout(self) -> float:
        timeout = self.cfg.POLL_INTERVAL if not self.batch else min(self.cfg.POLL_INTERVAL, 0.2)
        if self.listen and not self.batch:
            # Deferred and retrying tasks send no event when they fall due, nor does a
            # rate-limited queue's next token. Tasks held back by a concurrency limit
            # wait for a run to finish (its event wakes this worker: slots.held_back).
            # Held back while the query runs, so a run finishing meanwhile still wakes it.
            self.slots.held_back = True
            due, held = with_db_retry(
                "next_due", lambda: engine.idle_hint(
                    self.queues, types=registry.runnable_types(), skip=self.slots.declined()),
                stop=lambda: self.slots.stopping, on_give_up=(None, False))
            self.slots.held_back = held
            if due is not None:
                timeout = min(timeout, max(due, 0.001))
        return timeout

    def _write_progress(self, task: engine.ClaimedTask, value: dict) -> None:
        engine.progress(worker_id=self.worker_id, task_id=task.id, attempt=task.attempt,
                        **value)

    def _claim(self, limit: int) -> list[engine.ClaimedTask]:
        tasks = with_db_retry(
            "claim",
            # Only what this worker can run: its plugins' types, less what it declined.
            lambda: engine.claim(worker_id=self.worker_id, limit=limit, queues=self.queues,
                                 types=registry.runnable_types(), skip=self.slots.declined()),
            stop=lambda: self.slots.stopping, on_give_up=[])
        now = time.monotonic()
        jobs = []
        loggers = self.loggers
        for task in tasks:
            logger = loggers.get(task.type)
            if logger is None:
                logger = loggers[task.type] = logging.getLogger(f"plugins.{task.type}")
            ctx = TaskContext(task_id=task.id, attempt=task.attempt,
                              deadline=now + task.timeout_seconds, logger=logger,
                              task_type=task.type, queue=task.queue, worker_id=self.worker_id,
                              load_parent_results=partial(engine.parent_results, task.id),
                              write_progress=partial(self._write_progress, task))
            jobs.append(Job(task=task, ctx=ctx, deadline=ctx.deadline, claimed_at=now))
        # Every job is in the slots before any executor can finish (and remove) one.
        self.slots.add(jobs)
        for job in jobs:
            self.hand_off(job)
        if tasks:
            self.hooks.emit("claimed", tasks=tasks)
        return tasks
