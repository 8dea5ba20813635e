"""The maintenance verbs: expired leases rescued, silent workers forgotten, finished tasks
pruned. The services in tasks/maintenance/ (rescuer, reaper, pruner) call these on the
elected maintainer (tasks/maintenance/maintainer.py: one leader per cluster).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import transaction

from tasks import states
from tasks.backoff import backoff_delay
from tasks.conf import engine
from tasks.engine.sql import run
from tasks.states import FINISHED

logger = logging.getLogger(__name__)


def rescue_expired(*, limit: int = 1000, rand=None) -> dict[int, str]:
    """Settle up to `limit` running tasks whose lease expired (their worker was lost).

    Each one is retried after backoff_delay(retry_count), as a failed run would be, or
    fails for good, or ends cancelled if a cancel was requested; returns {task id: status}.
    Rows another session holds are skipped, so concurrent rescuers never collide.
    """
    cfg = engine()
    kwargs = {"rand": rand} if rand else {}
    with transaction.atomic():
        rows = run("select_expired", {"limit": limit})
        if not rows:
            return {}
        rescued = dict(run("rescue_expired", {
            "ids": [r[0] for r in rows],
            "delays": [backoff_delay(r[1], base=cfg.BACKOFF_BASE, cap=cfg.BACKOFF_CAP,
                                     **kwargs) for r in rows],
            "workers": [r[2] for r in rows],
            "leases": [r[3] for r in rows],
        }))
    logger.warning("recovered %d task(s) with expired leases", len(rescued),
                   extra={"action": "lease_expired", "task_ids": list(rescued)[:100]})
    return rescued


def liveness_window() -> float:
    """Seconds of heartbeat silence after which a worker counts as gone."""
    return states.liveness_window(engine())


def reap_workers(*, window: float | None = None, limit: int = 1000) -> list[str]:
    """Forget up to `limit` workers silent for longer than `window` seconds (default: the
    liveness window); one worker_offline event each. Returns their ids."""
    window = liveness_window() if window is None else window
    gone = [r[0] for r in run("reap_workers", {"window": window, "limit": limit})]
    if gone:
        logger.warning("forgot %d silent worker(s): %s", len(gone), ", ".join(gone[:20]),
                       extra={"action": "worker_reaped", "workers": gone[:100]})
    return gone


# --- pruning -------------------------------------------------------------------------

Position = tuple[datetime.datetime, int]  # (finished_at, id): where a walk has got to
_START: Position = (datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC), 0)


@dataclass
class Window:
    """The tasks lock_prunable locked, and the window of finished tasks it looked at."""

    ids: list[int]
    scanned: int  # tasks in the window, of any status: fewer than the limit ends a walk
    position: Position | None  # the window's last task; None when it was empty


@dataclass
class PruneBatch:
    """What one batch of pruning deleted, per final status, and where its walk got to."""

    tasks: dict[str, int] = field(default_factory=dict)
    history: dict[str, int] = field(default_factory=dict)
    workflows: int = 0
    scanned: int = 0
    position: Position | None = None


def _retention(retention: Mapping[str, float]) -> dict[str, list]:
    unknown = set(retention) - FINISHED
    if unknown:
        raise ValueError(f"retention is for finished statuses only, not {sorted(unknown)}")
    kept = sorted(s for s, age in retention.items() if age and age > 0)
    return {"statuses": kept, "ages": [float(retention[s]) for s in kept]}


def lock_prunable(*, status: str, age: float, limit: int,
                  after: Position | None = None) -> Window:
    """Lock the tasks of `status` among the next `limit` finished more than `age` seconds
    ago (after `after`, in finished_at order), with their kin (queries.sql). Call inside
    a transaction, then prune_locked() in the same one."""
    after_at, after_id = after or _START
    ((ids, scanned, last_at, last_id),) = run("lock_prunable", {
        "status": status, "age": float(age), "limit": limit, "after_at": after_at,
        "after_id": after_id})
    return Window(list(ids), scanned, (last_at, last_id) if last_id is not None else None)


def prune_locked(ids: list[int], *, status: str, retention: Mapping[str, float]) -> PruneBatch:
    """Delete those of `ids` (locked by lock_prunable) that may go now under `retention`
    ({final status: seconds}, 0 or absent: kept), with their history and the workflows
    left empty; one tasks_pruned event naming `status`, the status being walked."""
    batch = PruneBatch()
    if not ids:
        return batch
    for name, tasks, history, workflows in run("prune_finished", {
            "ids": ids, "status": status, **_retention(retention)}):
        batch.tasks[name] = tasks
        batch.history[name] = history
        batch.workflows = workflows
    return batch


def prune_finished(*, status: str, retention: Mapping[str, float], limit: int,
                   after: Position | None = None) -> PruneBatch:
    """One batch of pruning, in one short transaction: the next window of up to `limit`
    tasks finished before the retention of `status` (after `after`), and of its tasks of
    that status those that may go now, with their kin (see queries.sql: lock_prunable,
    prune_finished). The pruner walks a status batch after batch from `position` until
    `scanned` falls short of `limit`."""
    age = retention.get(status, 0)
    if status not in FINISHED or not age or age <= 0:
        raise ValueError(f"{status!r} is not a finished status with a retention")
    with transaction.atomic():
        window = lock_prunable(status=status, age=age, limit=limit, after=after)
        batch = prune_locked(window.ids, status=status, retention=retention)
    batch.scanned, batch.position = window.scanned, window.position
    return batch


def count_prunable(*, status: str, retention: Mapping[str, float]) -> tuple[int, int]:
    """About how many tasks of `status`, and history rows, pruning would delete now."""
    if not retention.get(status, 0) > 0:
        return 0, 0
    ((tasks, history),) = run("count_prunable", {"status": status, **_retention(retention)})
    return tasks, history
