"""The worker process behind `manage.py runworker`: start-up, signals, side threads, shutdown.

    run -> register -> executors -> side threads -> dispatcher.run -> shutdown

Roles, one module each, meeting in one `Slots` object:
- dispatcher (this thread): claims tasks for free slots and hands them to the executors;
- execution: executor threads run plugins; the monitor thread ends overruns;
- completer thread: writes outcomes back in batches;
- heartbeat ("housekeeping" thread): leases, cancel polling without LISTEN;
- listener thread (LISTEN): wakes the dispatcher on new work and hears cancellations;
- maintainer (tasks/maintenance/): every worker stands for election; the one leader of the
  cluster rescues expired leases, forgets silent workers, prunes finished tasks and
  enqueues the due ticks of schedules (the scheduler).

A side thread that ends while the worker runs is a bug: the worker logs which one died,
stops as it would on SIGTERM, and `run` returns 1. All database work retries through
outages. In the main thread SIGTERM/SIGINT drain and a second signal exits at once;
anywhere else (a test) `stop()` drains and `run` returns.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence

from django.db import close_old_connections

from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.engine.events import QUEUE_EVENTS
from tasks.exceptions import WorkerLost
from tasks.listener import Listener
from tasks.maintenance import Maintainer
from tasks.states import FINISH_EVENTS
from tasks.worker.completer import Completer
from tasks.worker.dbretry import close_connection, with_db_retry
from tasks.worker.dispatcher import Dispatcher
from tasks.worker.execution import Execution, worker_ending
from tasks.worker.heartbeat import Heartbeat
from tasks.worker.hooks import Hooks
from tasks.worker.slots import RELEASE, Slots

logger = logging.getLogger("tasks.worker")


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(self, *, concurrency: int | None = None, queues: Sequence[str] = (),
                 batch: bool = False, max_tasks: int | None = None,
                 listen: bool | None = None, shutdown_grace: float | None = None,
                 worker_id: str | None = None, hooks: Hooks | None = None,
                 maintain: bool = True):
        cfg = engine_settings()
        self.cfg = cfg
        self.concurrency = concurrency or cfg.CONCURRENCY
        self.queues = list(queues)
        self.listen = cfg.WORKER_LISTEN if listen is None else listen
        self.shutdown_grace = cfg.SHUTDOWN_GRACE if shutdown_grace is None else shutdown_grace
        self.worker_id = worker_id or make_worker_id()
        self.hooks = hooks or Hooks()

        self.slots = Slots(concurrency=self.concurrency, max_tasks=max_tasks)
        self.completer = Completer(worker_id=self.worker_id, hooks=self.hooks)
        self.execution = Execution(slots=self.slots, completer=self.completer,
                                   hooks=self.hooks)
        self.dispatcher = Dispatcher(slots=self.slots, cfg=cfg, worker_id=self.worker_id,
                                     queues=self.queues, batch=batch, listen=self.listen,
                                     hand_off=self.execution.submit, hooks=self.hooks)
        self.heartbeat = Heartbeat(slots=self.slots, cfg=cfg, worker_id=self.worker_id,
                                   queues=self.queues, listen=self.listen,
                                   request_cancel=self.execution.request_cancel,
                                   hooks=self.hooks)
        self.maintainer = Maintainer() if maintain else None
        self.stopped = threading.Event()  # side threads end when set
        self.side_threads: list[threading.Thread] = []
        self.listener: Listener | None = None
        self.died: str | None = None  # the side thread whose death stopped the worker
        self.signals = 0

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; 0 after a clean stop, 1 if a side thread died."""
        self._install_signals()
        with_db_retry("register", self.heartbeat.register, stop=lambda: self.slots.stopping)
        logger.info("worker %s started: concurrency %d, queues %s, listen %s",
                    self.worker_id, self.concurrency, ",".join(self.queues) or "all queues",
                    self.listen, extra={"action": "worker_start", "worker": self.worker_id})
        for _ in range(self.concurrency):
            self.execution.start_executor()
        self._start_side_threads()
        if self.maintainer:
            self.maintainer.start()
        try:
            self.dispatcher.run()
        finally:
            self._shutdown()
        return 1 if self.died else 0

    def stop(self) -> None:
        """Stop claiming; `run` drains the running tasks and returns. Does not wait."""
        self.slots.stop()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signals += 1
        if self.signals > 1:
            logger.warning("second signal: exiting at once; the rescuer will recover "
                           "running tasks", extra={"action": "worker_abort"})
            os._exit(1)
        logger.info("%s: stop claiming, finishing running tasks (grace %.0fs)",
                    signal.Signals(signum).name, self.shutdown_grace,
                    extra={"action": "worker_drain"})
        self.stop()

    # --- side threads, watched -------------------------------------------------------

    def _start_side_threads(self) -> None:
        bodies: dict[str, Callable[[], None]] = {
            "completer": lambda: self.completer.run(self.stopped),
            "housekeeping": lambda: self.heartbeat.run(self.stopped),
            "monitor": lambda: self.execution.monitor(self.stopped),
        }
        if self.listen:
            # Once LISTEN is in place, claim: a task enqueued just before was not heard.
            self.listener = Listener(self._on_event, on_connect=self.slots.hint_work)
            bodies["listener"] = self.listener.run  # its loop, in a watched thread of ours
        self.side_threads = [
            threading.Thread(target=self._watched, args=(name, body), name=name, daemon=True)
            for name, body in bodies.items()]
        for t in self.side_threads:
            t.start()

    def _watched(self, name: str, body: Callable[[], None]) -> None:
        """Run a side thread's loop; if it ends before the worker stops, stop the worker."""
        error: BaseException | None = None
        try:
            body()
        except BaseException as exc:  # any way a side thread dies is reported
            error = exc
        finally:
            close_connection()
        if self.stopped.is_set() and error is None:
            return
        self.died = self.died or name
        try:
            logger.error("worker %s: the %s thread died (%s); stopping the worker",
                         self.worker_id, name,
                         "returned" if error is None else f"{type(error).__name__}: {error}",
                         exc_info=error, extra={"action": "thread_died", "side_thread": name,
                                                "worker": self.worker_id})
            self.hooks.emit("thread_died", name=name, error=error)
        finally:
            self.stop()

    def _on_event(self, event: dict) -> None:
        name = event.get("event")
        if name in engine.WAKE_EVENTS or name in QUEUE_EVENTS \
                or (self.slots.held_back and name in FINISH_EVENTS):
            self.slots.hint_work()
        elif name == "cancel_requested":
            self.execution.request_cancel(event.get("ids") or [])

    # --- shutdown --------------------------------------------------------------------

    def _shutdown(self) -> None:
        end = time.monotonic() + self.shutdown_grace
        for job in self.slots.wait_empty(timeout=self.shutdown_grace):
            job.ctx.cancel("worker shutting down")
            if job.finish():
                self.execution.report(job, RELEASE, job.outcome(**worker_ending(
                    WorkerLost, "released: worker shutting down")))
        if self.maintainer:
            self.maintainer.stop()
        # Bounded: if the database is gone the leases expire and the rescuer
        # recovers these tasks instead.
        self.completer.wait_written(timeout=max(5.0, end - time.monotonic()))
        self.execution.stop_executors()
        self.stopped.set()
        if self.listener:
            self.listener.stop()
        for t in self.side_threads:
            t.join(timeout=2)
        with_db_retry("unregister", lambda: engine.unregister_worker(worker_id=self.worker_id),
                      stop=lambda: True)
        logger.info("worker %s stopped after %d task(s)", self.worker_id,
                    self.slots.claimed_total,
                    extra={"action": "worker_stop", "worker": self.worker_id})
        close_old_connections()
