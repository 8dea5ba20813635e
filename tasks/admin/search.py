"""The task list's search box: an id, a payload match, or text in names and types.

A payload search is a containment test (`payload @> {...}`) served by the GIN
jsonb_path_ops index (idx_payload_path): `to=a@example.com`, `user.id=7`, `tags=billing`
(also matches the value inside a list), or a JSON object `{"to": "a@example.com"}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db.models import Q

from tasks import jsonsafe

KEY_PATH = re.compile(r"^[A-Za-z_][\w\-]*(\.[A-Za-z_][\w\-]*)*$")

HELP = ("A number finds that task id; key=value (dots for nested keys: user.id=7) or a JSON "
        "object finds tasks whose payload holds it; other text searches names and types.")


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def payload_query(term: str) -> Q | None:
    """The payload filter `term` asks for, or None when it is not a payload search."""
    term = term.strip()
    if term.startswith("{"):
        try:
            wanted = json.loads(term)
        except (ValueError, RecursionError):
            return None
        if not isinstance(wanted, dict) or not wanted or jsonsafe.problem(wanted):
            return None
        return Q(payload__contains=wanted)
    key, sep, raw = term.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not KEY_PATH.match(key) or not raw:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = raw
    if isinstance(value, (dict, list)) or jsonsafe.problem(value):
        value = raw
    path = key.split(".")
    # {"tags": ["billing"]} does not contain {"tags": "billing"}: ask for both shapes.
    return Q(payload__contains=_nest(path, value)) | Q(payload__contains=_nest(path, [value]))
