"""The engine's settings as one typed object (parsed from the environment in settings.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class EngineSettings:
    CONCURRENCY: int = 32
    POLL_INTERVAL: float = 1.0
    LEASE_SECONDS: float = 30.0
    HEARTBEAT_INTERVAL: float = 10.0
    DEFAULT_TIMEOUT: int = 300
    DEFAULT_MAX_RETRIES: int = 3
    BACKOFF_BASE: float = 1.0
    BACKOFF_CAP: float = 3600.0
    WORKER_LISTEN: bool = True
    SHUTDOWN_GRACE: float = 25.0
    MAX_PAYLOAD_BYTES: int = 256 * 1024
    DB_PREPARE: bool = True

    # Maintenance (tasks/maintenance/): intervals in seconds, run by the elected leader.
    MAINTAINER_ELECTION_INTERVAL: float = 5.0  # how often a follower tries to lead
    RESCUE_INTERVAL: float = 5.0
    REAP_INTERVAL: float = 15.0
    PRUNE_INTERVAL: float = 60.0
    PRUNE_BATCH_SIZE: int = 2000
    # Retention of finished tasks (and their history) in seconds per final status; 0 keeps
    # them forever.
    RETENTION_SUCCEEDED: float = 7 * 86400.0
    RETENTION_FAILED: float = 30 * 86400.0
    RETENTION_CANCELLED: float = 30 * 86400.0

    # Limits on what a task may ask for; enqueue rejects values outside them.
    MIN_PRIORITY: int = -1000
    MAX_PRIORITY: int = 1000
    MAX_TIMEOUT: int = 7 * 24 * 3600
    MAX_RETRIES_LIMIT: int = 100


_engine: EngineSettings | None = None


def engine() -> EngineSettings:
    global _engine
    if _engine is None:
        configured = getattr(settings, "TASKS_ENGINE", {})
        names = {f.name for f in fields(EngineSettings)}
        _engine = EngineSettings(**{k: v for k, v in configured.items() if k in names})
    return _engine


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs) -> None:
    global _engine
    if setting == "TASKS_ENGINE":
        _engine = None
