"""What every maintenance service shares: a config, batches until a short one, a loop."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.db import Error as DatabaseError
from django.db import connection

logger = logging.getLogger("tasks.maintenance")


@dataclass(frozen=True)
class ServiceConfig:
    interval: float  # seconds between runs
    batch_size: int  # rows per statement: each batch is one short transaction


class Service:
    """A periodic job of the maintainer. Subclasses implement run_batch().

    Every service must be safe to run twice at once (two maintainers for a moment during
    a failover, or prunetasks beside the leader): statements skip rows others hold.
    """

    name = "service"

    def __init__(self, config: ServiceConfig):
        self.config = config

    def run_batch(self) -> int:
        """Handle at most config.batch_size rows; return how many were handled."""
        raise NotImplementedError

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Batches until a short one (nothing more to do now), or until `stop` is set."""
        total = 0
        while True:
            done = self.run_batch()
            total += done
            if done < self.config.batch_size or (stop is not None and stop.is_set()):
                return total

    def loop(self, stop: threading.Event) -> None:
        """run_once now and every interval until `stop`; database errors wait a turn."""
        try:
            while not stop.is_set():
                try:
                    self.run_once(stop)
                except DatabaseError as exc:
                    logger.warning("%s: database error (%s); retrying in %.1fs", self.name,
                                   type(exc).__name__, self.config.interval,
                                   extra={"action": "maintenance_retry", "service": self.name})
                    _close()
                except Exception:
                    # A bug in one run must not end the service for the leader's lifetime.
                    logger.exception("%s: run failed; retrying in %.1fs", self.name,
                                     self.config.interval,
                                     extra={"action": "maintenance_error", "service": self.name})
                stop.wait(self.config.interval)
        finally:
            _close()  # this thread's own connection


def _close() -> None:
    try:
        connection.close()
    except DatabaseError:
        pass
