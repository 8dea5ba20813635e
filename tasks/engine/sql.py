"""The engine's SQL: queries.sql parsed once into QUERIES, and `run`, which executes one.

Python code names the statement it wants (`run("claim_any", params)`); the SQL itself is
in queries.sql, where a newcomer greps the name and can paste it into psql.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from django.db import connection

from tasks.conf import engine

_NAME = re.compile(r"^-- name: ([a-z][a-z0-9_]*) --$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """{name: SQL} from the text of a queries file; ValueError on a repeated name or a name
    without a statement. Each name is followed by one line of comment, then the SQL."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql: the name {name!r} is used twice")
        lines = body.strip().splitlines()
        if not lines or not lines[0].startswith("-- "):
            raise ValueError(f"queries.sql: {name!r} needs a comment line saying what it does")
        statement = "\n".join(lines[1:]).strip()
        if not statement:
            raise ValueError(f"queries.sql: {name!r} has no SQL")
        queries[name] = statement
    return queries


QUERIES: dict[str, str] = parse((Path(__file__).parent / "queries.sql").read_text())


# A prepared statement keeps the plan PostgreSQL made for the table as it was when the
# statement was first run. A plan made while `tasks` was nearly empty (a new or truncated
# table) reads the whole table once it has grown, for as long as the connection lives: a
# drain that falls 10-fold. The claim reports the table's size; once it has grown
# REPLAN_GROWTH-fold since this process's plans were made, each connection drops its
# prepared statements before its next one, and they are planned again for what is there.
REPLAN_GROWTH = 4
REPLAN_MIN_BYTES = 64 * 1024  # below this every plan is cheap: no replanning for growth
_planned_at_bytes: int | None = None
_generation = 0  # bumped to replan; each connection remembers the one it planned under
_planned: weakref.WeakKeyDictionary[psycopg.Connection, int] = weakref.WeakKeyDictionary()


def table_size_seen(table_bytes: int | None) -> None:
    """The size of `tasks` as a statement just saw it: replan if it has grown a lot."""
    global _planned_at_bytes, _generation
    if table_bytes is None:
        return
    if _planned_at_bytes is None:
        _planned_at_bytes = table_bytes
    elif table_bytes >= REPLAN_GROWTH * max(_planned_at_bytes, REPLAN_MIN_BYTES):
        _planned_at_bytes = table_bytes
        _generation += 1


def copy(name: str, rows: Iterable[Sequence[Any]]) -> None:
    """Stream `rows` into the COPY ... FROM STDIN statement called `name` (one round trip
    for the whole stream: the client encodes rows while the server stores them)."""
    sql = QUERIES[name]
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        with cursor.copy(sql) as stream:
            for row in rows:
                stream.write_row(row)


def run(name: str, params: Any = None) -> list[tuple]:
    """Run the statement called `name` and return its rows (every statement returns rows).

    Parameters are bound server-side and the statement is prepared once per connection:
    Django's default cursor formats every parameter into the SQL text, so PostgreSQL would
    parse and plan these CTEs again on every call (and big arrays would travel as text).
    TASKS_DB_PREPARE=0 turns preparing off (PgBouncer in transaction pooling before 1.21).
    """
    return execute(QUERIES[name], params)  # KeyError names a statement that does not exist


def execute(sql: str, params: Any = None) -> list[tuple]:
    """Run one statement as `run` does (bound server-side, prepared once per connection)
    and return its rows: for a statement built from models, which queries.sql cannot
    hold (tasks.api.authentication)."""
    connection.ensure_connection()
    conn = connection.connection
    prepare = engine().DB_PREPARE
    if prepare and conn.prepare_threshold is None:
        # Django turns preparing off; only these server-binding cursors can use it (its own
        # client-side cursors never prepare), so turning it back on changes nothing else.
        conn.prepare_threshold = 5
    with connection.wrap_database_errors, psycopg.Cursor(conn) as cursor:
        if prepare and _planned.get(conn) != _generation:
            if conn in _planned:
                cursor.execute("DEALLOCATE ALL")  # psycopg forgets its statements too
            _planned[conn] = _generation
        cursor.execute(sql, params, prepare=prepare or False)
        # Not checked via cursor.description, which builds a Column per column each call.
        return cursor.fetchall()
