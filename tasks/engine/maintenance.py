"""Settling what lost workers left behind: expired leases rescued, silent workers forgotten.

The services in tasks/maintenance/ (rescuer, reaper) call these on the elected maintainer;
`reconcile` runs one batch of both under an advisory lock.
"""

from __future__ import annotations

import logging

from django.db import transaction

from tasks import states
from tasks.backoff import backoff_delay
from tasks.conf import engine
from tasks.engine.sql import run

logger = logging.getLogger(__name__)

RECONCILE_LOCK_KEY = 0x7461736B  # "task": one reconciler at a time across all workers


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
                   extra={"action": "reconcile", "task_ids": list(rescued)[:100]})
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


def reconcile(*, limit: int = 1000, worker_timeout: float | None = None) -> dict[int, str] | None:
    """One batch of rescue_expired and reap_workers, under a transaction-level advisory
    lock so one reconciler works at a time; None when another holds it, else
    {task id: new status}. The maintainer (tasks/maintenance/) runs both on its own."""
    with transaction.atomic():
        ((locked,),) = run("try_reconcile_lock", {"key": RECONCILE_LOCK_KEY})
        if not locked:
            return None
        recovered = rescue_expired(limit=limit)
        reap_workers(window=worker_timeout)
    return recovered
