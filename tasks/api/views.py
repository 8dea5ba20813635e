"""API views: declarative viewsets; writes call tasks.engine, reads tasks.selectors."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView

from tasks import authz, engine, selectors, workflow_selectors
from tasks.api.filters import TaskFilter
from tasks.api.permissions import TaskPermissions
from tasks.api.serializers import (
    ConflictSerializer,
    ErrorSerializer,
    IdempotencyConflictSerializer,
    RetrySerializer,
    StatsSerializer,
    TaskCreateSerializer,
    TaskHistorySerializer,
    TaskListSerializer,
    TaskSerializer,
    WorkflowCreateSerializer,
    WorkflowSerializer,
    spec_from,
)
from tasks.exceptions import InvalidTask
from tasks.models import Origin, Task

MAX_BULK = 1000  # tasks per bulk request; larger batches go in several requests
# Parses one task of a create; it keeps no state, so its fields are built once.
CREATE_PARSER = TaskCreateSerializer()

_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Not allowed."),
}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No task has that id.")}
_BAD_REQUEST = {400: OpenApiResponse(
    description="Field -> messages, naming each problem (`payload` may nest: "
                "`{\"payload\": {\"to\": [\"...\"]}}`; a bulk create keys each bad task by "
                "its index).")}  # its body's schema, FieldErrors, is tasks.api.schema's
_BODY_ERRORS = {
    **_BAD_REQUEST,
    413: OpenApiResponse(ErrorSerializer, description="Request body over the limit."),
    415: OpenApiResponse(ErrorSerializer, description="Not application/json."),
}
_ONE_OR_MANY = PolymorphicProxySerializer(
    component_name="TaskOneOrMany", resource_type_field_name=None, many=False,
    serializers=[TaskSerializer, TaskSerializer(many=True)])


@extend_schema_view(
    list=extend_schema(operation_id="tasks_list",
                       summary="List tasks (without payload and result: get one for those)",
                       responses={200: TaskListSerializer(many=True), **_BAD_REQUEST,
                                  **_NOT_FOUND, **_ERRORS}),
    retrieve=extend_schema(operation_id="tasks_get", summary="Get one task",
                           responses={200: TaskSerializer, **_NOT_FOUND, **_ERRORS}),
)
class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tasks: create (one or many), list with filters, get, history, cancel, retry."""

    queryset = Task.objects.none()  # replaced per request by selectors.tasks()
    # Any segment reaches the view, so a malformed id is a JSON 404 from selectors.task_id.
    lookup_value_regex = "[^/]+"
    serializer_class = TaskSerializer
    filterset_class = TaskFilter
    permission_classes = [TaskPermissions]

    def get_queryset(self):
        return selectors.tasks(self.request.user)

    def get_object(self) -> Task:
        return selectors.task(self.kwargs["pk"], self.request.user)

    def get_serializer_class(self):
        return TaskListSerializer if self.action == "list" else TaskSerializer

    @extend_schema(
        operation_id="tasks_create",
        summary="Create a task (an object) or many (an array, in one transaction)",
        request=PolymorphicProxySerializer(
            component_name="TaskCreateOneOrMany", resource_type_field_name=None, many=False,
            serializers=[TaskCreateSerializer, TaskCreateSerializer(many=True)]),
        responses={201: _ONE_OR_MANY,
                   200: OpenApiResponse(_ONE_OR_MANY,
                                        description="The idempotency key exists with the "
                                                    "same fields: that task."),
                   409: OpenApiResponse(IdempotencyConflictSerializer,
                                        description="The idempotency key exists with other "
                                                    "fields."),
                   **_BODY_ERRORS, **_ERRORS},
    )
    def create(self, request: Request) -> Response:
        data = request.data
        if isinstance(data, list):
            return self._create_many(request, data)
        try:
            spec = spec_from(CREATE_PARSER.parse(data))
        except ValidationError as exc:
            raise ValidationError(as_serializer_error(exc)) from None
        _check_types(request, [spec])
        task = engine.enqueue(**spec, **_submitter(request))
        return Response(TaskSerializer(task).data,
                        status=status.HTTP_201_CREATED if task.was_created else status.HTTP_200_OK)

    def _create_many(self, request: Request, items: list) -> Response:
        if not items:
            raise ValidationError({"non_field_errors": ["Expected at least one task."]})
        if len(items) > MAX_BULK:
            raise ValidationError({"non_field_errors": [
                f"At most {MAX_BULK} tasks per request, got {len(items)}."]})
        specs, errors = {}, {}
        for index, item in enumerate(items):
            try:
                specs[str(index)] = spec_from(CREATE_PARSER.parse(item))
            except ValidationError as exc:
                errors[str(index)] = as_serializer_error(exc)
        if errors:
            # Report every bad task at once: the queue's rules for the ones that parsed.
            for index, spec in specs.items():
                try:
                    engine.prepare(**spec)
                except InvalidTask as exc:
                    errors[index] = exc.errors
            raise ValidationError(dict(sorted(errors.items(), key=lambda kv: int(kv[0]))))
        _check_types(request, specs.values())
        with transaction.atomic():
            created = engine.enqueue_many(list(specs.values()), **_submitter(request))
        any_new = any(task.was_created for task in created)
        return Response(TaskSerializer(created, many=True).data,
                        status=status.HTTP_201_CREATED if any_new else status.HTTP_200_OK)

    @extend_schema(operation_id="tasks_history", summary="A task's history, oldest first",
                   filters=False,
                   responses={200: TaskHistorySerializer(many=True), **_NOT_FOUND, **_ERRORS})
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def history(self, request: Request, pk: str) -> Response:
        rows = selectors.history(pk, request.user)
        return Response(TaskHistorySerializer(rows, many=True).data)

    @extend_schema(operation_id="tasks_cancel", summary="Cancel a task", request=None,
                   filters=False,
                   responses={200: TaskSerializer, **_NOT_FOUND, **_ERRORS,
                              409: OpenApiResponse(ConflictSerializer,
                                                   description="Already finished.")})
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request: Request, pk: str) -> Response:
        task = engine.cancel(self.get_object().pk, reason=f"cancelled by {_who(request)}")
        return Response(TaskSerializer(task).data)

    @extend_schema(operation_id="tasks_retry", summary="Retry a failed or cancelled task",
                   description="Back to queued with its retries reset (waiting, while one "
                               "of its parents has not succeeded). A task whose run_at "
                               "is still ahead keeps it unless the body says run_now.",
                   request=RetrySerializer, filters=False,
                   responses={200: TaskSerializer, **_BAD_REQUEST, **_NOT_FOUND, **_ERRORS,
                              409: OpenApiResponse(ConflictSerializer,
                                                   description="Not failed or cancelled.")})
    @action(detail=True, methods=["post"], filterset_class=None)
    def retry(self, request: Request, pk: str) -> Response:
        options = RetrySerializer(data=request.data if request.data else {})
        options.is_valid(raise_exception=True)
        task = engine.retry(self.get_object().pk, reason=f"requeued by {_who(request)}",
                            run_now=options.validated_data["run_now"])
        return Response(TaskSerializer(task).data)


def _submitter(request: Request) -> dict:
    """Who submits, and whose tasks they may name as parents (the ones they can see)."""
    user = request.user
    return {"owner": user if user.is_authenticated else None, "origin": Origin.API,
            "parent_scope": authz.owner_scope(user)}


def _check_types(request: Request, specs) -> None:
    """403 naming every type in the request the user was not given (nothing is written)."""
    refused = authz.refused_types(request.user, (spec.get("type") for spec in specs))
    if refused:
        raise PermissionDenied(
            f"You may not enqueue tasks of type {', '.join(map(repr, refused))} "
            f"(tasks.{authz.TYPE_PREFIX}<type> or tasks.{authz.ENQUEUE_ANY}).")


def _who(request: Request) -> str:
    user = request.user
    return f"{user.get_username()} via the API" if user.is_authenticated else "the API"


class WorkflowViewSet(viewsets.GenericViewSet):
    """Workflows: a list of steps stored at once (POST), and each with its tasks (GET)."""

    queryset = Task.objects.none()
    lookup_value_regex = "[^/]+"
    serializer_class = WorkflowSerializer
    permission_classes = [TaskPermissions]

    @extend_schema(summary="Create a workflow: its steps are tasks, `after` names earlier "
                           "steps by position; all in one transaction",
                   request=WorkflowCreateSerializer,
                   responses={201: WorkflowSerializer, **_BODY_ERRORS, **_ERRORS})
    def create(self, request: Request) -> Response:
        body = WorkflowCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        steps = body.validated_data["steps"]
        if len(steps) > MAX_BULK:
            raise ValidationError({"steps": [
                f"At most {MAX_BULK} steps per workflow, got {len(steps)}."]})
        specs, errors = [], {}
        for index, item in enumerate(steps):
            try:
                specs.append(spec_from(CREATE_PARSER.parse(item)))
            except ValidationError as exc:
                errors[str(index)] = as_serializer_error(exc)
        if errors:
            raise ValidationError({"steps": errors})
        _check_types(request, specs)
        try:
            workflow, _tasks = engine.enqueue_workflow(specs, name=body.validated_data["name"],
                                                       **_submitter(request))
        except InvalidTask as exc:
            field = "name" if set(exc.errors) == {"name"} else "steps"
            raise ValidationError({field: exc.errors.get(field, exc.errors)}) from None
        workflow.steps = workflow_selectors.workflow_steps(workflow)
        return Response(WorkflowSerializer(workflow).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="A workflow and every task of it, with status and parents",
                   responses={200: WorkflowSerializer, **_NOT_FOUND, **_ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        workflow = workflow_selectors.workflow(pk, request.user)
        workflow.steps = workflow_selectors.workflow_steps(workflow)
        return Response(WorkflowSerializer(workflow).data)


class StatsView(APIView):
    """Counts per status, type and queue; retries; workers online; recent throughput."""

    permission_classes = [TaskPermissions]

    @extend_schema(operation_id="stats_get",
                   summary="Service statistics (of your own tasks without view_all_tasks)",
                   responses={200: StatsSerializer, **_ERRORS})
    def get(self, request: Request) -> Response:
        return Response(selectors.stats(request.user))


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@permission_classes([AllowAny])
def not_found(request: Request, *args, **kwargs) -> Response:
    """Unknown /api/ paths answer in JSON like the rest of the API."""
    raise NotFound(f"No API endpoint at {request.path}.")
