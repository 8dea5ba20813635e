"""The maintainer: one per cluster, elected by a PostgreSQL advisory lock.

Every worker process may host a Maintainer; the one whose dedicated connection holds the
session-level advisory lock MAINTAINER_LOCK_KEY leads and runs the services (rescuer,
reaper, pruner, scheduler), each in its own thread on its own interval. The others try to
take the lock every election interval.

Why a session advisory lock on its own connection rather than a leader row with an
expiry (River's choice): it needs no table of its own, and the lock goes the moment the
leader's session ends, so a dead or stopped leader is replaced within one election
interval instead of one expiry. A leader that cannot reach the database notices at its
next check (the check fails) and stops its services; the server drops the session, and
with it the lock, once its TCP keepalives give up on the peer (set to about 25 s on this
session). The lock needs a real session: through PgBouncer in transaction pooling the
maintainer's connection must bypass the pooler (the check then fails safe: a leader that
finds its lock gone on its backend resigns).

For a moment around a failover two maintainers may both run services; every service is
safe to run concurrently (its statements skip rows others hold and re-check states).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import psycopg

from tasks.conf import engine
from tasks.listener import connect_kwargs
from tasks.maintenance.pruner import Pruner
from tasks.maintenance.reaper import Reaper
from tasks.maintenance.rescuer import Rescuer
from tasks.maintenance.scheduler import Scheduler
from tasks.maintenance.service import Service

logger = logging.getLogger("tasks.maintenance")

MAINTAINER_LOCK_KEY = 0x7461736B6D61696E  # "taskmain"

# Seconds before the server gives up on a silent leader and frees the lock.
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}
_SESSION_SETUP = (f"SET application_name = 'taskservice maintainer {os.getpid()}'; "
                  "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
                  "SET tcp_keepalives_count = 3; SET statement_timeout = '10s'")
_HOLDS_LOCK = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
      AND ((classid::bigint << 32) | objid::bigint) = %s)
"""


def default_services() -> list[Service]:
    return [Rescuer(), Reaper(), Pruner(), Scheduler()]


class Maintainer:
    """Campaign for leadership and run the services while leading.

    start()/stop() run it in a thread; tests may also call run_once() (every service's
    run_once, once) or drive elect() step by step.
    """

    def __init__(self, services: Sequence[Service] | None = None, *,
                 election_interval: float | None = None, alias: str = "default",
                 lock_key: int = MAINTAINER_LOCK_KEY, name: str = "maintainer"):
        self.services = list(default_services() if services is None else services)
        self.election_interval = (engine().MAINTAINER_ELECTION_INTERVAL
                                  if election_interval is None else election_interval)
        self.alias = alias
        self.lock_key = lock_key
        self.name = name
        self.leading = threading.Event()  # set while this maintainer holds the lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self._service_stop: threading.Event | None = None
        self._service_threads: list[threading.Thread] = []

    # --- as a thread -----------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the services (each finishes its current batch), then free the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.elect()
                self._stop.wait(self.election_interval)
        finally:
            self._resign()

    # --- election ----------------------------------------------------------------------

    def elect(self) -> bool:
        """One election step: take the lock if free, or check it is still ours.

        Starts the services on winning, stops them on losing; returns whether we lead.
        """
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(autocommit=True, connect_timeout=5,
                                             **{**connect_kwargs(self.alias), **_KEEPALIVE})
                self._conn.execute(_SESSION_SETUP)
            if self.leading.is_set():
                held = self._conn.execute(_HOLDS_LOCK, [self.lock_key]).fetchone()[0]
                if not held:
                    logger.warning("maintainer %s: the leader lock is gone; following",
                                   self.name, extra={"action": "maintainer_lost"})
                    self._stop_services()
            else:
                won = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                         [self.lock_key]).fetchone()[0]
                if won:
                    logger.info("maintainer %s: leading", self.name,
                                extra={"action": "maintainer_leading"})
                    self._start_services()
        except psycopg.Error as exc:
            if self.leading.is_set():
                logger.warning("maintainer %s: lost its database session (%s); following "
                               "until it reconnects", self.name, type(exc).__name__,
                               extra={"action": "maintainer_lost"})
            self._stop_services()
            self._close()
        return self.leading.is_set()

    def _resign(self) -> None:
        self._stop_services()
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass  # the session is gone, and the lock with it
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    # --- services ----------------------------------------------------------------------

    def _start_services(self) -> None:
        self.leading.set()
        self._service_stop = stop = threading.Event()
        self._service_threads = [
            threading.Thread(target=service.loop, args=(stop,), daemon=True,
                             name=f"{self.name}-{service.name}")
            for service in self.services
        ]
        for thread in self._service_threads:
            thread.start()

    def _stop_services(self, timeout: float = 10.0) -> None:
        self.leading.clear()
        if self._service_stop is not None:
            self._service_stop.set()
        for thread in self._service_threads:
            thread.join(timeout)
            if thread.is_alive():  # stuck on the database: it stops after its statement
                logger.warning("maintainer %s: %s did not stop within %.0fs", self.name,
                               thread.name, timeout, extra={"action": "maintainer_slow_stop"})
        self._service_threads = []
        self._service_stop = None

    def run_once(self) -> dict[str, int]:
        """Every service's run_once, in this thread, leader or not: {service: rows}."""
        return {service.name: service.run_once() for service in self.services}
