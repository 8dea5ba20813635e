"""Run a worker inside a test: in a thread of the test process, with hooks to wait on.

    with WorkerThread(concurrency=2) as w:         # started; stopped and drained on exit
        task = engine.enqueue(...)
        w.events.wait("completed_batch")           # no sleeping: wait for what happened

The worker uses the real database from its own threads, each with its own Django
connection, so a pytest test needs `transactional_db` for them to see its rows. Not in
the main thread, the worker installs no signal handlers; `stop()` drains like SIGTERM.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from tasks.worker.hooks import POINTS, Hooks
from tasks.worker.process import Worker


class Recorder:
    """Keeps every hook point a worker emits, so a test can wait for one."""

    def __init__(self, hooks: Hooks):
        self.cond = threading.Condition()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        for point in POINTS:
            hooks.on(point, functools.partial(self._record, point))

    def _record(self, point: str, **info: Any) -> None:
        with self.cond:
            self.seen.append((point, info))
            self.cond.notify_all()

    def all(self, point: str, where: Callable[[dict], bool] | None = None,
            **match: Any) -> list[dict[str, Any]]:
        """Every `point` emitted so far whose info has the given items (and passes `where`)."""
        with self.cond:
            return [info for p, info in self.seen
                    if p == point and all(info.get(k) == v for k, v in match.items())
                    and (where is None or where(info))]

    def wait(self, point: str, where: Callable[[dict], bool] | None = None,
             timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first `point` (emitted before or after this call) whose info has the given
        items (and passes `where`); AssertionError if none comes within `timeout` s."""
        with self.cond:
            if self.cond.wait_for(lambda: self.all(point, where, **match), timeout=timeout):
                return self.all(point, where, **match)[0]
            seen = [p for p, _ in self.seen]
        raise AssertionError(f"no {point} {match or ''} within {timeout}s; seen: {seen}")


class WorkerThread:
    """A `Worker` running in a thread; keyword arguments go to `Worker`. It stands for no
    maintainer election unless asked (`maintain=True`): the test rescues when it wants to."""

    def __init__(self, **worker_kwargs: Any):
        self.hooks = Hooks()
        self.events = Recorder(self.hooks)
        worker_kwargs.setdefault("maintain", False)
        self.worker = Worker(hooks=self.hooks, **worker_kwargs)
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def _run(self) -> None:
        try:
            self.exit_code = self.worker.run()
        except BaseException as exc:  # handed to the test by join()
            self.error = exc
        finally:
            connection.close()

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def join(self, timeout: float = 30.0) -> int:
        """Wait for `run` to return; its exit code (or its exception, raised here)."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the worker did not stop within {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.exit_code is not None
        return self.exit_code

    def stop(self, timeout: float = 30.0) -> int:
        """Stop claiming, drain (as on SIGTERM) and return the exit code once stopped."""
        self.worker.stop()
        return self.join(timeout)

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
