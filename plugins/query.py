"""`run_query`: one read-only SQL statement on the operator's query database.

It never runs on the service's own database: settings name a database alias of its own
(TASKS_QUERY_DATABASE, from TASKS_QUERY_DATABASE_URL) whose role can read only what the
operator granted; plugins.query_checks verifies that role before a worker starts. Each run
gets a session of its own with tight limits, closed afterwards, and a cancel or a
timeout cancels the statement on the server before the plugin returns.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections

from plugins.base import PayloadError, Plugin, TaskCancelled, TaskContext

SETTING = "TASKS_QUERY_DATABASE"
URL_SETTING = "TASKS_QUERY_DATABASE_URL"
# Session limits: a read-only query should neither queue behind locks nor sit idle holding
# a snapshot if its thread stalls.
LOCK_TIMEOUT_MS = 5000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10000
# The server's own statement_timeout fires this much before the worker's deadline, so the
# statement is over when the worker gives the slot to another task.
DEADLINE_MARGIN = 0.2
CANCEL_POLL = 0.05  # how often the side thread looks at the task's cancel flag


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


def same_database(a: dict, b: dict) -> bool:
    """Two DATABASES entries name the same server and database (as far as settings tell)."""
    def where(s: dict) -> tuple:
        host = (s.get("HOST") or s.get("OPTIONS", {}).get("host") or "").strip()
        if host in ("", "localhost", "127.0.0.1", "::1", "[::1]"):
            host = "local"
        return host, str(s.get("PORT") or "5432"), s.get("NAME")

    return where(a) == where(b)


def configuration_problem(alias: str | None) -> str | None:
    """What is wrong with `alias` as run_query's database, judged from settings alone."""
    if not alias:
        return (f"run_query is off: no query database is configured. Set {URL_SETTING} to a "
                "database of its own with a read-only role (README: Security model, run_query).")
    if alias == "default":
        return (f"{SETTING} is 'default': run_query never runs on the service's own database; "
                f"set {URL_SETTING} to a database of its own.")
    if alias not in connections.settings:
        return f"{SETTING} names database alias {alias!r}, which DATABASES does not define."
    if same_database(connections.settings[alias], connections.settings["default"]):
        return (f"{SETTING} ({alias!r}) points at the service's own database; run_query "
                f"needs a database of its own ({URL_SETTING}).")
    return None


def enabled() -> bool:
    """run_query has a usable database configured."""
    return configuration_problem(getattr(settings, SETTING, "") or "") is None


def query_alias() -> str:
    """The configured query database alias; PayloadError naming the setting otherwise."""
    alias = getattr(settings, SETTING, "") or ""
    problem = configuration_problem(alias)
    if problem:
        raise PayloadError(problem)
    return alias


@contextmanager
def connect(wrapper) -> Iterator[Any]:
    """A new psycopg session for one run or check, closed afterwards.

    Opened from the alias's settings (Django's backend builds the parameters), not through
    the thread's shared `connections[alias]`: nothing of a run outlives it or leaks into
    the next task on the same executor thread.
    """
    raw = wrapper.get_new_connection(wrapper.get_connection_params())
    try:
        raw.autocommit = True  # transactions are explicit: BEGIN READ ONLY
        yield raw
    finally:
        raw.close()


class _CancelWatch:
    """A side thread that cancels the running statement when the task is cancelled.

    The worker's monitor calls ctx.cancel() on a cancel request and at the deadline; the
    executor thread is blocked inside the statement, so another thread asks the server
    (psycopg's cancel_safe: a cancel request on a connection of its own) to stop it.
    """

    def __init__(self, raw_connection, ctx: TaskContext):
        self.raw = raw_connection
        self.ctx = ctx
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="run_query-cancel",
                                       daemon=True)

    def __enter__(self) -> _CancelWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.done.is_set():
            if self.ctx.sleep(CANCEL_POLL):
                try:
                    self.raw.cancel_safe(timeout=5)
                except Exception:  # noqa: BLE001 - the statement timeout still ends it
                    self.ctx.logger.warning("run_query: could not cancel the statement",
                                            exc_info=True)
                return


class RunQuery(Plugin):
    """Runs `sql` (with optional `params`) on the configured query database."""

    description = "Runs one read-only SQL statement; stores the row count and first rows"
    idempotent = True

    def __init__(self, max_rows: int = 100, **options: Any):
        if "database" in options:
            raise ValueError(f"'database' is not an option: run_query runs on the database "
                             f"of {URL_SETTING}")
        super().__init__(**options)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError(f"max_rows must be a non-negative integer, got {max_rows!r}")
        self.max_rows = max_rows

    def validate(self, payload: dict) -> dict:
        payload = super().validate(payload)
        query_alias()
        errors = {}
        sql = payload.get("sql") or payload.get("query")
        if not isinstance(sql, str) or not sql.strip():
            errors["sql"] = ["Required: one SQL statement."]
        elif ";" in sql.strip().rstrip(";"):
            errors["sql"] = ["Only one statement is allowed."]
        params = payload.get("params", [])
        if not isinstance(params, (list, dict)):
            errors["params"] = ["Must be a list or an object."]
        if "database" in payload:
            errors["database"] = [f"Not accepted: run_query runs only on the database the "
                                  f"operator configured ({URL_SETTING})."]
        max_rows = payload.get("max_rows", self.max_rows)
        if (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                or not 0 <= max_rows <= 10000):
            errors["max_rows"] = ["Must be an integer from 0 to 10000."]
        if errors:
            raise PayloadError(errors)
        return {**payload, "sql": sql.strip().rstrip(";")}

    def unavailable_reason(self) -> str | None:
        # A worker without the query database leaves run_query to the workers that have it.
        return configuration_problem(getattr(settings, SETTING, "") or "")

    def run(self, payload: dict, ctx: TaskContext):
        if "database" in payload:  # enqueued before the payload lost its `database` field
            raise PayloadError({"database": [f"Not accepted ({URL_SETTING} decides)."]})
        wrapper = connections.create_connection(query_alias())
        max_rows = payload.get("max_rows", self.max_rows)
        ctx.check()
        with wrapper.wrap_database_errors, connect(wrapper) as raw:
            with _CancelWatch(raw, ctx), raw.cursor() as cursor:
                try:
                    columns, rows, rowcount = self._execute(cursor, payload, max_rows, ctx)
                except Exception:
                    # A statement the server stopped because the task was cancelled or
                    # timed out ends as the worker expects: TaskCancelled with its reason.
                    if ctx.cancelled:
                        raise TaskCancelled(ctx.cancel_reason or "cancelled") from None
                    raise
        return {
            "columns": columns,
            "rows": [[_jsonable(v) for v in row] for row in rows],
            "row_count": rowcount,
            "truncated": rowcount > len(rows),
        }

    @staticmethod
    def _execute(cursor, payload: dict, max_rows: int, ctx: TaskContext) -> tuple:
        timeout_ms = max(1, int((ctx.remaining - DEADLINE_MARGIN) * 1000))
        cursor.execute("BEGIN READ ONLY")
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true), "
            "set_config('idle_in_transaction_session_timeout', %s, true)",
            [str(timeout_ms), str(LOCK_TIMEOUT_MS), str(IDLE_IN_TRANSACTION_TIMEOUT_MS)])
        cursor.execute(payload["sql"], payload.get("params") or None)
        columns = [c.name for c in cursor.description] if cursor.description else []
        rows = cursor.fetchmany(max_rows) if columns else []
        # Client-side cursor: rowcount is every row the statement returned.
        return columns, rows, cursor.rowcount
