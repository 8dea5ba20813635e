"""/api/queues: every queue with its depth, running tasks, pause and limits; pause, resume
and limits are engine verbs (tasks.engine.queues) that leave an audit row naming the user."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from tasks import authz, engine, selectors
from tasks.api.permissions import ApiAccess
from tasks.api.serializers import ErrorSerializer

NAME_RE = r"[A-Za-z0-9_.:-]{1,100}"
LIMIT_FIELDS = ("concurrency_limit", "rate_limit")

_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Not allowed."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer,
                                   description="No tasks and no settings name this queue.")}
# The body's schema, FieldErrors, is tasks.api.schema's.
_BAD_REQUEST = {400: OpenApiResponse(
    description="Field -> messages, naming each bad limit or unknown field.")}


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    due = serializers.IntegerField(help_text="Queued or retrying tasks due now.")
    deferred = serializers.IntegerField(help_text="Queued or retrying tasks due later.")
    running = serializers.IntegerField()
    oldest_due_age = serializers.FloatField(allow_null=True,
                                            help_text="Seconds the oldest due task waited.")
    paused = serializers.BooleanField()
    concurrency_limit = serializers.IntegerField(allow_null=True)
    rate_limit = serializers.FloatField(allow_null=True, help_text="Starts per second.")


class QueueLimitsSerializer(serializers.Serializer):
    concurrency_limit = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="Most tasks of the queue running at once across the cluster; null: none.")
    rate_limit = serializers.FloatField(
        required=False, allow_null=True,
        help_text="Most task starts per second across the cluster; null: none.")


class QueuePermissions(ApiAccess):
    """ApiAccess, then tasks.view_queue to read and tasks.change_queue to steer."""

    message = "You do not have permission to do this with queues."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        needed = authz.VIEW_QUEUE if request.method in SAFE_METHODS else authz.CHANGE_QUEUE
        if authz.has(request.user, needed):
            return True
        self.message = f"You do not have permission to do this with queues (tasks.{needed})."
        return False


def actor(request: Request) -> str:
    user = request.user
    return f"{user.get_username()} via the API" if user.is_authenticated else "the API"


def _shown(name: str) -> dict:
    found = selectors.queue(name)
    if found is None:
        raise NotFound(f"No queue {name!r}: it has no tasks and was never paused or limited.")
    return found


class QueueViewSet(viewsets.ViewSet):
    """Queues: list, get, pause, resume, set limits."""

    permission_classes = [QueuePermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_RE
    serializer_class = QueueSerializer

    @extend_schema(summary="Every queue: depth, running, oldest due age, pause and limits",
                   responses={200: QueueSerializer(many=True), **_ERRORS})
    def list(self, request: Request) -> Response:
        return Response(QueueSerializer(selectors.queues(), many=True).data)

    @extend_schema(summary="One queue",
                   responses={200: QueueSerializer, **_NOT_FOUND, **_ERRORS})
    def retrieve(self, request: Request, name: str) -> Response:
        return Response(QueueSerializer(_shown(name)).data)

    @extend_schema(summary="Set a queue's limits (a field left out is kept; null removes)",
                   request=QueueLimitsSerializer,
                   responses={200: QueueSerializer, **_BAD_REQUEST, **_NOT_FOUND, **_ERRORS})
    def partial_update(self, request: Request, name: str) -> Response:
        data = request.data
        if not isinstance(data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(LIMIT_FIELDS))
        if unknown:
            raise ValidationError({key: ["Unknown field: only concurrency_limit and "
                                         "rate_limit can be set."] for key in unknown})
        engine.set_queue_limits(name, **{k: data[k] for k in LIMIT_FIELDS if k in data},
                                actor=actor(request))
        return Response(QueueSerializer(_shown(name)).data)

    @extend_schema(summary="Pause a queue: no worker claims from it until resumed",
                   request=None,
                   responses={200: QueueSerializer, **_BAD_REQUEST, **_NOT_FOUND, **_ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        engine.pause_queue(name, actor=actor(request))
        return Response(QueueSerializer(_shown(name)).data)

    @extend_schema(summary="Resume a paused queue", request=None,
                   responses={200: QueueSerializer, **_BAD_REQUEST, **_NOT_FOUND, **_ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        engine.resume_queue(name, actor=actor(request))
        return Response(QueueSerializer(_shown(name)).data)
