"""Reaper: forgets workers whose heartbeat has been silent past the liveness window.

A worker that stops cleanly removes its own row; one that died leaves it behind, and the
dashboard and /metrics would count it as online. Each forgotten worker sends a
`worker_offline` event, as a clean stop does.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.maintenance.service import Service, ServiceConfig


@dataclass(frozen=True)
class ReaperConfig(ServiceConfig):
    window: float | None = None  # seconds of silence; None: engine.liveness_window()

    @classmethod
    def from_settings(cls) -> ReaperConfig:
        return cls(interval=engine_settings().REAP_INTERVAL, batch_size=1000)


class Reaper(Service):
    name = "reaper"

    def __init__(self, config: ReaperConfig | None = None):
        super().__init__(config or ReaperConfig.from_settings())

    def run_batch(self) -> int:
        return len(engine.reap_workers(window=self.config.window, limit=self.config.batch_size))
