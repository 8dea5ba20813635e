"""The task engine's tables. Only tasks/engine/ changes a task's state."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Coalesce, Now

from tasks.states import ACTIVE, FINISHED, HOT_PATH_EVENTS, Event, Status, current_progress

__all__ = ["ACTIVE_STATUSES", "FINISHED_STATUSES", "AuditEntry", "Event", "MissedTicks",
           "Origin", "Queue", "Schedule", "Status", "Task", "TaskDependency", "TaskHistory",
           "Worker", "Workflow"]

# The lifecycle's rules live in tasks.states; these are its sets in declaration order, for
# the ORM (`status__in`).
ACTIVE_STATUSES = tuple(s for s in Status if s in ACTIVE)
FINISHED_STATUSES = tuple(s for s in Status if s in FINISHED)


class Origin(models.TextChoices):
    """Where a task was submitted from."""

    API = "api"
    ADMIN = "admin"
    CLI = "cli"
    PYTHON = "python"
    DJANGO_TASKS = "django_tasks"
    SCHEDULE = "schedule"


class Workflow(models.Model):
    """A graph of tasks submitted together (a chain, a group, or any list of steps)."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=255, blank=True, default="")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "task_workflows"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"workflow #{self.id} {self.name}".rstrip()


class Task(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    payload = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=0)
    queue = models.CharField(max_length=100, default="default")
    run_at = models.DateTimeField(db_default=Now())
    retry_count = models.IntegerField(default=0)
    max_retries = models.IntegerField(default=3)
    timeout_seconds = models.IntegerField(default=300)
    # Runs started so far, never reset: with locked_by it fences a completion to its run.
    attempts = models.IntegerField(default=0)
    locked_by = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL = unheld
    locked_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    # NULL, not "": the partial unique index must skip tasks without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # With a key: a digest of what was submitted, so a reused key with another body is a
    # conflict instead of a silent merge.
    idempotency_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # Who submitted it (NULL: trusted code with no user, e.g. Python or django.tasks).
    # idx_owner_created_at serves every lookup by owner: no index of its own.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+", db_index=False)
    origin = models.CharField(max_length=16, choices=Origin.choices, db_default=Origin.PYTHON)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Some task depends on this one: only then does its end look for children to release
    # or cancel, so ordinary tasks pay nothing for dependencies.
    has_dependents = models.BooleanField(default=False, db_default=False)
    # When a parent fails for good or is cancelled: "fail" (cancelled with it) or "run".
    on_parent_failure = models.CharField(max_length=8, default="fail", db_default="fail")
    # The parent whose failure cancelled this task (a retry of that parent brings it back).
    failed_parent = models.ForeignKey("self", null=True, blank=True, db_constraint=False,
                                      on_delete=models.DO_NOTHING, related_name="+",
                                      db_index=False)
    workflow = models.ForeignKey(Workflow, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="tasks", db_index=False)
    # What a run's plugin last said: {"done", "total", "message", "at", "attempt"}.
    progress = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "tasks"
        constraints = [
            # A key is unique per owner (tasks without an owner share one space). Partial:
            # tasks without a key (most) cost no index entry on insert.
            models.UniqueConstraint(
                Coalesce("owner", 0), "idempotency_key",
                condition=models.Q(idempotency_key__isnull=False),
                name="uniq_owner_idempotency_key",
            ),
        ]
        permissions = [
            ("view_all_tasks", "Can see and steer every user's tasks"),
            ("cancel_task", "Can cancel tasks"),
            ("retry_task", "Can retry tasks"),
            ("enqueue_any_type", "Can enqueue tasks of every type"),
        ]
        # A claim and a completion each rewrite the row, and every index that covers it
        # gets a new entry each time (a status change is never a HOT update): each index
        # here is paid three times per task on the hot path, so an index that serves only
        # a rare read is partial or absent. Sorting the list by priority, queue, start or
        # run time reads the table instead (a top-N sort: bench/admin_list.py times it).
        indexes = [
            models.Index(fields=["created_at"], name="idx_created_at"),
            # Status filters and counts, and the list sorted by status (ties by id, the
            # direction the sort goes: tasks.admin.paging.TaskChangeList).
            models.Index(fields=["status", "id"], name="idx_status_id"),
            # Serves the claim: only due-able rows, in claim order.
            models.Index(
                models.F("priority").desc(),
                "run_at",
                "id",
                name="idx_claim",
                condition=models.Q(status__in=["queued", "retrying"]),
            ),
            # A user's own tasks (lists scoped to their owner); Python's tasks cost nothing.
            models.Index(
                fields=["owner", "created_at"],
                name="idx_owner_created_at",
                condition=models.Q(owner__isnull=False),
            ),
            # Serves the claim of one queue: the limited queues' claim and the workers that
            # serve named queues, without walking other queues' backlogs.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "run_at",
                "id",
                name="idx_claim_queue",
                condition=models.Q(status__in=["queued", "retrying"]),
            ),
            # A workflow's tasks; tasks outside any workflow cost no index entry.
            models.Index(fields=["workflow"], name="idx_workflow",
                         condition=models.Q(workflow__isnull=False)),
            # Serves the rescuer and heartbeats: running rows by lease.
            models.Index(
                fields=["locked_until"],
                name="idx_running_lease",
                condition=models.Q(status="running"),
            ),
            # Payload search (`payload @> {...}`): jsonb_path_ops keeps one hash per leaf
            # path, so an insert costs a few entries (bench/payload_index.py measures it).
            GinIndex(fields=["payload"], opclasses=["jsonb_path_ops"], name="idx_payload_path"),
            # The dashboard's charts read the tasks finished in a time range; a task is
            # inserted unfinished, so this costs nothing on enqueue.
            models.Index(fields=["finished_at"], name="idx_finished_at",
                         condition=models.Q(finished_at__isnull=False)),
            # The children a failed parent cancelled (a retry of it brings them back).
            models.Index(fields=["failed_parent"], name="idx_failed_parent",
                         condition=models.Q(failed_parent__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.name} ({self.type}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def current_progress(self) -> dict | None:
        return current_progress(self.progress, self.attempts)


class TaskDependency(models.Model):
    """`child` runs after `parent` (each edge once); indexed both ways. Each column's
    foreign key is the database's own ON DELETE CASCADE (migrations 0006 and 0012):
    deleting a task in SQL deletes its edges."""

    id = models.BigAutoField(primary_key=True)
    child = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+",
                              db_index=False, db_constraint=False)
    parent = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+",
                               db_constraint=False)

    class Meta:
        db_table = "task_dependencies"
        constraints = [models.UniqueConstraint(fields=["child", "parent"],
                                               name="uniq_dependency")]

    def __str__(self) -> str:
        return f"#{self.child_id} after #{self.parent_id}"


class TaskHistory(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No database constraint: every history row is written by the engine statement that
    # writes its task, and every delete of tasks deletes their history in the same
    # statement. A constraint would check each row against `tasks` at commit, a plan
    # cached per connection that a nearly empty table's statistics turn into a
    # sequential scan for as long as the connection lives. idx_task_id_created_at serves
    # lookups by task.
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="history",
                             db_constraint=False, db_index=False)
    status = models.CharField(max_length=16, choices=Status.choices)
    event_type = models.CharField(max_length=32, choices=Event.choices)
    attempt = models.IntegerField(default=0)
    worker_id = models.CharField(max_length=255, blank=True, default="")
    details = models.TextField(blank=True, default="")
    # How a run ended in error, stored as data (never parsed back out of `details`): the
    # exception's dotted class path, its message and its traceback. The database defaults
    # let statements that write no error leave them out.
    error_class = models.CharField(max_length=255, blank=True, default="", db_default="")
    error_message = models.TextField(blank=True, default="", db_default="")
    traceback = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "task_history"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["task", "created_at"], name="idx_task_id_created_at"),
            # The history list filtered by one kind of event, newest first (admin). Three
            # rows of every task are the hot path's own events, the most common by far:
            # a filter on one of those finds its rows at once walking the primary key.
            models.Index(fields=["event_type", "id"], name="idx_history_event_id",
                         condition=~models.Q(event_type__in=HOT_PATH_EVENTS)),
        ]
        verbose_name_plural = "task history"

    def __str__(self) -> str:
        return f"{self.event_type} #{self.task_id} attempt {self.attempt}"


class Worker(models.Model):
    id = models.CharField(max_length=255, primary_key=True)  # host:pid:suffix
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list, blank=True)  # [] means every queue
    types = models.JSONField(default=list, blank=True)  # the task types it runs
    concurrency = models.IntegerField()
    started_at = models.DateTimeField(db_default=Now())
    last_seen = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "task_workers"
        ordering = ["started_at"]

    def __str__(self) -> str:
        return self.id


class Queue(models.Model):
    """A queue an operator steers: paused, or limited across the whole cluster.

    A queue without a row (most) is unpaused and unlimited; tasks name their queue freely.
    The claim reads this table in the same transaction (tasks/engine/queries.sql:
    lock_limited_queues, claim_limited), so no race of workers exceeds a limit.
    """

    name = models.CharField(max_length=100, primary_key=True)
    paused = models.BooleanField(default=False, db_default=False)
    # Most tasks of this queue running at once across every worker (NULL: no limit).
    concurrency_limit = models.IntegerField(null=True, blank=True)
    # Most task starts per second across the cluster (NULL: no limit): a token bucket of
    # at most max(1, rate_limit / 10) tokens, refilled continuously.
    rate_limit = models.FloatField(null=True, blank=True)
    tokens = models.FloatField(default=0.0, db_default=0.0)
    refilled_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "task_queues"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AuditEntry(models.Model):
    """Who did what to a queue or a schedule (task changes are in TaskHistory)."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_default=Now())
    actor = models.CharField(max_length=255, blank=True, default="")
    action = models.CharField(max_length=32)
    target_kind = models.CharField(max_length=16)  # queue | schedule
    target = models.CharField(max_length=255)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "task_audit"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["target_kind", "target", "created_at"],
                                name="idx_audit_target")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.target_kind} {self.target} by {self.actor or '?'}"


class MissedTicks(models.TextChoices):
    """What a schedule does with ticks it missed (an outage, no worker running)."""

    CATCH_UP_ONCE = "catch_up_once"  # one task for the latest missed tick
    SKIP = "skip"  # none: the next task is for the next tick on time


class Schedule(models.Model):
    """A task enqueued at every tick of a cron expression (in a time zone) or an interval.

    The scheduler (tasks/maintenance/scheduler.py) enqueues each due tick exactly once:
    the task's idempotency key is `schedule:<id>:<tick>`, unique per owner, and the row's
    next_run_at moves in the same transaction. Written only by tasks/engine/schedules.py.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=100, default="default")
    priority = models.IntegerField(default=0)
    max_retries = models.IntegerField(null=True, blank=True)  # None: the engine's default
    timeout_seconds = models.IntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    cron = models.CharField(max_length=200, blank=True, default="")
    timezone = models.CharField(max_length=64, default="UTC")
    interval_seconds = models.IntegerField(null=True, blank=True)
    missed_ticks = models.CharField(max_length=16, choices=MissedTicks.choices,
                                    default=MissedTicks.CATCH_UP_ONCE)
    # The next tick to enqueue (None while disabled), the last enqueued and its task.
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_task_id = models.BigIntegerField(null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "task_schedules"
        ordering = ["name"]
        indexes = [models.Index(fields=["next_run_at"], name="idx_schedule_due",
                                condition=models.Q(enabled=True))]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(interval_seconds__isnull=True) & ~models.Q(cron=""))
                | (models.Q(interval_seconds__gte=1) & models.Q(cron="")),
                name="schedule_cron_or_interval"),
        ]

    def __str__(self) -> str:
        return self.name
