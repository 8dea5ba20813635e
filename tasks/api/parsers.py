"""JSON request bodies: bounded in size and depth, and only text the database can store."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import JSONParser, get_encoding

from tasks import jsonsafe

# The body nests a task object (and a bulk body an array of them) around each payload.
BODY_LEVELS = 2


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class BoundedJSONParser(JSONParser):
    """JSONParser that refuses, before anything reaches a view:

    - bodies over TASKS_API_MAX_BODY_BYTES, with a 413. DRF reads the raw stream,
      bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE check on request.body;
    - bodies nested deeper than a payload may be, with a 400, found by a scan of the
      text: Python's JSON parser recurses, and 100,000 brackets exhaust its stack;
    - strings or keys with NULs or unpaired surrogates ("\\ud800"), with a 400 naming
      the field: PostgreSQL cannot store them, nor can the response echo them.
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
        depth = jsonsafe.max_depth()
        if jsonsafe.text_depth_exceeds(_decoded(body, parser_context), depth + BODY_LEVELS):
            raise ParseError(f"JSON nested too deep: a payload may nest at most {depth} "
                             f"levels (TASKS_MAX_JSON_DEPTH).")
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:  # unreachable after the scan; never a 500 if it is not
            raise ParseError("JSON nested too deep.") from None
        errors = unsafe_text_errors(data)
        if errors:
            raise ValidationError(errors)
        return data


def _decoded(body: bytes, parser_context: dict | None) -> str:
    encoding = get_encoding(parser_context or {})  # text codecs only (no bz2_codec)
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


def unsafe_text_errors(data: Any) -> dict | None:
    """DRF-shaped field errors for the first string or key the database cannot store:
    {"payload": ["payload.a[3]: contains an unpaired surrogate"]}, or per index for an
    array of tasks ({"1": {...}})."""
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items):
        errors = _item_errors(item)
        if errors:
            return {str(index): errors} if isinstance(data, list) else errors
    return None


def _item_errors(item: Any) -> dict | None:
    if not isinstance(item, dict):
        found = jsonsafe.problem(item, depth_limit=_UNLIMITED)
        return {"non_field_errors": [found]} if found else None
    for key, value in item.items():
        if bad := jsonsafe.text_problem(key):
            return {"non_field_errors": [f"{jsonsafe.shown(key)}: the field name {bad}"]}
        found = jsonsafe.problem(value, key, depth_limit=_UNLIMITED)
        if found:
            return {key: [found]}
    return None


_UNLIMITED = 10**9  # depth was bounded by the scan; the queue names the deep field


def _too_large(size: int, limit: int) -> str:
    return (f"Request body too large: {size} bytes; the limit is {limit} bytes "
            f"(TASKS_API_MAX_BODY_BYTES).")
