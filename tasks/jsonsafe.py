"""What a JSON value or a string must be to be stored and shown safely, with the limits of
this project's settings. The checks of payloads and text are taskcli.jsonsafe's (plain
Python, which the console CLI shares); this module adds TASKS_MAX_JSON_DEPTH and
TASKS_MAX_RESULT_BYTES, and what only the service stores: bounded error texts.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from taskcli import jsonsafe as _checks
from taskcli.jsonsafe import (  # noqa: F401 - the service reads them here
    BAD_CHARACTERS,
    DEFAULT_MAX_DEPTH,
    shown,
    text_depth_exceeds,
    text_problem,
)

# A result records what a run did (ids, counts, a summary) and is shown in lists and the
# admin; bulk output belongs in storage the result points to.
DEFAULT_MAX_RESULT_BYTES = 64 * 1024


def max_depth() -> int:
    """How many containers deep a payload may nest (TASKS_MAX_JSON_DEPTH)."""
    return getattr(settings, "TASKS_MAX_JSON_DEPTH", DEFAULT_MAX_DEPTH)


def max_result_bytes() -> int:
    """The largest plugin result stored whole, as JSON bytes (TASKS_MAX_RESULT_BYTES)."""
    return getattr(settings, "TASKS_MAX_RESULT_BYTES", DEFAULT_MAX_RESULT_BYTES)


MAX_ERROR_CHARS = 8000  # an error as stored: its head (what raised) and tail (where)


def storable_error(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """An error text PostgreSQL can store, of bounded size: NUL and unpaired surrogates
    become U+FFFD, and a long text keeps its first and last parts."""
    text = BAD_CHARACTERS.sub("\ufffd", text)
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 60
    return f"{text[:head]}\n… [{len(text) - head - tail} characters cut] …\n{text[-tail:]}"


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether a JSON value nests more than `limit` containers deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, (list, tuple)):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


def text_is_plainly_safe(text: str) -> bool:
    """Whether ASCII JSON text (json.dumps' default) shows no NUL, no surrogate and no
    nesting past TASKS_MAX_JSON_DEPTH: the common case, decided without a walk."""
    return _checks.text_is_plainly_safe(text, max_depth())


def problem(value: Any, root: str = "", depth_limit: int | None = None) -> str | None:
    """The first problem in a JSON value as "path: problem", or None (taskcli.jsonsafe's
    check); `depth_limit` defaults to TASKS_MAX_JSON_DEPTH."""
    return _checks.problem(value, root, max_depth() if depth_limit is None else depth_limit)
