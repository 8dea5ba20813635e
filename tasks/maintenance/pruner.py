"""Pruner: deletes finished tasks, with their history, once past their retention.

Retention is per final status (TASKS_RETENTION_SUCCEEDED / _FAILED / _CANCELLED, seconds;
0 keeps that status forever), counted from when the task finished (`finished_at`). For
each status the pruner walks the finished tasks oldest first by the partial index
idx_finished_at, in windows of PRUNE_BATCH_SIZE tasks, each window one short transaction
(engine.prune_finished) with a rest after it:

1. lock the window's tasks of that status, and their kin (queries.sql: lock_prunable),
   skipping rows another session holds;
2. delete, in one statement that re-checks every locked task with a fresh view
   (prune_finished), those that may go now, with their history, the workflows left
   empty, and one `tasks_pruned` event.

Tasks linked by dependencies are kept for each other: a parent stays while one of its
children that has not succeeded stays (so a child that runs or is retried still has its
parents' results), and a task cancelled by a parent's failure stays until that parent
goes (a retry of the parent brings it back); then they go together.

A walk goes on from where the last run left it, so a run reads only what finished since;
a task passed over (locked at that moment) is seen again by the next full walk, from the
oldest, every PrunerConfig.sweep seconds. Deleting is not a state change, so it leaves no
history row: the history goes with it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.engine.maintenance import Position
from tasks.maintenance.service import Service, ServiceConfig
from tasks.models import FINISHED_STATUSES
from tasks.states import Status

logger = logging.getLogger("tasks.maintenance")


@dataclass(frozen=True)
class PrunerConfig(ServiceConfig):
    # Seconds a finished task is kept, per final status; 0 (or absent) keeps it forever.
    retention: dict[str, float] = field(default_factory=dict)
    # Seconds of rest per second of work, after each batch: 4 keeps the pruner to a fifth
    # of one connection's time, so a large backlog never crowds out claims and completions
    # (bench/prune.py measures the drain beside it). prunetasks runs with 0: full speed.
    rest: float = 4.0
    # Seconds between full walks from the oldest finished task; the runs between go on
    # from where the last one stopped.
    sweep: float = 3600.0

    @classmethod
    def from_settings(cls, **overrides) -> PrunerConfig:
        cfg = engine_settings()
        values = {
            "interval": cfg.PRUNE_INTERVAL,
            "batch_size": cfg.PRUNE_BATCH_SIZE,
            "retention": {Status.SUCCEEDED: cfg.RETENTION_SUCCEEDED,
                          Status.FAILED: cfg.RETENTION_FAILED,
                          Status.CANCELLED: cfg.RETENTION_CANCELLED},
        }
        return cls(**{**values, **overrides})


@dataclass
class Pruned:
    """Tasks and history rows deleted (or, for a dry run, that would be) per status."""

    tasks: dict[str, int] = field(default_factory=dict)
    history: dict[str, int] = field(default_factory=dict)
    workflows: int = 0

    def add(self, status: str, tasks: int, history: int) -> None:
        self.tasks[status] = self.tasks.get(status, 0) + tasks
        self.history[status] = self.history.get(status, 0) + history

    def add_batch(self, batch: engine.PruneBatch) -> None:
        for status, tasks in batch.tasks.items():
            self.add(status, tasks, batch.history.get(status, 0))
        self.workflows += batch.workflows

    @property
    def total(self) -> int:
        return sum(self.tasks.values())


class Pruner(Service):
    name = "pruner"

    def __init__(self, config: PrunerConfig | None = None):
        super().__init__(config or PrunerConfig.from_settings())
        self.last = Pruned()  # what the last run_once deleted
        self.position: dict[str, Position] = {}  # per status walk
        self._swept_at: float | None = None  # when the last full walk began (monotonic)

    def statuses(self) -> list[tuple[str, float]]:
        """(status, retention seconds) for every status that is pruned at all."""
        retention = self.config.retention
        return [(s, float(retention[s])) for s in FINISHED_STATUSES if retention.get(s, 0) > 0]

    def prune_batch(self, status: str, after: Position | None
                    ) -> engine.PruneBatch:
        """One window of the walk of `status` after `after` (bench/prune.py times it)."""
        return engine.prune_finished(status=status, retention=self.config.retention,
                                     limit=self.config.batch_size, after=after)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Every prunable status, window after window until a short one (or `stop`)."""
        self.last = Pruned()
        now = time.monotonic()
        if self._swept_at is None or now - self._swept_at >= self.config.sweep:
            self._swept_at, self.position = now, {}  # a full walk, from the oldest
        for status, _age in self.statuses():
            after = self.position.get(status)
            while stop is None or not stop.is_set():
                started = time.monotonic()
                batch = self.prune_batch(status, after)
                self.last.add_batch(batch)
                after = batch.position or after
                if batch.scanned < self.config.batch_size:
                    break
                rest = (time.monotonic() - started) * self.config.rest
                if rest > 0:
                    (stop or threading.Event()).wait(rest)
            if after is not None:
                self.position[status] = after
        if self.last.total:
            logger.info("pruned %d finished task(s) and %d history row(s)", self.last.total,
                        sum(self.last.history.values()),
                        extra={"action": "tasks_pruned", "tasks": self.last.tasks,
                               "workflows": self.last.workflows})
        return self.last.total

    def count(self) -> Pruned:
        """About what run_once would delete now, without deleting anything."""
        found = Pruned()
        for status, _age in self.statuses():
            found.add(status, *engine.count_prunable(status=status,
                                                     retention=self.config.retention))
        return found
