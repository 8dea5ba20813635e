"""Map the engine's errors to HTTP: InvalidTask 400, TaskNotFound 404, InvalidTransition and
IdempotencyConflict 409.

Bodies are machine-readable: a 400 maps each field to its messages (DRF's own shape, so
serializer and queue errors look alike); 404 and 409 carry `detail`. Anything else that
escapes a view is a bug: it is logged with its traceback and the client gets a JSON 500
with no details, from DRF's views here and from Django's handler500 (`server_error`) for
errors outside them (middleware, plain views) on /api/ paths.
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from tasks.exceptions import (
    IdempotencyConflict,
    InvalidTask,
    InvalidTransition,
    NotFound,
    TaskNotFound,
)

logger = logging.getLogger(__name__)

INTERNAL_ERROR = {"detail": "Internal server error"}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, InvalidTask):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (TaskNotFound, NotFound)):
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, InvalidTransition):
        return Response({"detail": str(exc), "status": str(exc.status)},
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, IdempotencyConflict):
        return Response({"detail": str(exc), "task_id": exc.task_id},
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    request = context.get("request")
    logger.error("Internal Server Error: %s", getattr(request, "path", "?"),
                 exc_info=(type(exc), exc, exc.__traceback__),
                 extra={"action": "api_error", "status_code": 500})
    set_rollback()
    return Response(INTERNAL_ERROR, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON under /api/ (Django has logged the error already), HTML elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(INTERNAL_ERROR, status=500)
    return defaults.server_error(request)
