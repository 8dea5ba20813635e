"""The worker process behind `manage.py runworker`.

    run -> _run_loop -> _claim_and_dispatch -> executors -> completer

One dispatcher (the main thread) claims as many tasks as there are free slots in one
statement and hands them to a pool of executor threads. Finished runs go to a completer
thread that writes them back in batches (one statement per kind of outcome). Side
threads: the listener (LISTEN: wake on new work, hear cancellations), housekeeping
(heartbeat leases, reconcile expired ones under an advisory lock), and the monitor
(deadlines and cancel grace, no database). All database work retries through outages.
"""

from __future__ import annotations

import logging
import os
import queue as stdqueue
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import Error as DatabaseError
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from plugins import registry
from plugins.base import TaskCancelled, TaskContext
from tasks import queue
from tasks.conf import engine
from tasks.events import Listener
from tasks.exceptions import UnknownTaskType

logger = logging.getLogger("tasks.worker")

CANCEL_GRACE = 1.0  # seconds a cancelled plugin gets to stop before it is abandoned
MAX_ERROR_CHARS = 8000

OK, FAIL, CANCELLED, RELEASE = "ok", "fail", "cancelled", "release"


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(eq=False)
class Job:
    task: queue.ClaimedTask
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

    def outcome(self, **kwargs) -> queue.Outcome:
        return queue.Outcome(task_id=self.task.id, attempt=self.task.attempt,
                             retry_count=self.task.retry_count, **kwargs)


def format_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).strip()
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    head = f"{name}: {exc}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[-MAX_ERROR_CHARS:]
    return f"{head}\n\n{text}" if text != head else head


# Connection-level trouble (server gone, restarting, network): worth retrying. Other
# database errors (bad data, constraint) would fail the same way again.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def with_db_retry(action: str, fn: Callable, *, stop: Callable[[], bool],
                  on_give_up=None, max_delay: float = 10.0):
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
            try:
                connection.close()
            except DatabaseError:
                pass
            if stop():
                return on_give_up
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


class Worker:
    def __init__(self, *, concurrency: int | None = None, queues: Sequence[str] = (),
                 batch: bool = False, max_tasks: int | None = None,
                 listen: bool | None = None, shutdown_grace: float | None = None,
                 worker_id: str | None = None):
        cfg = engine()
        self.cfg = cfg
        self.concurrency = concurrency or cfg.CONCURRENCY
        self.queues = list(queues)
        self.batch = batch
        self.max_tasks = max_tasks
        self.listen = cfg.WORKER_LISTEN if listen is None else listen
        self.shutdown_grace = cfg.SHUTDOWN_GRACE if shutdown_grace is None else shutdown_grace
        self.worker_id = worker_id or make_worker_id()

        self.cond = threading.Condition(threading.RLock())  # RLock: signal handlers use it
        self.in_flight: dict[int, Job] = {}
        self.work_hint = True  # something may be claimable; set by LISTEN and polls
        self.stopping = False
        self.stopped = threading.Event()  # side threads end when set
        self.claimed_total = 0
        self.signals = 0

        self.jobs: stdqueue.SimpleQueue[Job | None] = stdqueue.SimpleQueue()
        self.outcomes: stdqueue.SimpleQueue[tuple[str, queue.Outcome]] = stdqueue.SimpleQueue()
        self.pending_outcomes = 0  # reported but not yet written
        self.executors: set[threading.Thread] = set()
        self.abandoned: set[threading.Thread] = set()
        self.ended_early: set[Job] = set()  # the monitor's: runs ended before the plugin
        self.listener: Listener | None = None
        self.side_threads: list[threading.Thread] = []

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        with_db_retry("register", lambda: queue.register_worker(
            worker_id=self.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
            queues=self.queues, concurrency=self.concurrency), stop=lambda: self.stopping)
        logger.info("worker %s started: concurrency %d, queues %s, listen %s",
                    self.worker_id, self.concurrency, ",".join(self.queues) or "*",
                    self.listen, extra={"action": "worker_start", "worker": self.worker_id})
        for _ in range(self.concurrency):
            self._start_executor()
        self._start_side_threads()
        try:
            self._run_loop()
        finally:
            self._shutdown()
        return 0

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signals += 1
        if self.signals > 1:
            logger.warning("second signal: exiting at once; the reconciler will recover "
                           "running tasks", extra={"action": "worker_abort"})
            os._exit(1)
        logger.info("%s: stop claiming, finishing running tasks (grace %.0fs)",
                    signal.Signals(signum).name, self.shutdown_grace,
                    extra={"action": "worker_drain"})
        self.stop()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def _start_side_threads(self) -> None:
        threads = [threading.Thread(target=self._completer, name="completer", daemon=True),
                   threading.Thread(target=self._housekeeping, name="housekeeping",
                                    daemon=True),
                   threading.Thread(target=self._monitor, name="monitor", daemon=True)]
        if self.listen:
            # Once LISTEN is in place, claim: a task enqueued just before was not heard.
            self.listener = Listener(self._on_event, on_connect=self._hint_work)
            threads.append(self.listener)
        for t in threads:
            t.start()
        self.side_threads = threads

    # --- the dispatcher --------------------------------------------------------------

    def _free_slots(self) -> int:
        free = self.concurrency - len(self.in_flight)
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self.claimed_total)
        return free

    def _run_loop(self) -> None:
        batch_min = max(1, self.concurrency // 4)
        while True:
            with self.cond:
                if self.stopping:
                    return
                if self.max_tasks is not None and self.claimed_total >= self.max_tasks:
                    if not self.in_flight:
                        return
                    self.cond.wait(0.1)
                    continue
                if self._free_slots() <= 0:
                    self.cond.wait(self.cfg.POLL_INTERVAL)
                    continue
                idle = not self.work_hint
            if idle:
                # Computed outside the lock: it may query (and wait out) the database.
                timeout = self._idle_timeout()
                with self.cond:
                    if not self.work_hint and not self.stopping:
                        self.cond.wait(timeout)
                    self.work_hint = True  # a wake-up, or the poll fallback
                continue
            with self.cond:
                # Busy queue: let a few slots free up so one statement claims several.
                if self._free_slots() < batch_min and self.in_flight:
                    self.cond.wait_for(lambda: self._free_slots() >= batch_min or self.stopping,
                                       timeout=0.005)
                free = self._free_slots()
                self.work_hint = False
            if free <= 0:
                continue
            claimed = self._claim(free)
            if len(claimed) >= free:
                self.work_hint = True  # likely more waiting
            elif self.batch and not claimed:
                with self.cond:
                    if not self.in_flight and not self.work_hint:
                        return

    def _idle_timeout(self) -> float:
        timeout = self.cfg.POLL_INTERVAL if not self.batch else min(self.cfg.POLL_INTERVAL, 0.2)
        if self.listen and not self.batch:
            # Deferred and retrying tasks send no event when they fall due.
            due = with_db_retry("next_due", lambda: queue.next_due_in(self.queues),
                                stop=lambda: self.stopping)
            if due is not None:
                timeout = min(timeout, max(due, 0.001))
        return timeout

    def _claim(self, limit: int) -> list[queue.ClaimedTask]:
        tasks = with_db_retry(
            "claim",
            lambda: queue.claim(worker_id=self.worker_id, limit=limit, queues=self.queues),
            stop=lambda: self.stopping, on_give_up=[])
        now = time.monotonic()
        with self.cond:
            for task in tasks:
                ctx = TaskContext(task_id=task.id, attempt=task.attempt,
                                  deadline=now + task.timeout_seconds,
                                  logger=logging.getLogger(f"plugins.{task.type}"),
                                  task_type=task.type, queue=task.queue,
                                  worker_id=self.worker_id)
                job = Job(task=task, ctx=ctx, deadline=ctx.deadline, claimed_at=now)
                self.in_flight[task.id] = job
                self.claimed_total += 1
                self.jobs.put(job)
        return tasks

    def _hint_work(self) -> None:
        with self.cond:
            self.work_hint = True
            self.cond.notify_all()

    def _on_event(self, event: dict) -> None:
        name = event.get("event")
        if name in queue.WAKE_EVENTS:
            self._hint_work()
        elif name == "cancel_requested":
            self.request_cancel(event.get("ids") or [])

    def request_cancel(self, ids) -> None:
        now = time.monotonic()
        with self.cond:
            for task_id in ids:
                job = self.in_flight.get(task_id)
                if job is not None and job.cancel_deadline is None:
                    job.ctx.cancel("cancelled")
                    job.cancel_deadline = now + CANCEL_GRACE
                    logger.info("cancelling task %s", task_id,
                                extra={"action": "cancel", "task_id": task_id})

    # --- executors -------------------------------------------------------------------

    def _start_executor(self) -> None:
        t = threading.Thread(target=self._executor, name="executor", daemon=True)
        self.executors.add(t)
        t.start()

    def _executor(self) -> None:
        me = threading.current_thread()
        while True:
            job = self.jobs.get()
            if job is None:
                break
            job.runner = me
            kind, outcome = self._execute(job)
            job.returned = True
            if job.finish():
                self._report(job, kind, outcome)
            if me in self.abandoned:  # the monitor gave this run up and replaced us
                self.abandoned.discard(me)
                break
        self.executors.discard(me)

    def _execute(self, job: Job) -> tuple[str, queue.Outcome]:
        ctx = job.ctx
        try:
            plugin = registry.get(job.task.type)
            result = plugin.run(job.task.payload, ctx)
        except TaskCancelled:
            if ctx.cancel_reason == "cancelled":
                return CANCELLED, job.outcome(error="cancelled while running")
            return FAIL, job.outcome(error=f"stopped: {ctx.cancel_reason}")
        except UnknownTaskType as exc:
            return FAIL, job.outcome(error=str(exc))
        except Exception as exc:
            return FAIL, job.outcome(error=format_error(exc))
        finally:
            close_old_connections()
        if ctx.cancelled and ctx.cancel_reason == "cancelled":
            return CANCELLED, job.outcome(error="cancelled while running")
        return OK, job.outcome(result=result)

    def _report(self, job: Job, kind: str, outcome: queue.Outcome) -> None:
        with self.cond:
            self.pending_outcomes += 1
            self.outcomes.put((kind, outcome))
            self.in_flight.pop(job.task.id, None)
            self.cond.notify_all()

    # --- the monitor: deadlines and cancel grace, no database ------------------------

    def _monitor(self) -> None:
        while not self.stopped.wait(0.05):
            now = time.monotonic()
            with self.cond:
                jobs = list(self.in_flight.values())
            for job in jobs:
                if now >= job.deadline:
                    job.ctx.cancel("timeout")
                    self._end_early(job, FAIL, job.outcome(
                        error=f"timed out after {job.task.timeout_seconds}s"))
                elif job.cancel_deadline is not None and now >= job.cancel_deadline:
                    self._end_early(job, CANCELLED, job.outcome(
                        error=f"cancelled; the plugin did not stop within {CANCEL_GRACE:.0f}s"))
            for job in [j for j in self.ended_early if now >= j.stuck_after]:
                self.ended_early.discard(job)
                if not job.returned and job.runner is not None:
                    # Still inside the plugin a grace after its end: a fresh thread takes
                    # its place, and this one exits whenever the plugin returns.
                    self.abandoned.add(job.runner)
                    self._start_executor()
                    logger.warning("task %s: the plugin did not return; its thread is "
                                   "abandoned", job.task.id,
                                   extra={"action": "abandon", "task_id": job.task.id})

    def _end_early(self, job: Job, kind: str, outcome: queue.Outcome) -> None:
        """End a run at its deadline (or cancel grace) whether or not the plugin returns.

        The task leaves `running` now; the plugin has been told (ctx.cancelled) and gets
        CANCEL_GRACE more seconds to return before its thread is declared stuck.
        """
        if not job.finish():
            return
        job.stuck_after = time.monotonic() + CANCEL_GRACE
        self.ended_early.add(job)
        self._report(job, kind, outcome)
        logger.warning("task %s: %s", job.task.id, outcome.error,
                       extra={"action": "end_early", "task_id": job.task.id})

    # --- the completer: write outcomes back in batches -------------------------------

    def _completer(self) -> None:
        while True:
            try:
                first = self.outcomes.get(timeout=0.2)
            except stdqueue.Empty:
                if self.stopped.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self.outcomes.get_nowait())
                except stdqueue.Empty:
                    break
            self._write(batch)
            with self.cond:
                self.pending_outcomes -= len(batch)
                self.cond.notify_all()

    def _write(self, batch: list[tuple[str, queue.Outcome]]) -> None:
        groups: dict[str, list[queue.Outcome]] = {}
        for kind, outcome in batch:
            groups.setdefault(kind, []).append(outcome)
        for kind, outcomes in groups.items():
            self._write_group(kind, outcomes)

    def _write_group(self, kind: str, outcomes: list[queue.Outcome]) -> None:
        writer = {OK: queue.complete, FAIL: queue.fail, CANCELLED: queue.finish_cancelled,
                  RELEASE: queue.release}[kind]
        try:
            # Keep retrying through an outage: these outcomes exist nowhere else. If the
            # process dies first, the leases expire and the reconciler recovers the tasks.
            with_db_retry(f"write {kind}",
                          lambda: writer(worker_id=self.worker_id, outcomes=outcomes),
                          stop=lambda: False)
        except DatabaseError as exc:
            connection.close()
            if len(outcomes) > 1:  # find the one the database refuses; write the rest
                for outcome in outcomes:
                    self._write_group(kind, [outcome])
                return
            outcome = outcomes[0]
            logger.error("task %s: the database refused its %s outcome (%s)", outcome.task_id,
                         kind, exc, extra={"action": "write_refused",
                                           "task_id": outcome.task_id})
            if kind == OK:  # e.g. a result jsonb cannot hold: fail the run instead
                outcome.error = f"could not store the result: {type(exc).__name__}: {exc}"
                self._write_group(FAIL, [outcome])
            # Otherwise the lease expires and the reconciler settles the task.

    # --- housekeeping: heartbeat and reconcile ---------------------------------------

    def _housekeeping(self) -> None:
        cfg = self.cfg
        now = time.monotonic()
        next_beat, next_reconcile, next_cancel_poll = now, now, now
        while not self.stopped.wait(min(0.25, cfg.POLL_INTERVAL)):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + cfg.HEARTBEAT_INTERVAL
                    self._heartbeat(now)
                if not self.listen and now >= next_cancel_poll and self.in_flight:
                    # Without LISTEN, cancellations are polled at the poll interval.
                    next_cancel_poll = now + cfg.POLL_INTERVAL
                    self.request_cancel(queue.cancel_requested_ids(worker_id=self.worker_id))
                if now >= next_reconcile:
                    next_reconcile = now + cfg.RECONCILE_INTERVAL
                    if queue.reconcile():
                        self._hint_work()
            except DatabaseError as exc:
                logger.warning("database error during housekeeping (%s); will retry",
                               type(exc).__name__, extra={"action": "db_retry"})
                try:
                    connection.close()
                except DatabaseError:
                    pass

    def _heartbeat(self, started: float) -> None:
        beat = queue.heartbeat(worker_id=self.worker_id)
        if not beat.registered:
            queue.register_worker(worker_id=self.worker_id, hostname=socket.gethostname(),
                                  pid=os.getpid(), queues=self.queues,
                                  concurrency=self.concurrency)
        if beat.cancel_requested:
            self.request_cancel(beat.cancel_requested)
        with self.cond:
            lost = [job for tid, job in self.in_flight.items()
                    if tid not in beat.held and job.claimed_at < started]
        for job in lost:
            # The reconciler gave this run to someone else; stop it and report nothing.
            if job.finish():
                job.ctx.cancel("lease lost")
                with self.cond:
                    self.in_flight.pop(job.task.id, None)
                    self.cond.notify_all()
                logger.warning("task %s: lease lost; dropping this run", job.task.id,
                               extra={"action": "lease_lost", "task_id": job.task.id})

    # --- shutdown --------------------------------------------------------------------

    def _shutdown(self) -> None:
        end = time.monotonic() + self.shutdown_grace
        with self.cond:
            self.cond.wait_for(lambda: not self.in_flight, timeout=self.shutdown_grace)
            left = list(self.in_flight.values())
        for job in left:
            job.ctx.cancel("worker shutting down")
            if job.finish():
                self._report(job, RELEASE, job.outcome(error="released: worker shutting down"))
        with self.cond:
            # Bounded: if the database is gone the leases expire and the reconciler
            # recovers these tasks instead.
            self.cond.wait_for(lambda: self.pending_outcomes == 0,
                               timeout=max(5.0, end - time.monotonic()))
        for _ in list(self.executors):
            self.jobs.put(None)
        self.stopped.set()
        if self.listener:
            self.listener.stop()
        for t in self.side_threads:
            t.join(timeout=2)
        with_db_retry("unregister", lambda: queue.unregister_worker(worker_id=self.worker_id),
                      stop=lambda: True)
        logger.info("worker %s stopped after %d task(s)", self.worker_id, self.claimed_total,
                    extra={"action": "worker_stop", "worker": self.worker_id})
        close_old_connections()
