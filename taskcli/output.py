"""What the task commands print: the API's JSON as json or yaml, or a table for people."""

from __future__ import annotations

import json
from typing import Any

TASK_COLUMNS = [("ID", "id"), ("NAME", "name"), ("TYPE", "type"), ("STATUS", "status"),
                ("PRIORITY", "priority"), ("QUEUE", "queue"), ("RETRIES", "retries"),
                ("CREATED", "created_at"), ("PROGRESS", "progress")]
LIST_MESSAGE_CHARS = 40  # of a progress message in a list; `task get` shows it whole
HISTORY_COLUMNS = [("ID", "id"), ("EVENT", "event_type"), ("STATUS", "status"),
                   ("ATTEMPT", "attempt"), ("WORKER", "worker_id"), ("CREATED", "created_at"),
                   ("DETAILS", "details")]
FORMATS = ("table", "json", "yaml")


class OutputError(Exception):
    """The output cannot be produced here (yaml without PyYAML)."""


def render(action: str, data: Any, fmt: str) -> str:
    """The command's output for `data` (the API's JSON, unchanged) in table, json or yaml."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        try:
            import yaml
        except ImportError:
            raise OutputError("-o yaml needs PyYAML (pip install PyYAML); -o json works "
                              "without it.") from None
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    if action == "list":
        table = _table(TASK_COLUMNS, [_task_row(t) for t in data["results"]])
        pages = max(1, -(-data["count"] // data["page_size"]))
        return f"{table}\n{data['count']} task(s); page {data['page']} of {pages}"
    if action == "history":
        return _table(HISTORY_COLUMNS, [{**r, "created_at": _time(r["created_at"])}
                                        for r in data])
    if action == "status":
        # /api/stats: total_tasks, then <status>_tasks for each status in lifecycle order.
        rows = [{"status": key.removesuffix("_tasks"), "count": value}
                for key, value in data.items()
                if key.endswith("_tasks") and key != "total_tasks"]
        rows.append({"status": "total", "count": data["total_tasks"]})
        return _table([("STATUS", "status"), ("COUNT", "count")], rows)
    # One task: field and value, one per line.
    rows = [{"field": key, "value": progress_text(value) if key == "progress" else _cell(value)}
            for key, value in data.items()]
    return _table([("FIELD", "field"), ("VALUE", "value")], rows)


def render_rows(columns: list[tuple[str, str]], data: Any, rows: list[dict], fmt: str) -> str:
    """`data` as json or yaml, or `rows` as a table of `columns` (the queue and schedule
    commands print this way)."""
    if fmt != "table":
        return render("", data, fmt)
    return _table(columns, rows)


def _task_row(task: dict) -> dict:
    running = task["status"] == "running"
    return {**task, "retries": f"{task['retry_count']}/{task['max_retries']}",
            "created_at": _time(task["created_at"]),
            "progress": progress_text(task.get("progress"), LIST_MESSAGE_CHARS) if running
            else ""}


def progress_text(value: Any, message_chars: int | None = None) -> str:
    """A plugin's progress for people: `3/10 30% message`, `3 message`, or ''."""
    if not isinstance(value, dict) or not _is_number(value.get("done")):
        return ""
    done, total = value["done"], value.get("total")
    parts = [_number(done)]
    if _is_number(total) and total:
        parts = [f"{_number(done)}/{_number(total)}", f"{100 * done / total:.0f}%"]
    message = " ".join(str(value.get("message") or "").split())
    if message_chars is not None and len(message) > message_chars:
        message = message[:message_chars - 3] + "..."
    return " ".join([*parts, message] if message else parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: float) -> str:
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.6g}"


def _time(value: str | None) -> str:
    # 2026-01-02T03:04:05.123456Z -> 2026-01-02 03:04:05
    return (value or "")[:19].replace("T", " ")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())  # one line per row


def _table(columns: list[tuple[str, str]], rows: list[dict]) -> str:
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max([len(title), *(len(r[i]) for r in cells)])
              for i, (title, _) in enumerate(columns)]
    lines = [[title for title, _ in columns], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
