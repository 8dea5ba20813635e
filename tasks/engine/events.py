"""The NOTIFY channel and the shape of its events, written down once.

Every event is a JSON object `{"event": <name>, "count": <tasks affected>, "ids": [<at
most NOTIFY_MAX_IDS task ids>], ...extra}`; worker events carry `worker`, an enqueue
carries `queue` and `type`, task_progress carries `progress`. The statements in
queries.sql build the same shape in SQL (tests/unit/test_engine_sql.py checks their
channel and id limit against these names). Importing this module touches no database
and no other engine module: the listener, the relay and the pruner read their names here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tasks.states import Event

CHANNEL = "taskservice"
# A NOTIFY payload is at most 8000 bytes: events carry ids, never payloads.
NOTIFY_MAX_IDS = 100

# Events that are not a task's history event.
WORKER_ONLINE = "worker_online"
WORKER_OFFLINE = "worker_offline"
TASKS_DELETED = "tasks_deleted"  # a person deleted finished tasks
TASKS_PRUNED = "tasks_pruned"  # the pruner deleted finished tasks past their retention
# A person steered a queue: extra fields queue, actor, paused, concurrency_limit, rate_limit.
QUEUE_PAUSED = "queue_paused"
QUEUE_RESUMED = "queue_resumed"
QUEUE_LIMITS_CHANGED = "queue_limits_changed"
QUEUE_EVENTS = frozenset({QUEUE_PAUSED, QUEUE_RESUMED, QUEUE_LIMITS_CHANGED})
# A person changed a schedule, or the scheduler (actor "scheduler") failed to fire one:
# extra fields schedule (its id), name, actor.
SCHEDULE_FAILED = "schedule_failed"
SCHEDULE_EVENTS = frozenset({"schedule_created", "schedule_updated", "schedule_deleted",
                             "schedule_paused", "schedule_resumed", "schedule_run_now",
                             SCHEDULE_FAILED})
# A running task's plugin reported progress; the event also carries `progress`: {"done",
# "total", "message" (at most 200 characters), "at"}. Not a history event.
TASK_PROGRESS = "task_progress"

# Every event name that can be sent on CHANNEL.
NAMES = frozenset({*Event.values, WORKER_ONLINE, WORKER_OFFLINE, TASKS_DELETED, TASKS_PRUNED,
                   *QUEUE_EVENTS, *SCHEDULE_EVENTS, TASK_PROGRESS})


def payload(event: str, ids: Iterable[int], **extra: Any) -> str:
    """The JSON text of one event about `ids` (the count is of all of them)."""
    ids = list(ids)
    return json.dumps({"event": str(event), "count": len(ids), "ids": ids[:NOTIFY_MAX_IDS],
                       **extra})
