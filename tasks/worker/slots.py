"""What the worker's roles share: the running jobs, the free slots and the wake-up.

One condition guards it all. The dispatcher waits on it for free slots or a hint of work;
executors, the monitor, the heartbeat and shutdown take jobs out of it; the listener and
the heartbeat hint that there may be work. No role reaches into another's attributes:
they meet here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from plugins.base import TaskContext
from tasks import engine

# How a run ended: each kind is written back by its own queue function.
OK, FAIL, CANCELLED, RELEASE, SNOOZE, DECLINE = ("ok", "fail", "cancelled", "release", "snooze",
                                             "decline")
# A task this worker declined (it cannot run it) is not claimed again for this long, so it
# waits for a worker that can instead of bouncing here; at most this many are remembered.
DECLINE_SECONDS = 300.0
DECLINE_MAX = 10_000


@dataclass(eq=False)
class Job:
    """One claimed task on its way through an executor."""

    task: engine.ClaimedTask
    ctx: TaskContext
    deadline: float
    claimed_at: float
    cancel_deadline: float | None = None
    runner: threading.Thread | None = None
    returned: bool = False  # the plugin call is over (whoever reported the outcome)
    stuck_after: float = 0.0  # when ended early: the plugin must have returned by then
    _done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finish(self) -> bool:
        """Claim the right to report this run's outcome; only the first caller wins."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def outcome(self, **kwargs) -> engine.Outcome:
        return engine.Outcome(task_id=self.task.id, attempt=self.task.attempt,
                              retry_count=self.task.retry_count, **kwargs)


class Slots:
    """The running jobs by task id, how many more may start, and why the dispatcher wakes."""

    def __init__(self, *, concurrency: int, max_tasks: int | None = None):
        self.concurrency = concurrency
        # A busy dispatcher claims once this many slots are free, so one statement takes
        # several tasks; a freed slot wakes it only when it crosses that mark.
        self.batch_min = max(1, concurrency // 2)
        self.max_tasks = max_tasks
        self.cond = threading.Condition(threading.RLock())  # RLock: signal handlers use it
        self.running: dict[int, Job] = {}
        self.claimed_total = 0
        self.work_hint = True  # something may be claimable; set by LISTEN and polls
        # Due tasks wait for a queue's concurrency limit: a finished run may free a slot.
        self.held_back = False
        self.stopping = False
        self._declined: dict[int, float] = {}  # task id -> when it may be claimed again

    def decline(self, task_id: int) -> None:
        """This worker cannot run the task: skip it in claims for DECLINE_SECONDS. The
        run does not count towards --max-tasks."""
        with self.cond:
            self._declined.pop(task_id, None)
            self._declined[task_id] = time.monotonic() + DECLINE_SECONDS
            while len(self._declined) > DECLINE_MAX:
                del self._declined[next(iter(self._declined))]
            self.claimed_total -= 1

    def declined(self) -> list[int]:
        """Ids to leave out of claims now (expired ones are forgotten)."""
        now = time.monotonic()
        with self.cond:
            for task_id in [i for i, until in self._declined.items() if until <= now]:
                del self._declined[task_id]
            return list(self._declined)

    def free(self) -> int:
        with self.cond:
            free = self.concurrency - len(self.running)
            if self.max_tasks is not None:
                free = min(free, self.max_tasks - self.claimed_total)
            return free

    def all_claimed(self) -> bool:
        """--max-tasks reached: claim nothing more."""
        return self.max_tasks is not None and self.claimed_total >= self.max_tasks

    def add(self, jobs: Iterable[Job]) -> None:
        with self.cond:
            for job in jobs:
                self.running[job.task.id] = job
                self.claimed_total += 1

    def get(self, task_id: int) -> Job | None:
        with self.cond:
            return self.running.get(task_id)

    def jobs(self) -> list[Job]:
        with self.cond:
            return list(self.running.values())

    def remove(self, job: Job) -> None:
        """The run is over for this worker: its slot is free again.

        The dispatcher waits for one free slot when all are taken, for batch_min of them
        when busy, and shutdown for none running: only those crossings wake it, not every
        finished run (one wake-up per task would cost more than a no-op task's run)."""
        with self.cond:
            # Only this run: the same task may since have been claimed again (a lost lease).
            if self.running.get(job.task.id) is job:
                del self.running[job.task.id]
                free = self.concurrency - len(self.running)
                if free == 1 or free == self.batch_min or not self.running:
                    self.cond.notify_all()

    def hint_work(self) -> None:
        with self.cond:
            self.work_hint = True
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def wait_empty(self, timeout: float) -> list[Job]:
        """Wait until no job runs (at most `timeout` s); returns the jobs still running."""
        with self.cond:
            self.cond.wait_for(lambda: not self.running, timeout=timeout)
            return list(self.running.values())
