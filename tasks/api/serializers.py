"""Shapes of the API's JSON. Parsing only: the rules live in tasks.engine.prepare."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db.models.query_utils import DeferredAttribute
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.fields import SkipField
from rest_framework.settings import api_settings

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


def _plain_attribute(model: type, field: serializers.Field) -> str | None:
    """The attribute `field` reads when that is a plain model field or property of `model`
    (DRF's get_attribute would return it as is), else None."""
    attrs = getattr(field, "source_attrs", None)
    if model is None or not attrs or len(attrs) != 1:
        return None
    descriptor = getattr(model, attrs[0], None)
    return attrs[0] if isinstance(descriptor, (property, DeferredAttribute)) else None


def _kind(field: serializers.Field) -> type | str:
    """How a field writes a value: a type (a value of exactly that type as it is), "json"
    (any value as it is), "datetime" (DRF's ISO 8601 in the current time zone) or "field"
    (the field's own to_representation)."""
    cls = type(field)
    if cls is serializers.IntegerField or (cls is serializers.BigIntegerField and not getattr(
            field, "coerce_to_string", api_settings.COERCE_BIGINT_TO_STRING)):
        return int
    if cls in (serializers.CharField, serializers.ChoiceField):
        return str  # a ChoiceField writes a stored str as it is, in its choices or not
    if cls is serializers.JSONField and not field.binary:
        return "json"
    if cls is serializers.DateTimeField and not hasattr(field, "timezone") and str(getattr(
            field, "format", api_settings.DATETIME_FORMAT)).lower() == ISO_8601:
        return "datetime"
    return "field"


class BuiltOnce:
    """A read-only serializer whose fields are built once per class, not per instance.

    A ModelSerializer builds every field from the model on each instance (a millisecond
    for a task: most of a create's time in the API). These serializers only read, and
    their fields keep no state, so one set of fields per class writes every instance's
    output. A field reading a plain model attribute gets it directly, and writes a value
    of its own type as it is (an int, a str, a choice, JSON) or a datetime as DRF does,
    in ISO 8601 in the current time zone; anything else goes through DRF (get_attribute,
    to_representation). tests/unit/test_api_fast_paths.py holds the two equal.
    """

    _plans: dict[type, list[tuple]] = {}

    @classmethod
    def _plan(cls) -> list[tuple]:
        plan = BuiltOnce._plans.get(cls)
        if plan is None:
            prototype = cls()
            model = getattr(getattr(cls, "Meta", None), "model", None)
            plan = BuiltOnce._plans[cls] = [
                (field.field_name, _plain_attribute(model, field), _kind(field), field)
                for field in prototype._readable_fields]
        return plan

    def to_representation(self, instance: Any) -> dict[str, Any]:
        zone = timezone.get_current_timezone() if settings.USE_TZ else None
        ret: dict[str, Any] = {}
        for name, attr, kind, field in self._plan():
            if attr is None:
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
            else:
                value = getattr(instance, attr)
            if value is None or kind == "json" or type(value) is kind:
                ret[name] = value
            elif kind == "datetime" and zone is not None and type(value) is datetime.datetime \
                    and value.tzinfo is not None:
                text = value.astimezone(zone).isoformat()
                ret[name] = text[:-6] + "Z" if text.endswith("+00:00") else text
            else:
                ret[name] = field.to_representation(value)
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

    def parse(self, data: Any) -> dict[str, Any]:
        """The values of one task as run_validation returns them; a task whose values are
        plainly of their fields' types (what a JSON client sends) is taken as it is,
        without the fields' per-value work, and any other goes through run_validation,
        which names what is wrong."""
        if type(data) is dict and all(_PLAIN[name](value) if name in _PLAIN else False
                                      for name, value in data.items()):
            return dict(data)
        return self.run_validation(data)


def _text(value: Any) -> bool:
    """A str a CharField keeps as it is: ASCII (no surrogate), no NUL."""
    return type(value) is str and value.isascii() and "\x00" not in value


def _filled(value: Any) -> bool:
    """A str a CharField that does not allow blanks keeps as it is."""
    return _text(value) and value != ""


def _int(value: Any) -> bool:
    return type(value) is int


# Per create field: whether a value is plainly valid for the field, as run_validation
# would return it (allow_null, allow_blank as declared above; any JSON for JSONFields;
# run_at only when null: a string is parsed by its field).
_PLAIN = {
    "name": _text, "type": _text,
    "queue": _filled,
    "idempotency_key": lambda v: v is None or _filled(v),
    "on_parent_failure": lambda v: v is None or _filled(v),
    "priority": _int,
    "max_retries": lambda v: v is None or _int(v),
    "timeout_seconds": lambda v: v is None or _int(v),
    "payload": lambda v: True, "depends_on": lambda v: True, "after": lambda v: True,
    "run_at": lambda v: v is None,
}


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
