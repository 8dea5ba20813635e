"""Riding through database outages: every role retries its statements the same way."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import Error as DatabaseError
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger("tasks.worker")

# Connection-level trouble (server gone, restarting, network): worth retrying. Other
# database errors (bad data, constraint) would fail the same way again.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def close_connection() -> None:
    """Drop this thread's connection (Django opens a new one on the next query)."""
    try:
        connection.close()
    except DatabaseError:
        pass


def with_db_retry(action: str, fn: Callable[[], Any], *, stop: Callable[[], bool],
                  on_give_up: Any = None, max_delay: float = 10.0) -> Any:
    """Run fn(); through a database outage, log and retry with backoff until it works
    or stop() turns true (then return on_give_up)."""
    delay = 0.2
    while True:
        try:
            return fn()
        except TRANSIENT_DB_ERRORS as exc:
            logger.warning("database unavailable during %s (%s: %s); retrying in %.1fs", action,
                           type(exc).__name__, str(exc).strip()[:200], delay,
                           extra={"action": "db_retry", "during": action})
            close_connection()
            if stop():
                return on_give_up
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
