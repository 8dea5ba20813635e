"""Shapes of the API's JSON. Parsing only: the rules live in tasks.engine.prepare."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.fields import SkipField

from tasks import workflow_selectors
from tasks.models import Task, TaskHistory

TASK_FIELDS = [
    "id", "name", "type", "payload", "status", "priority", "queue", "retry_count",
    "max_retries", "last_error", "timeout_seconds", "run_at", "result", "locked_by",
    "idempotency_key", "attempts", "created_at", "updated_at", "started_at", "finished_at",
    "owner", "origin", "progress", "workflow", "depends_on", "on_parent_failure",
]
CREATE_FIELDS = ["name", "type", "payload", "priority", "queue", "run_at", "max_retries",
                 "timeout_seconds", "idempotency_key", "depends_on", "after",
                 "on_parent_failure"]


class BuiltOnce:
    """A read-only serializer whose fields are built once per class, not per instance.

    A ModelSerializer builds every field from the model on each instance (a millisecond
    for a task: most of a create's time in the API). These serializers only read, and
    their fields keep no state, so one set of fields per class writes every instance's
    output, in DRF's own way (each field's get_attribute and to_representation).
    """

    _prototypes: dict[type, serializers.Serializer] = {}

    def to_representation(self, instance: Any) -> dict[str, Any]:
        cls = type(self)
        prototype = BuiltOnce._prototypes.get(cls)
        if prototype is None:
            prototype = BuiltOnce._prototypes[cls] = cls()
        ret: dict[str, Any] = {}
        for field in prototype._readable_fields:
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            ret[field.field_name] = None if attribute is None else \
                field.to_representation(attribute)
        return ret


class TaskSerializer(BuiltOnce, serializers.ModelSerializer):
    owner = serializers.IntegerField(source="owner_id", read_only=True, allow_null=True,
                                     help_text="The id of the user who submitted it.")
    payload = serializers.JSONField(read_only=True)
    result = serializers.JSONField(read_only=True, allow_null=True)
    progress = serializers.JSONField(
        source="current_progress", read_only=True, allow_null=True,
        help_text="What the plugin of the latest attempt last reported: done, total, "
                  "message, at, attempt (or null).")
    workflow = serializers.IntegerField(source="workflow_id", read_only=True, allow_null=True,
                                        help_text="The workflow this task is a step of.")
    depends_on = serializers.SerializerMethodField(
        help_text="The ids of the tasks this one runs after.")

    class Meta:
        model = Task
        fields = TASK_FIELDS
        read_only_fields = TASK_FIELDS

    def get_depends_on(self, task: Task) -> list[int]:
        known = getattr(task, "parent_ids", None)  # set by the engine and selectors
        if known is None:
            known = workflow_selectors.parent_ids([task.pk]).get(task.pk, [])
        return list(known)


# Lists leave out payload and result: a page of 500 tasks could otherwise carry 500 of
# each, and depends_on, a query per task; GET /api/tasks/{id} has them whole.
LIST_FIELDS = [name for name in TASK_FIELDS if name not in ("payload", "result", "depends_on")]


class TaskListSerializer(TaskSerializer):
    """A task in a list: every field but payload, result and depends_on."""

    class Meta(TaskSerializer.Meta):
        fields = LIST_FIELDS
        read_only_fields = LIST_FIELDS


class TaskCreateSerializer(serializers.Serializer):
    """One task to enqueue. Every field is optional here so that tasks.engine reports
    missing or out-of-range values with the same messages as the CLI and Python."""

    name = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                 help_text="Required. A label for people, up to 255 characters.")
    type = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                 help_text="Required. A registered task type, e.g. send_email.")
    payload = serializers.JSONField(required=False, allow_null=True,
                                    help_text="A JSON object the type's plugin validates.")
    priority = serializers.IntegerField(required=False,
                                        help_text="Higher runs first; -1000 to 1000.")
    queue = serializers.CharField(required=False, trim_whitespace=False,
                                  help_text="Queue name (default 'default').")
    run_at = serializers.DateTimeField(required=False, allow_null=True,
                                       help_text="Do not run before this time.")
    max_retries = serializers.IntegerField(required=False, allow_null=True)
    timeout_seconds = serializers.IntegerField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(required=False, allow_null=True,
                                            trim_whitespace=False)
    depends_on = serializers.JSONField(
        required=False, allow_null=True,
        help_text="Ids of existing tasks this one runs after (a list of integers).")
    after = serializers.JSONField(
        required=False, allow_null=True,
        help_text="In a bulk request or a workflow: positions of earlier tasks of the same "
                  "request this one runs after.")
    on_parent_failure = serializers.CharField(
        required=False, allow_null=True,
        help_text="'fail' (default): cancelled when a parent fails for good or is cancelled; "
                  "'run': runs once every parent has ended, however.")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object (one task) or an array of them."]}
            )
        unknown = sorted(set(data) - set(CREATE_FIELDS))
        values = super().to_internal_value(data)
        if unknown:
            raise serializers.ValidationError(
                {name: [f"Unknown field. Known fields: {', '.join(CREATE_FIELDS)}."]
                 for name in unknown}
            )
        return values

def spec_from(values: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for tasks.engine.enqueue from a TaskCreateSerializer's validated
    values: what the client sent, parsed."""
    spec = {k: v for k, v in values.items() if v is not None}
    spec.setdefault("name", None)  # absent: the queue names the missing field
    spec.setdefault("type", None)
    return spec


class WorkflowCreateSerializer(serializers.Serializer):
    """A workflow: its steps are tasks as in a bulk create; `after` names earlier steps."""

    name = serializers.CharField(required=False, allow_blank=True, default="",
                                 trim_whitespace=False, help_text="A label for people.")
    steps = serializers.ListField(child=serializers.JSONField(), allow_empty=False,
                                  help_text="Tasks, in order; `after` lists positions of "
                                            "earlier steps.")


class WorkflowStepSerializer(serializers.ModelSerializer):
    depends_on = serializers.ListField(source="parent_ids", child=serializers.IntegerField(),
                                       read_only=True)
    progress = serializers.JSONField(source="current_progress", read_only=True,
                                     allow_null=True)

    class Meta:
        model = Task
        fields = ["id", "name", "type", "status", "depends_on", "on_parent_failure",
                  "progress", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class WorkflowSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    owner = serializers.IntegerField(source="owner_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    tasks = WorkflowStepSerializer(source="steps", many=True, read_only=True)


class TaskHistorySerializer(serializers.ModelSerializer):
    task_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = TaskHistory
        fields = ["id", "task_id", "status", "event_type", "attempt", "worker_id", "details",
                  "error_class", "error_message", "traceback", "created_at"]
        read_only_fields = fields


class CountsField(serializers.DictField):
    child = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    """Documents /api/stats (the data comes from tasks.selectors.stats)."""

    total_tasks = serializers.IntegerField()
    waiting_tasks = serializers.IntegerField()
    queued_tasks = serializers.IntegerField()
    running_tasks = serializers.IntegerField()
    retrying_tasks = serializers.IntegerField()
    succeeded_tasks = serializers.IntegerField()
    failed_tasks = serializers.IntegerField()
    cancelled_tasks = serializers.IntegerField()
    avg_retry_count = serializers.FloatField()
    tasks_with_retries = serializers.IntegerField()
    by_type = CountsField(help_text="Tasks per type.")
    by_queue = CountsField(help_text="Tasks per queue.")
    workers_online = serializers.IntegerField()
    finished_last_minute = serializers.IntegerField()


class RetrySerializer(serializers.Serializer):
    run_now = serializers.BooleanField(
        default=False, help_text="Due at once even if the task's run_at is still ahead "
                                 "(default: a scheduled task keeps its time).")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ConflictSerializer(ErrorSerializer):
    status = serializers.CharField()


class IdempotencyConflictSerializer(ErrorSerializer):
    task_id = serializers.IntegerField(help_text="The task that already has this key.")
