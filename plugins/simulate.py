"""`simulate`: sleeps, fails or overruns on demand, for drills and load tests."""

from __future__ import annotations

import random

from plugins.base import PayloadError, Plugin, TaskContext


class SimulatedFailure(Exception):
    """The failure a simulate task draws with probability failure_rate."""


def _rate(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise PayloadError({field: "Must be a number between 0 and 1."})
    return float(value)


class Simulate(Plugin):
    """Sleep `duration` seconds; fail with `failure_rate`; overrun with `timeout_rate`.

    Payload fields override the options; unknown payload fields are ignored, so
    `simulate` can stand in for any type (see TASKS_PLUGINS in the README).
    """

    description = "Sleeps, fails or overruns its timeout with given probabilities"
    idempotent = True

    def __init__(self, duration: float = 0.1, failure_rate: float = 0.0,
                 timeout_rate: float = 0.0, **options):
        super().__init__(**options)
        self.defaults = {
            "duration": float(duration),
            "failure_rate": _rate(failure_rate, "failure_rate"),
            "timeout_rate": _rate(timeout_rate, "timeout_rate"),
        }

    def validate(self, payload: dict) -> dict:
        payload = super().validate(payload)
        duration = payload.get("duration", self.defaults["duration"])
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise PayloadError({"duration": "Must be a non-negative number of seconds."})
        if duration > 86400:
            raise PayloadError({"duration": "Must be at most 86400 seconds."})
        _rate(payload.get("failure_rate", 0.0), "failure_rate")
        _rate(payload.get("timeout_rate", 0.0), "timeout_rate")
        return payload

    def run(self, payload: dict, ctx: TaskContext):
        cfg = {**self.defaults, **{k: payload[k] for k in self.defaults if k in payload}}
        if random.random() < cfg["timeout_rate"]:
            # Overrun: sleep past the deadline; the worker ends the attempt at the deadline.
            ctx.sleep(ctx.remaining + 3600)
            ctx.check()
        if cfg["duration"] and ctx.sleep(cfg["duration"]):
            ctx.check()
        if random.random() < cfg["failure_rate"]:
            raise SimulatedFailure(f"simulated failure (failure_rate={cfg['failure_rate']})")
        return {"slept": cfg["duration"]}


class Noop(Plugin):
    """Does nothing; the benchmark's task."""

    description = "Does nothing (benchmarks)"
    idempotent = True

    def run(self, payload: dict, ctx: TaskContext):
        return None
