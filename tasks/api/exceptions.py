"""Map the engine's errors to HTTP: InvalidTask 400, TaskNotFound 404, InvalidTransition and
IdempotencyConflict 409.

Bodies are machine-readable: a 400 maps each field to its messages (DRF's own shape, so
serializer and queue errors look alike); 404 and 409 carry `detail`.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tasks.exceptions import IdempotencyConflict, InvalidTask, InvalidTransition, TaskNotFound


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, InvalidTask):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TaskNotFound):
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, InvalidTransition):
        return Response({"detail": str(exc), "status": str(exc.status)},
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, IdempotencyConflict):
        return Response({"detail": str(exc), "task_id": exc.task_id},
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return drf_exception_handler(exc, context)
