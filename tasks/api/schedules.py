"""/api/schedules: cron and interval schedules, their next runs and last task; create,
change, delete, pause, resume and run now are engine verbs (tasks.engine.schedules) that
validate the whole schedule (a bad payload or cron expression is a 400 naming the field)
and leave an audit row naming the user."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from tasks import authz, engine
from tasks.api.permissions import ApiAccess
from tasks.api.queues import actor
from tasks.api.serializers import ErrorSerializer, TaskSerializer
from tasks.models import Schedule, Task

schedules = engine.schedules
NEXT_RUNS = 3

_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Not allowed."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No schedule has that id.")}
# The body's schema, FieldErrors, is tasks.api.schema's.
_BAD_REQUEST = {400: OpenApiResponse(
    description="Field -> messages, naming each problem (`payload` nests by the payload's "
                "own fields: `{\"payload\": {\"to\": [\"...\"]}}`).")}


class ScheduleSerializer(serializers.ModelSerializer):
    payload = serializers.JSONField()
    next_runs = serializers.SerializerMethodField(
        help_text=f"The next {NEXT_RUNS} tick times (none while paused).")
    last_task_status = serializers.SerializerMethodField(
        help_text="The status of the last task it enqueued (null: none, or pruned).")
    owner = serializers.IntegerField(source="owner_id", read_only=True, allow_null=True)

    class Meta:
        model = Schedule
        fields = ["id", *schedules.FIELDS, "next_run_at", "next_runs", "last_tick_at",
                  "last_task_id", "last_task_status", "owner", "created_at", "updated_at"]
        read_only_fields = fields

    def get_next_runs(self, obj: Schedule) -> list[str]:
        field = serializers.DateTimeField()
        return [field.to_representation(t) for t in schedules.next_runs(obj, NEXT_RUNS)]

    def get_last_task_status(self, obj: Schedule) -> str | None:
        statuses = self.context.get("statuses")
        if statuses is not None:
            return statuses.get(obj.last_task_id)
        if obj.last_task_id is None:
            return None
        return Task.objects.filter(pk=obj.last_task_id).values_list("status", flat=True).first()


class ScheduleWriteSerializer(serializers.Serializer):
    """What POST and PATCH take (the engine checks every value)."""

    name = serializers.CharField()
    type = serializers.CharField()
    payload = serializers.JSONField(required=False)
    queue = serializers.CharField(required=False)
    priority = serializers.IntegerField(required=False)
    max_retries = serializers.IntegerField(required=False, allow_null=True)
    timeout_seconds = serializers.IntegerField(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False)
    cron = serializers.CharField(required=False, allow_blank=True)
    timezone = serializers.CharField(required=False)
    interval_seconds = serializers.IntegerField(required=False, allow_null=True)
    missed_ticks = serializers.ChoiceField(choices=["catch_up_once", "skip"], required=False)


NEEDS = {"GET": authz.VIEW_SCHEDULE, "HEAD": authz.VIEW_SCHEDULE,
         "OPTIONS": authz.VIEW_SCHEDULE, "POST": authz.CHANGE_SCHEDULE,
         "PATCH": authz.CHANGE_SCHEDULE, "PUT": authz.CHANGE_SCHEDULE,
         "DELETE": authz.DELETE_SCHEDULE}


class SchedulePermissions(ApiAccess):
    """ApiAccess, then the schedule permission of the method (add_schedule to create)."""

    message = "You do not have permission to do this with schedules."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        needed = NEEDS.get(request.method, authz.CHANGE_SCHEDULE)
        if getattr(view, "action", None) == "create":
            needed = authz.ADD_SCHEDULE
        if authz.has(request.user, needed):
            return True
        self.message = f"You do not have permission to do this with schedules (tasks.{needed})."
        return False


def _body(request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
    unknown = sorted(set(request.data) - set(schedules.FIELDS))
    if unknown:
        raise ValidationError({key: ["Unknown field."] for key in unknown})
    return dict(request.data)


def _may_enqueue(request: Request, type_name) -> None:
    refused = authz.refused_types(request.user, [type_name])
    if refused:
        raise PermissionDenied(f"You may not schedule tasks of type {refused[0]!r} "
                               f"(tasks.{authz.TYPE_PREFIX}<type> or tasks.{authz.ENQUEUE_ANY}).")


def _shown(schedule: Schedule, **kwargs) -> Response:
    return Response(ScheduleSerializer(schedule).data, **kwargs)


class ScheduleViewSet(viewsets.ViewSet):
    """Schedules: list, create, get, change, delete, pause, resume, run now."""

    permission_classes = [SchedulePermissions]
    lookup_value_regex = "[^/]+"
    serializer_class = ScheduleSerializer

    @extend_schema(summary="Every schedule with its next runs and last task",
                   responses={200: ScheduleSerializer(many=True), **_ERRORS})
    def list(self, request: Request) -> Response:
        rows = list(Schedule.objects.order_by("name"))
        ids = [s.last_task_id for s in rows if s.last_task_id]
        statuses = dict(Task.objects.filter(pk__in=ids).values_list("pk", "status"))
        return Response(ScheduleSerializer(rows, many=True,
                                           context={"statuses": statuses}).data)

    @extend_schema(summary="Create a schedule (cron with a time zone, or an interval)",
                   request=ScheduleWriteSerializer,
                   responses={201: ScheduleSerializer, **_BAD_REQUEST, **_ERRORS})
    def create(self, request: Request) -> Response:
        body = _body(request)
        _may_enqueue(request, body.get("type"))
        user = request.user if request.user.is_authenticated else None
        schedule = schedules.create(**body, owner=user, actor=actor(request))
        return _shown(schedule, status=status.HTTP_201_CREATED)

    @extend_schema(summary="One schedule",
                   responses={200: ScheduleSerializer, **_NOT_FOUND, **_ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return _shown(schedules.get(pk))

    @extend_schema(summary="Change some fields of a schedule",
                   request=ScheduleWriteSerializer(partial=True),
                   responses={200: ScheduleSerializer, **_BAD_REQUEST, **_NOT_FOUND,
                              **_ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        body = _body(request)
        schedule = schedules.get(pk)
        _may_enqueue(request, body.get("type", schedule.type))
        return _shown(schedules.update(schedule.pk, **body, actor=actor(request)))

    @extend_schema(summary="Delete a schedule (its tasks stay)",
                   responses={204: None, **_NOT_FOUND, **_ERRORS})
    def destroy(self, request: Request, pk: str) -> Response:
        schedules.delete(pk, actor=actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Pause a schedule: no ticks until resumed", request=None,
                   responses={200: ScheduleSerializer, **_NOT_FOUND, **_ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        return _shown(schedules.pause(pk, actor=actor(request)))

    @extend_schema(summary="Resume a schedule from its next tick", request=None,
                   responses={200: ScheduleSerializer, **_NOT_FOUND, **_ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return _shown(schedules.resume(pk, actor=actor(request)))

    @extend_schema(summary="Enqueue the schedule's task now (its ticks stay as they are)",
                   request=None,
                   responses={201: TaskSerializer, **_BAD_REQUEST, **_NOT_FOUND, **_ERRORS})
    @action(detail=True, methods=["post"], url_path="run-now")
    def run_now(self, request: Request, pk: str) -> Response:
        _may_enqueue(request, schedules.get(pk).type)
        task = schedules.run_now(pk, actor=actor(request))
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)
