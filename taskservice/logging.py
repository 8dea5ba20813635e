"""JSON-lines log formatting for stdout: one object per record, for log shippers.

Container platforms collect stdout line by line; one JSON object per line keeps a
traceback or a multi-line message inside its record, and the structured `extra` fields
the engine logs (`action`, `task_id`, `task_ids`, `worker`, ...) arrive as fields an
operator can filter on instead of text to grep.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in data:
                data[key] = _jsonable(value)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        # Non-ASCII stays readable; default=str is a last resort for odd extras.
        return json.dumps(data, ensure_ascii=False, default=str)
