"""`run_query`: one SQL statement, read only, bounded by the task's timeout."""

from __future__ import annotations

import datetime
import decimal
import uuid

from django.db import connections

from plugins.base import PayloadError, Plugin, TaskContext


def _jsonable(value):
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class RunQuery(Plugin):
    """Runs `sql` (with optional `params`) against database alias `database`."""

    description = "Runs one read-only SQL statement; stores the row count and first rows"
    idempotent = True

    def __init__(self, database: str = "default", max_rows: int = 100, **options):
        super().__init__(**options)
        self.database = database
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError(f"max_rows must be a non-negative integer, got {max_rows!r}")
        self.max_rows = max_rows

    def validate(self, payload: dict) -> dict:
        payload = super().validate(payload)
        errors = {}
        sql = payload.get("sql") or payload.get("query")
        if not isinstance(sql, str) or not sql.strip():
            errors["sql"] = ["Required: one SQL statement."]
        elif ";" in sql.strip().rstrip(";"):
            errors["sql"] = ["Only one statement is allowed."]
        params = payload.get("params", [])
        if not isinstance(params, (list, dict)):
            errors["params"] = ["Must be a list or an object."]
        alias = payload.get("database", self.database)
        if alias not in connections.settings:
            errors["database"] = [f"Unknown database alias {alias!r}."]
        max_rows = payload.get("max_rows", self.max_rows)
        if (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                or not 0 <= max_rows <= 10000):
            errors["max_rows"] = ["Must be an integer from 0 to 10000."]
        if errors:
            raise PayloadError(errors)
        return {**payload, "sql": sql.strip().rstrip(";")}

    def run(self, payload: dict, ctx: TaskContext):
        alias = payload.get("database", self.database)
        max_rows = payload.get("max_rows", self.max_rows)
        timeout_ms = max(1, int(ctx.remaining * 1000))
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                # One READ ONLY transaction; statement_timeout from the task's own deadline.
                cursor.execute("BEGIN READ ONLY")
                try:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                                   [str(timeout_ms)])
                    cursor.execute(payload["sql"], payload.get("params") or None)
                    columns = [c.name for c in cursor.description] if cursor.description else []
                    rows = cursor.fetchmany(max_rows) if columns else []
                    # Client-side cursor: rowcount is every row the statement returned.
                    rowcount = cursor.rowcount
                finally:
                    cursor.execute("ROLLBACK")
        finally:
            connection.close()
        return {
            "columns": columns,
            "rows": [[_jsonable(v) for v in row] for row in rows],
            "row_count": rowcount,
            "truncated": rowcount > len(rows),
        }
