"""The engine: the one place that changes a task's state (the write side).

Callers write `from tasks import engine` and call its verbs: `engine.enqueue(...)`,
`engine.claim(...)`, `engine.cancel(...)`. Every statement is in queries.sql under a name;
each transition writes exactly one history row per task and its NOTIFY in the same
statement or transaction, so an event always means a committed change.

- spec: prepare (validation into a Prepared spec); submit: enqueue, enqueue_many,
  enqueue_workflow; graph: tasks with dependencies and workflows, in one transaction;
- runs: the worker's side (claim, heartbeat, complete, fail, finish_cancelled, release,
  snooze, progress, parent_results, decline);
- steering: a person's side (cancel, retry, run_now, their bulk variants, delete_finished,
  get);
- maintenance: rescue_expired, reap_workers, and pruning: prune_finished (one
  batch: lock_prunable then prune_locked) and count_prunable;
- queues: pause, resume and set_limits of a queue (as pause_queue, resume_queue,
  set_queue_limits), each with an audit row and an event;
- schedules: create, update, pause, resume, run_now, delete, and fire_due (the
  scheduler's batch), exported with a `schedule_` prefix or as the module;
  schedule_settings: the TASKS_SCHEDULES setting, checked and synced;
- events: the NOTIFY channel and the shape of its payload;
- sql: the loader of queries.sql and `run`.
"""

from __future__ import annotations

from tasks.engine import schedule_settings, schedules
from tasks.engine.events import CHANNEL, NOTIFY_MAX_IDS
from tasks.engine.maintenance import (
    PruneBatch,
    count_prunable,
    liveness_window,
    lock_prunable,
    prune_finished,
    prune_locked,
    reap_workers,
    rescue_expired,
)
from tasks.engine.queues import QueueState
from tasks.engine.queues import pause as pause_queue
from tasks.engine.queues import resume as resume_queue
from tasks.engine.queues import set_limits as set_queue_limits
from tasks.engine.runs import (
    ClaimedTask,
    HeartbeatResult,
    Outcome,
    cancel_requested_ids,
    claim,
    complete,
    decline,
    fail,
    finish_cancelled,
    heartbeat,
    idle_hint,
    next_due_in,
    parent_results,
    progress,
    register_worker,
    release,
    snooze,
    unregister_worker,
)
from tasks.engine.schedules import fire_due as fire_due_schedules
from tasks.engine.steering import (
    BulkResult,
    cancel,
    cancel_many,
    delete_finished,
    get,
    notify,
    retry,
    retry_many,
    run_now,
    run_now_many,
)
from tasks.engine.submit import (
    QUEUE_NAME_RE,
    TASK_COLUMNS,
    enqueue,
    enqueue_many,
    enqueue_workflow,
    prepare,
)
from tasks.states import WAKE_EVENTS

__all__ = [
    "CHANNEL", "NOTIFY_MAX_IDS", "QUEUE_NAME_RE", "TASK_COLUMNS",
    "WAKE_EVENTS", "BulkResult", "ClaimedTask", "HeartbeatResult", "Outcome", "PruneBatch",
    "QueueState", "cancel", "cancel_many", "cancel_requested_ids", "claim", "complete",
    "count_prunable", "decline", "delete_finished", "enqueue", "enqueue_many",
    "enqueue_workflow", "fail", "finish_cancelled", "fire_due_schedules", "get", "heartbeat",
    "idle_hint", "liveness_window", "lock_prunable", "next_due_in", "notify",
    "parent_results", "pause_queue", "prepare", "progress", "prune_finished", "prune_locked",
    "reap_workers", "register_worker", "release", "rescue_expired",
    "resume_queue", "retry", "retry_many", "run_now", "run_now_many", "schedule_settings",
    "schedules", "set_queue_limits", "snooze", "unregister_worker",
]
