"""The completer: writes finished runs back in batches, one statement per kind of outcome.

Executors and the monitor `submit` outcomes; one thread drains them, up to MAX_BATCH at a
time, so a busy worker pays one round trip for many runs. Through an outage it retries
forever: these outcomes exist nowhere else. If a batch is refused (data the database or
its driver cannot take, not an outage), it splits until the one outcome refused is found,
and the rest land; a refused result fails its run instead.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time

from django.db import Error as DatabaseError

from tasks import engine
from tasks.worker.commits import commit_without_waiting
from tasks.worker.dbretry import close_connection, with_db_retry
from tasks.worker.hooks import Hooks
from tasks.worker.slots import CANCELLED, DECLINE, FAIL, OK, RELEASE, SNOOZE

logger = logging.getLogger("tasks.worker")

MAX_BATCH = 1000
LINGER = 0.002  # seconds a batch gathers after its first outcome arrives

# What one outcome can make a statement fail with: the database refusing its data, or
# its data failing to be encoded on the way (an int too long to print, a lone surrogate).
REFUSALS = (DatabaseError, ValueError, RecursionError)

WRITERS = {OK: engine.complete, FAIL: engine.fail, CANCELLED: engine.finish_cancelled,
           RELEASE: engine.release, SNOOZE: engine.snooze, DECLINE: engine.decline}


class Completer:
    def __init__(self, *, worker_id: str, hooks: Hooks):
        self.worker_id = worker_id
        self.hooks = hooks
        self.outcomes: stdqueue.SimpleQueue[tuple[str, engine.Outcome]] = stdqueue.SimpleQueue()
        self.cond = threading.Condition()
        self.pending = 0  # submitted but not yet written
        self.gone = False  # the thread ended: nothing more will be written

    def submit(self, kind: str, outcome: engine.Outcome) -> None:
        with self.cond:
            self.pending += 1
        self.outcomes.put((kind, outcome))

    def wait_written(self, timeout: float) -> bool:
        """Wait until every submitted outcome is written (or can no longer be)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.pending == 0 or self.gone, timeout=timeout)

    def run(self, stopped: threading.Event) -> None:
        """The completer thread: until `stopped` is set and nothing is left to write."""
        commit_without_waiting()
        try:
            while True:
                try:
                    first = self.outcomes.get(timeout=0.2)
                except stdqueue.Empty:
                    if stopped.is_set():
                        return
                    continue
                # Let the outcomes of a busy worker gather so one statement writes them:
                # meanwhile nothing waits on the queue, so executors wake nobody.
                time.sleep(LINGER)
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self.outcomes.get_nowait())
                    except stdqueue.Empty:
                        break
                self.write(batch)
                with self.cond:
                    self.pending -= len(batch)
                    self.cond.notify_all()
                self.hooks.emit("completed_batch", outcomes=batch)
        finally:
            with self.cond:
                self.gone = True
                self.cond.notify_all()

    def write(self, batch: list[tuple[str, engine.Outcome]]) -> None:
        groups: dict[str, list[engine.Outcome]] = {}
        for kind, outcome in batch:
            groups.setdefault(kind, []).append(outcome)
        for kind, outcomes in groups.items():
            self._write_group(kind, outcomes)

    def _write_group(self, kind: str, outcomes: list[engine.Outcome]) -> None:
        writer = WRITERS[kind]
        try:
            # Keep retrying through an outage. If the process dies first, the leases
            # expire and the rescuer recovers the tasks.
            with_db_retry(f"write {kind}",
                          lambda: writer(worker_id=self.worker_id, outcomes=outcomes),
                          stop=lambda: False)
        except REFUSALS as exc:
            if isinstance(exc, DatabaseError):
                close_connection()
            if len(outcomes) > 1:  # find the one refused; write the rest
                for outcome in outcomes:
                    self._write_group(kind, [outcome])
                return
            outcome = outcomes[0]
            logger.error("task %s: its %s outcome was refused (%s: %s)", outcome.task_id,
                         kind, type(exc).__name__, exc,
                         extra={"action": "write_refused", "task_id": outcome.task_id})
            self.hooks.emit("write_refused", task_id=outcome.task_id, kind=kind, error=str(exc))
            if kind == OK:  # e.g. a result jsonb cannot hold: fail the run instead
                outcome.error = f"could not store the result: {type(exc).__name__}: {exc}"
                outcome.error_class = f"{type(exc).__module__}.{type(exc).__qualname__}"
                outcome.error_message = outcome.error
                self._write_group(FAIL, [outcome])
            # Otherwise the task stays running until its lease expires (once this worker
            # stops renewing it); the rescuer then settles it.
