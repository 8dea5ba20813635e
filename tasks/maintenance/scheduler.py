"""Scheduler: enqueues the due ticks of cron and interval schedules.

Runs on the elected maintainer every SCHEDULE_INTERVAL seconds. Each batch is one
transaction (engine.fire_due_schedules): the due schedules are locked (rows another
maintainer holds are skipped), each gets one task for its latest due tick, keyed
`schedule:<id>:<tick>` so a crash mid-batch (rolled back) or a second leader can never
double a tick, and moves to its next tick.

Schedules may also be defined in code: the TASKS_SCHEDULES setting ({name: fields}, as
the API takes them) is synced by the leader when its scheduler starts
(engine.schedule_settings: an invalid entry is logged and skipped, an operator's pause
stands unless the entry states `enabled`); schedules not named there are left alone.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from tasks import engine
from tasks.conf import engine as engine_settings
from tasks.maintenance.service import Service, ServiceConfig


@dataclass(frozen=True)
class SchedulerConfig(ServiceConfig):
    @classmethod
    def from_settings(cls) -> SchedulerConfig:
        return cls(interval=engine_settings().SCHEDULE_INTERVAL, batch_size=100)


class Scheduler(Service):
    name = "scheduler"

    def __init__(self, config: SchedulerConfig | None = None, *,
                 clock: Callable[[], datetime.datetime] = timezone.now):
        super().__init__(config or SchedulerConfig.from_settings())
        self.clock = clock  # tests move time instead of waiting for it
        self.synced = False

    def run_batch(self) -> int:
        if not self.synced:
            engine.schedule_settings.sync(getattr(settings, "TASKS_SCHEDULES", {}))
            self.synced = True
        return len(engine.fire_due_schedules(now=self.clock(), limit=self.config.batch_size))
