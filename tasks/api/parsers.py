"""JSON request bodies, bounded in size."""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class BoundedJSONParser(JSONParser):
    """JSONParser that refuses bodies over TASKS_API_MAX_BODY_BYTES with a 413.

    DRF reads the raw stream, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE check on
    request.body, so the limit is enforced here before anything is decoded.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.TASKS_API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = 0
        if request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
        if declared > limit:
            raise RequestTooLarge(_too_large(declared, limit))
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(_too_large(len(body), limit))
        return super().parse(io.BytesIO(body), media_type, parser_context)


def _too_large(size: int, limit: int) -> str:
    return (f"Request body too large: {size} bytes; the limit is {limit} bytes "
            f"(TASKS_API_MAX_BODY_BYTES).")
