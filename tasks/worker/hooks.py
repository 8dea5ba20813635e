"""Named points in a worker's life that a test can watch (in the manner of River's
TestSignals). In production nothing subscribes and `emit` is a dictionary lookup.

The points, and what each passes as keyword arguments:

- `claimed` (tasks): the dispatcher claimed these `engine.ClaimedTask`s.
- `run_returned` (task_id, reported): a plugin call returned; `reported` is False when the
  run had already been ended (deadline, cancel grace, lost lease) and its result is dropped.
- `ended_early` (task_id, kind, error): the monitor ended a run at its deadline or at the
  end of its cancel grace, whether or not the plugin returns.
- `grace_over` (task_id, abandoned): a grace after ending a run early, the monitor checked
  its plugin; `abandoned` means it had not returned and its thread was replaced.
- `completed_batch` (outcomes): the completer wrote one batch, a list of (kind, Outcome).
- `write_refused` (task_id, kind, error): the database refused one outcome.
- `lease_lost` (task_id): the heartbeat found a run no longer held; it is stopped unreported.
- `thread_died` (name, error): a side thread ended unexpectedly; the worker stops.

A subscriber runs in the thread that emits, so it must be quick; an exception it raises is
that thread's exception (a test can use this to make a side thread die).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

POINTS = frozenset({"claimed", "run_returned", "ended_early", "grace_over", "completed_batch",
                    "write_refused", "lease_lost", "thread_died"})


class Hooks:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[..., Any]]] = {}

    def on(self, point: str, fn: Callable[..., Any]) -> None:
        if point not in POINTS:
            raise ValueError(f"unknown worker hook {point!r}; known: {', '.join(sorted(POINTS))}")
        self._subscribers.setdefault(point, []).append(fn)

    def emit(self, point: str, **info: Any) -> None:
        for fn in self._subscribers.get(point, ()):
            fn(**info)
