"""Pruner: deletes finished tasks, with their history, once past their retention.

Retention is per final status (TASKS_RETENTION_SUCCEEDED / _FAILED / _CANCELLED, seconds;
0 keeps that status forever). Work goes in batches of PRUNE_BATCH_SIZE tasks, each
deleted by one statement in its own short transaction, with a rest after each batch:

1. select candidates, oldest first, by the (status, created_at) index, continuing after
   the last batch's position (no rescan of the rows just deleted);
2. delete them in one statement that re-checks the status and age of every row under
   `FOR UPDATE SKIP LOCKED`: a task retried (or being retried) since step 1 is skipped;
   the same statement deletes the history rows of exactly the tasks it deleted (the
   foreign key is checked at commit) and sends one `tasks_pruned` NOTIFY.

Deleting is not a state change, so it leaves no history row: the history goes with it.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass, field

from django.db import connection

from tasks.conf import engine
from tasks.engine.events import CHANNEL, NOTIFY_MAX_IDS
from tasks.maintenance.service import Service, ServiceConfig
from tasks.models import FINISHED_STATUSES

logger = logging.getLogger("tasks.maintenance")

# finished_at >= created_at, so `created_at < cutoff` bounds the index scan to old rows.
_CANDIDATES = """
SELECT id, created_at FROM tasks
WHERE status = %(status)s
  AND created_at < now() - make_interval(secs => %(age)s)
  AND finished_at < now() - make_interval(secs => %(age)s)
  AND created_at >= %(after_created)s AND (created_at, id) > (%(after_created)s, %(after_id)s)
ORDER BY created_at, id
LIMIT %(limit)s
"""

_DELETE = f"""
WITH gone AS (
    DELETE FROM tasks WHERE id IN (
        SELECT id FROM tasks
        WHERE id = ANY(%(ids)s::bigint[]) AND status = %(status)s
          AND finished_at < now() - make_interval(secs => %(age)s)
        FOR UPDATE SKIP LOCKED)
    RETURNING id
), hist AS (
    DELETE FROM task_history WHERE task_id IN (SELECT id FROM gone) RETURNING 1
), counts AS (
    SELECT (SELECT count(*) FROM gone) AS tasks, (SELECT count(*) FROM hist) AS history
), note AS (
    SELECT pg_notify('{CHANNEL}', json_build_object(
        'event', 'tasks_pruned', 'status', %(status)s::text, 'count', c.tasks,
        'history', c.history,
        'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                  (SELECT id FROM gone ORDER BY id LIMIT {NOTIFY_MAX_IDS}) s))::text)
    FROM counts c WHERE c.tasks > 0
)
SELECT c.tasks, c.history FROM counts c LEFT JOIN note ON true
"""

_COUNT = """
WITH doomed AS (
    SELECT id FROM tasks
    WHERE status = %(status)s AND finished_at < now() - make_interval(secs => %(age)s)
)
SELECT (SELECT count(*) FROM doomed),
       (SELECT count(*) FROM task_history h WHERE h.task_id IN (SELECT id FROM doomed))
"""

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class PrunerConfig(ServiceConfig):
    # Seconds a finished task is kept, per final status; 0 (or absent) keeps it forever.
    retention: dict[str, float] = field(default_factory=dict)
    # Seconds of rest per second of work, after each batch: 4 keeps the pruner to a fifth
    # of one connection's time, so a large backlog never crowds out claims and completions
    # (bench/prune.py measures the drain beside it). prunetasks runs with 0: full speed.
    rest: float = 4.0

    @classmethod
    def from_settings(cls, **overrides) -> PrunerConfig:
        cfg = engine()
        values = {
            "interval": cfg.PRUNE_INTERVAL,
            "batch_size": cfg.PRUNE_BATCH_SIZE,
            "retention": {"succeeded": cfg.RETENTION_SUCCEEDED, "failed": cfg.RETENTION_FAILED,
                          "cancelled": cfg.RETENTION_CANCELLED},
        }
        return cls(**{**values, **overrides})


@dataclass
class Pruned:
    """Tasks and history rows deleted (or, for a dry run, that would be) per status."""

    tasks: dict[str, int] = field(default_factory=dict)
    history: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, tasks: int, history: int) -> None:
        self.tasks[status] = self.tasks.get(status, 0) + tasks
        self.history[status] = self.history.get(status, 0) + history

    @property
    def total(self) -> int:
        return sum(self.tasks.values())


@dataclass
class Batch:
    """Candidates of one status, chosen by select(), to be deleted by delete()."""

    status: str
    age: float
    ids: list[int]
    last: tuple[datetime.datetime, int] | None  # keyset position for the next select


class Pruner(Service):
    name = "pruner"

    def __init__(self, config: PrunerConfig | None = None):
        super().__init__(config or PrunerConfig.from_settings())
        self.last = Pruned()  # what the last run_once deleted

    def statuses(self) -> list[tuple[str, float]]:
        """(status, retention seconds) for every status that is pruned at all."""
        retention = self.config.retention
        return [(s, float(retention[s])) for s in FINISHED_STATUSES if retention.get(s, 0) > 0]

    def select(self, status: str, age: float,
               after: tuple[datetime.datetime, int] | None = None) -> Batch:
        after_created, after_id = after or (_EPOCH, 0)
        with connection.cursor() as cursor:
            cursor.execute(_CANDIDATES, {"status": status, "age": age,
                                         "after_created": after_created, "after_id": after_id,
                                         "limit": self.config.batch_size})
            rows = cursor.fetchall()
        return Batch(status, age, [r[0] for r in rows], (rows[-1][1], rows[-1][0]) if rows
                     else None)

    def delete(self, batch: Batch) -> tuple[int, int]:
        """Delete the batch's tasks still finished with that status and old enough, and
        their history, in one transaction; returns (tasks, history rows) deleted."""
        if not batch.ids:
            return 0, 0
        with connection.cursor() as cursor:
            cursor.execute(_DELETE, {"ids": batch.ids, "status": batch.status,
                                     "age": batch.age})
            tasks, history = cursor.fetchone()
        return tasks, history

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Every prunable status, batch after batch until a short one (or `stop`)."""
        self.last = Pruned()
        for status, age in self.statuses():
            after = None
            while stop is None or not stop.is_set():
                started = time.monotonic()
                batch = self.select(status, age, after)
                tasks, history = self.delete(batch)
                self.last.add(status, tasks, history)
                if len(batch.ids) < self.config.batch_size:
                    break
                after = batch.last
                rest = (time.monotonic() - started) * self.config.rest
                if rest > 0:
                    (stop or threading.Event()).wait(rest)
        if self.last.total:
            logger.info("pruned %d finished task(s) and %d history row(s)", self.last.total,
                        sum(self.last.history.values()),
                        extra={"action": "tasks_pruned", "tasks": self.last.tasks})
        return self.last.total

    def count(self) -> Pruned:
        """What run_once would delete now, without deleting anything."""
        found = Pruned()
        for status, age in self.statuses():
            with connection.cursor() as cursor:
                cursor.execute(_COUNT, {"status": status, "age": age})
                found.add(status, *cursor.fetchone())
        return found
