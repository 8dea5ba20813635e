"""Queues an operator steers: pause, resume, and cluster-wide limits.

Each verb is one statement (queries.sql: set_queue) that writes the queue's row, an audit
row naming who did it and one event (queue_paused, queue_resumed, queue_limits_changed),
so workers held back by a pause or a limit wake at once and the dashboard follows.
The limits themselves are enforced by the claim (runs.claim: claim_limited).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tasks.engine.events import QUEUE_LIMITS_CHANGED, QUEUE_PAUSED, QUEUE_RESUMED
from tasks.engine.sql import run
from tasks.engine.submit import QUEUE_NAME_RE
from tasks.exceptions import InvalidInput

MAX_CONCURRENCY_LIMIT = 1_000_000
MAX_RATE_LIMIT = 1_000_000.0
_UNSET: Any = object()


@dataclass(frozen=True)
class QueueState:
    name: str
    paused: bool
    concurrency_limit: int | None
    rate_limit: float | None


def burst(rate_limit: float) -> float:
    """Tokens a queue's bucket holds at most: starts in any one-second window are at most
    rate_limit + burst - 1 (exactly rate_limit for rates up to 10 per second)."""
    return max(1.0, rate_limit / 10)


def _name(name: Any) -> str:
    if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
        raise InvalidInput({"name": [
            "Must be 1-100 characters of letters, digits, '_', '-', '.', ':'."]})
    return name


def _set(name: str, action: str, actor: str, *, paused: bool | None = None,
         concurrency_limit: Any = _UNSET, rate_limit: Any = _UNSET) -> QueueState:
    rows = run("set_queue", {
        "name": _name(name), "action": action, "actor": actor or "", "paused": paused,
        "set_concurrency": concurrency_limit is not _UNSET,
        "concurrency_limit": None if concurrency_limit is _UNSET else concurrency_limit,
        "set_rate": rate_limit is not _UNSET,
        "rate_limit": None if rate_limit is _UNSET else rate_limit,
    })
    ((qname, qpaused, climit, rlimit),) = rows
    return QueueState(qname, qpaused, climit, rlimit)


def pause(name: str, *, actor: str = "") -> QueueState:
    """No worker claims from the queue until it is resumed; its tasks stay queued, new
    ones are accepted, running ones finish."""
    return _set(name, QUEUE_PAUSED, actor, paused=True)


def resume(name: str, *, actor: str = "") -> QueueState:
    """Workers claim from the queue again (and wake at once)."""
    return _set(name, QUEUE_RESUMED, actor, paused=False)


def _concurrency(value: Any, errors: dict) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_CONCURRENCY_LIMIT:
        errors["concurrency_limit"] = [
            f"Must be null or an integer from 1 to {MAX_CONCURRENCY_LIMIT}."]
        return None
    return value


def _rate(value: Any, errors: dict) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 < value <= MAX_RATE_LIMIT:
        errors["rate_limit"] = [
            f"Must be null or a number of starts per second above 0, at most "
            f"{MAX_RATE_LIMIT:g}."]
        return None
    return float(value)


def set_limits(name: str, *, concurrency_limit: Any = _UNSET, rate_limit: Any = _UNSET,
               actor: str = "") -> QueueState:
    """Set either limit or both (None removes one; a limit not given is kept).

    concurrency_limit: most tasks of the queue running at once across the cluster;
    rate_limit: most task starts per second across the cluster (see burst()).
    """
    errors: dict[str, list[str]] = {}
    _name(name)
    if concurrency_limit is not _UNSET:
        concurrency_limit = _concurrency(concurrency_limit, errors)
    if rate_limit is not _UNSET:
        rate_limit = _rate(rate_limit, errors)
    if concurrency_limit is _UNSET and rate_limit is _UNSET and not errors:
        errors["non_field_errors"] = ["Give concurrency_limit, rate_limit or both."]
    if errors:
        raise InvalidInput(errors)
    return _set(name, QUEUE_LIMITS_CHANGED, actor, concurrency_limit=concurrency_limit,
                rate_limit=rate_limit)
