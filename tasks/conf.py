"""The engine's settings as one typed object: every default and every check lives here.

`taskservice/settings.py` passes the values it read from the environment in TASKS_ENGINE
(only those that are set); a host project may set TASKS_ENGINE directly. An unknown key or
a bad value is a system-check error (tasks.E001) naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


def _at_least(minimum: float) -> dict:
    return {"min": minimum}


@dataclass(frozen=True)
class EngineSettings:
    # Workers.
    CONCURRENCY: int = field(default=32, metadata=_at_least(1))
    POLL_INTERVAL: float = field(default=1.0, metadata=_at_least(0.01))
    LEASE_SECONDS: float = field(default=30.0, metadata=_at_least(1.0))
    HEARTBEAT_INTERVAL: float = field(default=10.0, metadata=_at_least(0.1))
    WORKER_LISTEN: bool = True
    SHUTDOWN_GRACE: float = field(default=25.0, metadata=_at_least(0.0))
    # Prepared hot-path statements; off for PgBouncer transaction pooling before 1.21.
    DB_PREPARE: bool = True
    # A worker's claims, heartbeats and completions commit without waiting for the WAL
    # flush (tasks/worker/commits.py); off behind PgBouncer in transaction pooling.
    WORKER_ASYNC_COMMIT: bool = True

    # What a task gets when it names nothing, and how a failed run backs off.
    DEFAULT_TIMEOUT: int = field(default=300, metadata=_at_least(1))
    DEFAULT_MAX_RETRIES: int = field(default=3, metadata=_at_least(0))
    BACKOFF_BASE: float = field(default=1.0, metadata=_at_least(0.0))
    BACKOFF_CAP: float = field(default=3600.0, metadata=_at_least(0.0))

    # Limits on what a task may ask for; enqueue rejects values outside them.
    MAX_PAYLOAD_BYTES: int = field(default=256 * 1024, metadata=_at_least(1024))
    MIN_PRIORITY: int = -1000
    MAX_PRIORITY: int = 1000
    MAX_TIMEOUT: int = field(default=7 * 24 * 3600, metadata=_at_least(1))
    MAX_RETRIES_LIMIT: int = field(default=100, metadata=_at_least(0))

    # Maintenance (tasks/maintenance/): intervals in seconds, run by the elected leader.
    MAINTAINER_ELECTION_INTERVAL: float = field(default=5.0, metadata=_at_least(0.1))
    RESCUE_INTERVAL: float = field(default=5.0, metadata=_at_least(0.1))
    REAP_INTERVAL: float = field(default=15.0, metadata=_at_least(0.1))
    PRUNE_INTERVAL: float = field(default=60.0, metadata=_at_least(0.1))
    SCHEDULE_INTERVAL: float = field(default=1.0, metadata=_at_least(0.05))
    PRUNE_BATCH_SIZE: int = field(default=2000, metadata=_at_least(1))
    # Retention of finished tasks (and their history) in seconds per final status; 0 keeps
    # them forever.
    RETENTION_SUCCEEDED: float = field(default=7 * 86400.0, metadata=_at_least(0.0))
    RETENTION_FAILED: float = field(default=30 * 86400.0, metadata=_at_least(0.0))
    RETENTION_CANCELLED: float = field(default=30 * 86400.0, metadata=_at_least(0.0))

    # Task type -> plugin (a built-in name or a dotted path) and its options.
    PLUGINS: dict = field(default_factory=dict)


_TYPES = {"int": int, "float": float, "bool": bool, "dict": dict}


def _check(f, value: Any) -> str | None:
    """Why `value` is no good for field `f`, or None."""
    kind = _TYPES[f.type]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        return f"{f.name} must be {'an object' if kind is dict else f'a {f.type}'}, " \
               f"got {value!r}"
    minimum = f.metadata.get("min")
    if minimum is not None and value < minimum:
        return f"{f.name} must be at least {minimum}, got {value!r}"
    return None


def problems(configured: Mapping[str, Any]) -> list[str]:
    """Every problem of a TASKS_ENGINE mapping: unknown keys and bad values."""
    known = {f.name: f for f in fields(EngineSettings)}
    found = [f"unknown key {key!r} (known: {', '.join(sorted(known))})"
             for key in configured if key not in known]
    found += [problem for key, value in configured.items() if key in known
              if (problem := _check(known[key], value))]
    return found


def _build(configured: Mapping[str, Any]) -> EngineSettings:
    found = problems(configured)
    if found:
        raise ImproperlyConfigured("TASKS_ENGINE: " + "; ".join(found))
    floats = {f.name for f in fields(EngineSettings) if f.type == "float"}
    return EngineSettings(**{k: float(v) if k in floats else v for k, v in configured.items()})


_engine: EngineSettings | None = None


def engine() -> EngineSettings:
    global _engine
    if _engine is None:
        _engine = _build(getattr(settings, "TASKS_ENGINE", {}))
    return _engine


# The tag of the service's own checks: runworker runs them (and not the URL checks).
TASKS_CHECKS = "tasks"


@register(TASKS_CHECKS)
def check_engine_settings(app_configs, **kwargs) -> list[Error]:
    return [Error(f"TASKS_ENGINE: {problem}", id="tasks.E001")
            for problem in problems(getattr(settings, "TASKS_ENGINE", {}))]


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs) -> None:
    global _engine
    if setting == "TASKS_ENGINE":
        _engine = None
