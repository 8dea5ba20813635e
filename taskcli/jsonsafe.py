"""What a JSON value or a string must be to be stored and shown safely.

PostgreSQL refuses NUL characters in text and jsonb, and psycopg cannot encode an unpaired
UTF-16 surrogate (JSON's "\\ud800", or argv bytes that are not UTF-8): either one would
fail the write with a server error. Deep nesting is refused because every consumer of a
value (json.dumps, PostgreSQL's jsonb parser, a plugin, the admin's indented view) walks it
recursively, and indenting N levels costs N^2 characters. These checks walk iteratively,
so a hostile value cannot exhaust the stack while being checked.

Plain Python, shared by the console CLI and the service: tasks.jsonsafe adds the limits a
project's settings choose and the checks only the service needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

# Real payloads nest a handful of levels; 32 leaves room for generated documents while
# keeping json.dumps (about 1000 levels) and PostgreSQL's stack far away, and the admin's
# indented rendering of the deepest value small.
DEFAULT_MAX_DEPTH = 32
# What PostgreSQL text and jsonb cannot hold (NUL) or psycopg cannot encode (surrogates).
BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
_SHOWN_KEY_CHARS = 40


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored in PostgreSQL, or None."""
    match = BAD_CHARACTERS.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains a NUL character"
    return "contains an unpaired surrogate"


def shown(text: str, limit: int = _SHOWN_KEY_CHARS) -> str:
    """`text` safe to echo in an error message: bad characters escaped, length bounded."""
    text = BAD_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= limit else text[:limit] + "…"


def _children(value: Any, path: str) -> Iterator[tuple[str | None, str, Any]]:
    """(key or None, child path, child) of a container, in document order."""
    if isinstance(value, dict):
        for key, child in value.items():
            key = key if isinstance(key, str) else str(key)
            yield key, f"{path}.{shown(key)}" if path else shown(key), child
    else:
        for index, child in enumerate(value):
            yield None, f"{path}[{index}]", child


def problem(value: Any, root: str = "", depth_limit: int = DEFAULT_MAX_DEPTH) -> str | None:
    """The first problem in a JSON value as "path: problem", or None.

    `root` names the value ("payload" gives paths like payload.a.b[3]); `depth_limit` is
    in containers, the value itself being the first.
    """
    limit = depth_limit
    if _plainly_safe(value, limit):
        return None
    stack: list[tuple[Any, str, int]] = [(value, root, 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            found = text_problem(item)
            if found:
                return f"{path or 'value'}: {found}"
        elif isinstance(item, (dict, list, tuple)):
            if depth > limit:
                return f"{path or 'value'}: nested deeper than {limit} levels"
            pushed = []
            for key, child_path, child in _children(item, path):
                found = text_problem(key) if key is not None else None
                if found:
                    return f"{child_path}: the key {found}"
                pushed.append((child, child_path, depth + 1))
            stack.extend(reversed(pushed))  # popped in document order
    return None


# In ASCII-only JSON every NUL and every surrogate, paired or not, is spelled as one of these.
_ESCAPED_SUSPECT = re.compile(r"\\u(?:0000|d[89a-f])")


def _plainly_safe(value: Any, limit: int) -> bool:
    """True when the value's ASCII JSON text shows no NUL, no surrogate and no nesting past
    `limit`: the common case, decided by the C encoder instead of a walk in Python. False
    means "walk it" (a non-BMP character or a value json cannot encode also land there)."""
    if not isinstance(value, (dict, list)):
        return False
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        return False
    return text_is_plainly_safe(text, limit)


def text_is_plainly_safe(text: str, limit: int) -> bool:
    """Whether JSON text made with ensure_ascii shows no NUL, no surrogate (paired or not:
    a non-BMP character is walked too) and no nesting past `limit`."""
    return _ESCAPED_SUSPECT.search(text) is None and not text_depth_exceeds(text, limit)


# A JSON string token (escapes included), for the depth scan of raw text.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def text_depth_exceeds(text: str, limit: int) -> bool:
    """Whether JSON text opens more than `limit` brackets deep (outside strings), found
    without parsing it: Python's parser recurses, and a deep enough body blows the stack."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few brackets to be that deep
    depth = 0
    for char in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if char in "[{" else -1
        if depth > limit:
            return True
    return False
