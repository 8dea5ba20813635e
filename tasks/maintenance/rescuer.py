"""Rescuer: running tasks whose lease expired because their worker was lost.

The worker's heartbeat renews its leases; when it stops (crash, kill -9, lost network),
the lease runs out and the task is settled like a failed run: retried after the backoff,
failed for good without retries left, or cancelled if a cancel was requested
(engine.rescue_expired writes the `lease_expired` history row and the NOTIFY).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.maintenance.service import Service, ServiceConfig


@dataclass(frozen=True)
class RescuerConfig(ServiceConfig):
    @classmethod
    def from_settings(cls) -> RescuerConfig:
        return cls(interval=engine_settings().RESCUE_INTERVAL, batch_size=1000)


class Rescuer(Service):
    name = "rescuer"

    def __init__(self, config: RescuerConfig | None = None, *, rand=None):
        super().__init__(config or RescuerConfig.from_settings())
        self.rand = rand  # tests pass a fixed jitter

    def run_batch(self) -> int:
        return len(engine.rescue_expired(limit=self.config.batch_size, rand=self.rand))
