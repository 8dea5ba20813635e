"""The queue: the one module that changes a task's state.

Every transition writes exactly one TaskHistory row and sends a NOTIFY on CHANNEL, in the
same transaction as the change, so an event always means a committed change. Transitions
state the status they expect (`WHERE status = 'running' AND locked_by = %s AND attempts
= %s`); a worker whose lease was taken over gets "0 rows", never someone else's task.

The hot paths (enqueue, claim, complete, fail) are single SQL statements: the update, the
history insert and the NOTIFY ride in data-modifying CTEs, so in autocommit mode each one
is its own transaction and costs one round trip for a whole batch of tasks. The rarer
transitions a person asks for (cancel, retry) lock the row and use the ORM.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from plugins import registry
from plugins.base import PayloadError
from tasks import jsonsafe
from tasks.backoff import backoff_delay
from tasks.conf import engine
from tasks.exceptions import (
    IdempotencyConflict,
    InvalidTask,
    InvalidTransition,
    TaskNotFound,
    UnknownTaskType,
)
from tasks.models import Event, Origin, Status, Task, TaskHistory
from tasks.states import parse_id

logger = logging.getLogger(__name__)

CHANNEL = "taskservice"
# Events that mean "there may be work to claim now".
WAKE_EVENTS = frozenset(
    {Event.TASK_QUEUED, Event.TASK_REQUEUED, Event.TASK_RELEASED, Event.LEASE_EXPIRED}
)
NOTIFY_MAX_IDS = 100  # a NOTIFY payload is at most 8000 bytes: send ids, not payloads
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

TASK_COLUMNS = [f.column for f in Task._meta.concrete_fields]
_ATTNAMES = [f.attname for f in Task._meta.concrete_fields]
_COLS = ", ".join(TASK_COLUMNS)
_JSON_COLUMNS = {"payload", "result"}


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedTask:
    """What a worker needs to run one claimed task."""

    id: int
    name: str
    type: str
    payload: dict
    queue: str
    priority: int
    attempt: int  # the task's `attempts` after this claim: fences the completion
    retry_count: int
    max_retries: int
    timeout_seconds: int


@dataclass
class Outcome:
    """How one run ended, as reported by a worker to complete/fail/finish_cancelled."""

    task_id: int
    attempt: int
    result: Any = None
    error: str = ""
    retry_count: int = 0  # as claimed; the backoff grows with it


def _loads(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _task_from_row(row: Sequence) -> Task:
    values = [
        _loads(v) if col in _JSON_COLUMNS else v for col, v in zip(TASK_COLUMNS, row, strict=True)
    ]
    return Task.from_db("default", _ATTNAMES, values)


def _notify_sql(event_sql: str, source: str, extra_sql: str = "") -> str:
    """A CTE that sends one NOTIFY summarising the rows of CTE `source` (none if empty)."""
    return f"""
    note AS (
        SELECT pg_notify('{CHANNEL}', json_build_object(
            'event', {event_sql},
            'count', (SELECT count(*) FROM {source}),
            'ids', (SELECT coalesce(json_agg(id), '[]') FROM
                      (SELECT id FROM {source} ORDER BY id LIMIT {NOTIFY_MAX_IDS}) s)
            {extra_sql}
        )::text) AS sent
        WHERE EXISTS (SELECT 1 FROM {source})
    )"""


def _run(sql: str, params: Any) -> list[tuple]:
    """Run one hot-path statement and return its rows.

    Parameters are bound server-side and the statement is prepared once per connection:
    Django's default cursor formats every parameter into the SQL text, so PostgreSQL would
    parse and plan these CTEs again on every call (and big arrays would travel as text).
    TASKS_DB_PREPARE=0 turns preparing off (PgBouncer in transaction pooling before 1.21).
    """
    connection.ensure_connection()
    conn = connection.connection
    prepare = engine().DB_PREPARE
    if prepare and conn.prepare_threshold is None:
        # Django turns preparing off; only these server-binding cursors can use it (its own
        # client-side cursors never prepare), so turning it back on changes nothing else.
        conn.prepare_threshold = 5
    with connection.wrap_database_errors, psycopg.Cursor(conn) as cursor:
        cursor.execute(sql, params, prepare=prepare or False)
        # Every hot-path statement returns rows (not checked via cursor.description,
        # which builds a Column object per column on each call).
        return cursor.fetchall()


def _new_task(task_id: int, p: _Prepared, created_at, run_at, submitter: _Submitter) -> Task:
    """The Task just inserted from `p`, built without reading the row back."""
    values = {
        "id": task_id, "name": p.name, "type": p.type, "status": Status.QUEUED,
        "payload": p.payload, "priority": p.priority, "queue": p.queue, "run_at": run_at,
        "retry_count": 0, "max_retries": p.max_retries, "timeout_seconds": p.timeout_seconds,
        "attempts": 0, "locked_by": None, "locked_until": None, "last_error": "",
        "result": None, "idempotency_key": p.idempotency_key,
        "idempotency_hash": _fingerprint(p), "owner_id": submitter.owner_id,
        "origin": submitter.origin, "cancel_requested_at": None,
        "created_at": created_at, "updated_at": created_at, "started_at": None,
        "finished_at": None,
    }
    # from_db with every field in order takes Django's fast positional __init__ path.
    task = Task.from_db("default", _ATTNAMES, [values[name] for name in _ATTNAMES])
    task.was_created = True
    return task


def notify(event: str, ids: Iterable[int], **extra: Any) -> None:
    """Send one event on CHANNEL inside the current transaction."""
    ids = list(ids)
    payload = {"event": str(event), "count": len(ids), "ids": ids[:NOTIFY_MAX_IDS], **extra}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, json.dumps(payload)])


# --- enqueue -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    name: str
    type: str
    payload: dict
    payload_json: str
    priority: int
    queue: str
    run_at: datetime.datetime | None
    max_retries: int
    timeout_seconds: int
    idempotency_key: str | None


def _int_in(errors: dict, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = [f"Must be an integer from {low} to {high}."]
        return 0
    if not low <= value <= high:
        errors[name] = [f"Must be between {low} and {high}, got {value}."]
    return value


def prepare(
    *,
    name: str,
    type: str,  # noqa: A002 - the public field is called type
    payload: dict | None = None,
    priority: int = 0,
    queue: str = "default",
    run_at: datetime.datetime | None = None,
    max_retries: int | None = None,
    timeout_seconds: int | None = None,
    idempotency_key: str | None = None,
) -> _Prepared:
    """Validate one task before anything is written; raise InvalidTask naming each field."""
    cfg = engine()
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["Required: a non-empty string."]
    elif len(name) > 255:
        errors["name"] = ["At most 255 characters."]
    elif bad := jsonsafe.text_problem(name):
        errors["name"] = [f"Invalid text: it {bad}."]
    payload = {} if payload is None else payload
    payload_json = "{}"
    if not isinstance(type, str) or not type:
        errors["type"] = ["Required: the name of a registered task type."]
    else:
        try:
            plugin = registry.get(type)
        except UnknownTaskType as exc:
            errors.update(exc.errors)
        else:
            if not isinstance(payload, dict):
                errors["payload"] = ["Must be a JSON object."]
            elif unsafe := jsonsafe.problem(payload, "payload"):
                errors["payload"] = [unsafe]  # before the plugin walks it
            else:
                try:
                    payload = plugin.validate(payload)
                except PayloadError as exc:
                    errors["payload"] = exc.errors  # the plugin's own field errors
                else:
                    try:
                        payload_json = json.dumps(payload, separators=(",", ":"),
                                                  allow_nan=False)
                    except (TypeError, ValueError) as exc:
                        errors["payload"] = [f"Must be JSON-serialisable: {exc}."]
                    else:
                        if len(payload_json.encode()) > cfg.MAX_PAYLOAD_BYTES:
                            errors["payload"] = [
                                f"Too large: {len(payload_json.encode())} bytes; the limit is "
                                f"{cfg.MAX_PAYLOAD_BYTES} bytes."
                            ]
                        elif _has_nul(payload_json):
                            errors["payload"] = ["Must not contain NUL characters."]
    priority = _int_in(errors, "priority", priority, cfg.MIN_PRIORITY, cfg.MAX_PRIORITY)
    max_retries = cfg.DEFAULT_MAX_RETRIES if max_retries is None else max_retries
    max_retries = _int_in(errors, "max_retries", max_retries, 0, cfg.MAX_RETRIES_LIMIT)
    timeout_seconds = cfg.DEFAULT_TIMEOUT if timeout_seconds is None else timeout_seconds
    timeout_seconds = _int_in(errors, "timeout_seconds", timeout_seconds, 1, cfg.MAX_TIMEOUT)
    if not isinstance(queue, str) or not QUEUE_NAME_RE.match(queue):
        errors["queue"] = ["Must be 1-100 characters of letters, digits, '_', '-', '.', ':'."]
    if run_at is not None:
        if not isinstance(run_at, datetime.datetime):
            errors["run_at"] = ["Must be a datetime."]
        elif timezone.is_naive(run_at):
            errors["run_at"] = ["Must include a time zone."]
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255
    ):
        errors["idempotency_key"] = ["Must be a string of 1 to 255 characters."]
    elif idempotency_key is not None and (bad := jsonsafe.text_problem(idempotency_key)):
        errors["idempotency_key"] = [f"Invalid text: it {bad}."]
    if errors:
        raise InvalidTask(errors)
    return _Prepared(name, type, payload, payload_json, priority, queue, run_at, max_retries,
                     timeout_seconds, idempotency_key)


# The arbiter of a reused key: unique per owner (uniq_owner_idempotency_key).
_ON_KEY_CONFLICT = ("ON CONFLICT ((coalesce(owner_id, 0)), idempotency_key) "
                    "WHERE idempotency_key IS NOT NULL DO NOTHING")
_SELECT_BY_KEYS = (f"SELECT {_COLS} FROM tasks WHERE coalesce(owner_id, 0) = %s "
                   "AND idempotency_key = ANY(%s)")

_INSERT_ONE = f"""
WITH ins AS (
    INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                       max_retries, timeout_seconds, attempts, last_error, idempotency_key,
                       idempotency_hash, owner_id, origin, created_at, updated_at)
    VALUES (%s, %s, 'queued', %s::jsonb, %s, %s, coalesce(%s, now()), 0, %s, %s, 0, '', %s,
            %s, %s, %s, now(), now())
    {_ON_KEY_CONFLICT}
    RETURNING {_COLS}
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'queued', 'task_queued', 0, '', '', now() FROM ins
)
SELECT ins.*, pg_notify('{CHANNEL}', json_build_object(
    'event', 'task_queued', 'count', 1, 'ids', json_build_array(ins.id),
    'queue', ins.queue, 'type', ins.type)::text)
FROM ins
"""


@dataclass(frozen=True)
class _Submitter:
    owner_id: int | None
    origin: str


def _submitter(owner: Any, origin: str) -> _Submitter:
    owner_id = getattr(owner, "pk", owner)
    if owner_id is not None and (isinstance(owner_id, bool) or not isinstance(owner_id, int)):
        raise TypeError(f"owner must be a user or a user id, got {owner!r}")
    if origin not in Origin.values:
        raise TypeError(f"origin must be one of {', '.join(Origin.values)}, got {origin!r}")
    return _Submitter(owner_id, str(origin))


def _fingerprint(p: _Prepared) -> str | None:
    """A digest of what was submitted with an idempotency key (None without a key)."""
    if p.idempotency_key is None:
        return None
    body = json.dumps([p.name, p.type, p.payload_json, p.priority, p.queue,
                       p.run_at.isoformat() if p.run_at else None, p.max_retries,
                       p.timeout_seconds], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _same_or_conflict(existing: Task, p: _Prepared) -> Task:
    """A reused key: the existing task if the body is the same, else IdempotencyConflict."""
    if existing.idempotency_hash != _fingerprint(p):
        raise IdempotencyConflict(existing.pk, p.idempotency_key)
    existing.was_created = False
    return existing


def enqueue(*, owner: Any = None, origin: str = Origin.PYTHON, **spec: Any) -> Task:
    """Validate and store one task; returns it with `was_created` set.

    Keyword-only fields: name, type, payload, priority, queue, run_at, max_retries,
    timeout_seconds, idempotency_key; `owner` (a user or id: who submitted it) and
    `origin` record where it came from. Inside a caller's transaction the task exists, and
    workers are woken, only if that transaction commits. An idempotency key is unique per
    owner: reused with the same fields it returns the existing task (was_created False)
    and writes nothing; with other fields it raises IdempotencyConflict.
    """
    who = _submitter(owner, origin)
    p = prepare(**spec)
    rows = _run(_INSERT_ONE, [p.name, p.type, p.payload_json, p.priority, p.queue, p.run_at,
                              p.max_retries, p.timeout_seconds, p.idempotency_key,
                              _fingerprint(p), who.owner_id, who.origin])
    if rows:
        task = _task_from_row(rows[0][: len(TASK_COLUMNS)])
        task.was_created = True
        return task
    with connection.cursor() as cursor:
        cursor.execute(_SELECT_BY_KEYS, [who.owner_id or 0, [p.idempotency_key]])
        return _same_or_conflict(_task_from_row(cursor.fetchone()), p)


_INSERT_MANY = f"""
WITH src AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[],
                         %s::timestamptz[], %s::int[], %s::int[], %s::text[], %s::text[])
           WITH ORDINALITY AS s(name, type, payload, priority, queue, run_at, max_retries,
                                timeout_seconds, idempotency_key, idempotency_hash, ord)
), ins AS (
    INSERT INTO tasks (name, type, status, payload, priority, queue, run_at, retry_count,
                       max_retries, timeout_seconds, attempts, last_error, idempotency_key,
                       idempotency_hash, owner_id, origin, created_at, updated_at)
    SELECT name, type, 'queued', payload::jsonb, priority, queue, coalesce(run_at, now()), 0,
           max_retries, timeout_seconds, 0, '', idempotency_key, idempotency_hash,
           %s::bigint, %s::text, now(), now()
    FROM src ORDER BY ord
    {_ON_KEY_CONFLICT}
    RETURNING id, idempotency_key, created_at, run_at
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'queued', 'task_queued', 0, '', '', now() FROM ins
), {_notify_sql("'task_queued'", "ins")}
SELECT ins.* FROM ins LEFT JOIN note ON true
"""


def enqueue_many(specs: Iterable[dict[str, Any]], *, owner: Any = None,
                 origin: str = Origin.PYTHON) -> list[Task]:
    """Validate every task, then store them all in one statement; same order as given.

    One invalid task rejects the batch: InvalidTask.errors maps each bad index to its
    field errors, and nothing is written. So does an idempotency key given twice in the
    batch. A key that exists already returns that task, or raises IdempotencyConflict
    (and writes nothing) when the fields differ, as in `enqueue`.
    """
    who = _submitter(owner, origin)
    prepared: list[_Prepared] = []
    errors: dict[str, Any] = {}
    first_with_key: dict[str, int] = {}
    for index, spec in enumerate(specs):
        try:
            if not isinstance(spec, dict):
                raise InvalidTask("Each task must be an object.")
            p = prepare(**spec)
        except InvalidTask as exc:
            errors[str(index)] = exc.errors
            continue
        except TypeError as exc:  # unknown keyword
            errors[str(index)] = {"non_field_errors": [str(exc)]}
            continue
        key = p.idempotency_key
        if key is not None and key in first_with_key:
            errors[str(index)] = {"idempotency_key": [
                f"Repeats the key of task {first_with_key[key]} in this request."]}
        elif key is not None:
            first_with_key[key] = index
        prepared.append(p)
    if errors:
        raise InvalidTask(errors)
    if not prepared:
        return []
    if not first_with_key:
        return _insert_many(prepared, who)
    # Keys: a conflict found after the insert must undo it, whatever the caller's mode.
    with transaction.atomic():
        return _insert_many(prepared, who)


def _insert_many(prepared: list[_Prepared], who: _Submitter) -> list[Task]:
    columns = list(zip(*[
        (p.name, p.type, p.payload_json, p.priority, p.queue, p.run_at, p.max_retries,
         p.timeout_seconds, p.idempotency_key, _fingerprint(p)) for p in prepared
    ], strict=True))
    returned = _run(_INSERT_MANY, [*(list(c) for c in columns), who.owner_id, who.origin])
    inserted_keys = {r[1] for r in returned if r[1]}
    wanted = {p.idempotency_key for p in prepared if p.idempotency_key} - inserted_keys
    existing: dict[str, Task] = {}
    if wanted:
        with connection.cursor() as cursor:
            cursor.execute(_SELECT_BY_KEYS, [who.owner_id or 0, list(wanted)])
            existing = {t.idempotency_key: t for t in map(_task_from_row, cursor.fetchall())}
    inserted = iter(sorted(returned))
    # Ids rise in input order (INSERT ... SELECT ... ORDER BY ord): walk both in step.
    result: list[Task] = []
    for p in prepared:
        key = p.idempotency_key
        if key and key not in inserted_keys:
            task = _same_or_conflict(existing[key], p)
        else:
            task_id, _key, created_at, run_at = next(inserted)
            task = _new_task(task_id, p, created_at, run_at, who)
        result.append(task)
    return result


# --- worker side: claim, heartbeat, complete, fail -----------------------------------

_CLAIM = f"""
WITH picked AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status IN ('queued', 'retrying') AND run_at <= now() {{queue_filter}}
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tasks t
    SET status = 'running', locked_by = %(worker)s,
        locked_until = now() + make_interval(secs => %(lease)s),
        attempts = t.attempts + 1, started_at = now(), updated_at = now(),
        cancel_requested_at = NULL
    FROM picked WHERE t.id = picked.id
    RETURNING t.id, t.name, t.type, t.payload, t.queue, t.priority, t.attempts,
              t.retry_count, t.max_retries, t.timeout_seconds
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'running', 'task_started', attempts, %(worker)s, '', now() FROM claimed
), {_notify_sql("'task_started'", "claimed", ", 'worker', %(worker)s::text")}
SELECT claimed.* FROM claimed LEFT JOIN note ON true
ORDER BY claimed.priority DESC, claimed.id
"""
_CLAIM_ALL = _CLAIM.replace("{queue_filter}", "")
_CLAIM_QUEUES = _CLAIM.replace("{queue_filter}", "AND queue = ANY(%(queues)s)")


def claim(*, worker_id: str, limit: int, queues: Sequence[str] | None = None,
          lease_seconds: float | None = None) -> list[ClaimedTask]:
    """Claim up to `limit` due tasks, highest priority first, FIFO within a priority.

    One statement: `FOR UPDATE SKIP LOCKED` means two workers never hold the same task.
    """
    if limit <= 0:
        return []
    lease = engine().LEASE_SECONDS if lease_seconds is None else lease_seconds
    params = {"limit": limit, "worker": worker_id, "lease": lease, "queues": list(queues or [])}
    rows = _run(_CLAIM_QUEUES if queues else _CLAIM_ALL, params)
    return [
        ClaimedTask(id=r[0], name=r[1], type=r[2], payload=_loads(r[3]), queue=r[4],
                    priority=r[5], attempt=r[6], retry_count=r[7], max_retries=r[8],
                    timeout_seconds=r[9])
        for r in rows
    ]


def next_due_in(queues: Sequence[str] | None = None) -> float | None:
    """Seconds until the next queued/retrying task becomes due (None if there is none)."""
    sql = ("SELECT extract(epoch FROM min(run_at) - now()) FROM tasks "
           "WHERE status IN ('queued', 'retrying')")
    params: list[Any] = []
    if queues:
        sql += " AND queue = ANY(%s)"
        params.append(list(queues))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        value = cursor.fetchone()[0]
    return None if value is None else max(0.0, float(value))


_HEARTBEAT = """
WITH renewed AS (
    UPDATE tasks SET locked_until = now() + make_interval(secs => %(lease)s)
    WHERE status = 'running' AND locked_by = %(worker)s
    RETURNING id, cancel_requested_at IS NOT NULL AS cancel
), seen AS (
    UPDATE task_workers SET last_seen = now() WHERE id = %(worker)s RETURNING id
)
SELECT id, cancel, (SELECT count(*) FROM seen) FROM renewed
UNION ALL
SELECT NULL, NULL, (SELECT count(*) FROM seen) WHERE NOT EXISTS (SELECT 1 FROM renewed)
"""


@dataclass
class HeartbeatResult:
    held: set[int]  # ids the database says this worker holds
    cancel_requested: set[int]
    registered: bool  # False when the worker row was expired (e.g. after an outage)


def heartbeat(*, worker_id: str, lease_seconds: float | None = None) -> HeartbeatResult:
    """Renew the leases of this worker's running tasks and its own last_seen.

    Not a state change, so no history row: the lease is bookkeeping.
    """
    lease = engine().LEASE_SECONDS if lease_seconds is None else lease_seconds
    rows = _run(_HEARTBEAT, {"lease": lease, "worker": worker_id})
    held = {r[0] for r in rows if r[0] is not None}
    cancel = {r[0] for r in rows if r[1]}
    registered = bool(rows and rows[0][2])
    return HeartbeatResult(held=held, cancel_requested=cancel, registered=registered)


def cancel_requested_ids(*, worker_id: str) -> set[int]:
    """Running tasks of this worker that somebody asked to cancel (polling fallback)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM tasks WHERE status = 'running' AND locked_by = %s "
                       "AND cancel_requested_at IS NOT NULL", [worker_id])
        return {r[0] for r in cursor.fetchall()}


def _input_cte(extra_columns: str, extra_types: str) -> str:
    return (f"input AS (SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[]"
            f"{extra_types}) AS i(id, attempt{extra_columns}))")


_FENCE = "t.id = i.id AND t.status = 'running' AND t.locked_by = %(worker)s " \
         "AND t.attempts = i.attempt"

_COMPLETE = f"""
WITH {_input_cte(", result", ", %(results)s::text[]")},
done AS (
    UPDATE tasks t
    SET status = 'succeeded', result = i.result::jsonb, finished_at = now(),
        updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i WHERE {_FENCE}
    RETURNING t.id, t.attempts
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, 'succeeded', 'task_succeeded', attempts, %(worker)s, '', now() FROM done
), {_notify_sql("'task_succeeded'", "done", ", 'worker', %(worker)s::text")}
SELECT done.id FROM done LEFT JOIN note ON true
"""


# A JSON-escaped NUL (\u0000 not itself escaped): jsonb refuses it.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _has_nul(text: str) -> bool:
    return "\\u0000" in text and _JSON_NUL.search(text) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")
RESULT_PREVIEW_CHARS = 1000


def _result_json(value: Any) -> str:
    """A plugin's result as jsonb text that the database accepts, of bounded size.

    Whatever the plugin returned, the batch it is written with must not fail: NULs and
    unpaired surrogates become U+FFFD, and a result nested deeper than TASKS_MAX_JSON_DEPTH
    or larger than TASKS_MAX_RESULT_BYTES is stored as a marker with a preview.
    """
    depth = jsonsafe.max_depth()
    if jsonsafe.depth_exceeds(value, depth):
        return json.dumps({"truncated": True, "reason": f"nested deeper than {depth} levels"})
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str,
                          ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        try:
            text = json.dumps(repr(value)[:RESULT_PREVIEW_CHARS], ensure_ascii=False)
        except Exception:  # a repr that fails too: say what it was
            text = json.dumps(f"<{type(value).__name__} that is not JSON>")
    # Raw surrogates (ensure_ascii=False) cannot be mistaken for escaped text.
    text = _SURROGATE.sub("\ufffd", text)
    if _has_nul(text):
        text = _JSON_NUL.sub(lambda m: m.group(1) + "\\ufffd", text)
    size = len(text.encode())
    limit = jsonsafe.max_result_bytes()
    if size > limit:
        return json.dumps({"truncated": True, "reason": f"larger than {limit} bytes",
                           "bytes": size, "preview": text[:RESULT_PREVIEW_CHARS]},
                          ensure_ascii=False)
    return text


def complete(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """Mark runs succeeded (fenced); returns the ids applied. Missing ids lost their lease."""
    if not outcomes:
        return set()
    params = {
        "worker": worker_id,
        "ids": [o.task_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "results": [_result_json(o.result) for o in outcomes],
    }
    applied = {r[0] for r in _run(_COMPLETE, params)}
    _log_lost(worker_id, outcomes, applied, "complete")
    return applied


def _grouped_notify_sql(source: str, event_sql: str) -> str:
    """A CTE sending one NOTIFY per kind of event among the rows of CTE `source`."""
    return f"""
    note AS (
        SELECT pg_notify('{CHANNEL}', json_build_object(
            'event', {event_sql}, 'count', count(*), 'worker', %(worker)s::text,
            'ids', (array_agg(id ORDER BY id))[1:{NOTIFY_MAX_IDS}])::text) AS sent
        FROM {source} GROUP BY {event_sql}
    )"""


# A run that ends in error is retried only if retries are left and nobody asked to cancel.
# History details keep the end of a long error: a traceback's last line names the error.
_RETRY_OK = "(t.cancel_requested_at IS NULL AND t.retry_count < t.max_retries)"
_EVENT_OF_STATUS = ("CASE status WHEN 'retrying' THEN 'retry_scheduled' "
                    "WHEN 'cancelled' THEN 'task_cancelled' ELSE 'task_failed' END")

_FAIL = f"""
WITH {_input_cte(", error, delay", ", %(errors)s::text[], %(delays)s::float8[]")},
upd AS (
    UPDATE tasks t
    SET status = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN t.retry_count < t.max_retries THEN 'retrying' ELSE 'failed' END,
        retry_count = CASE WHEN {_RETRY_OK} THEN t.retry_count + 1 ELSE t.retry_count END,
        run_at = CASE WHEN {_RETRY_OK} THEN now() + make_interval(secs => i.delay)
                      ELSE t.run_at END,
        finished_at = CASE WHEN {_RETRY_OK} THEN NULL ELSE now() END,
        last_error = i.error, updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i WHERE {_FENCE}
    RETURNING t.id, t.status, t.attempts, t.retry_count, t.max_retries, i.delay, i.error
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, status, {_EVENT_OF_STATUS}, attempts, %(worker)s,
           CASE status WHEN 'retrying'
                THEN format('retry %%s of %%s in %%ss: %%s', retry_count, max_retries,
                            round(delay::numeric, 1), right(error, 4000))
                WHEN 'cancelled'
                THEN format('cancelled as requested; the run ended with: %%s',
                            right(error, 4000))
                ELSE format('failed after %%s attempts: %%s', attempts, right(error, 4000))
           END,
           now()
    FROM upd
), {_grouped_notify_sql("upd", _EVENT_OF_STATUS)}
SELECT upd.id, upd.status FROM upd CROSS JOIN (SELECT count(*) FROM note) n
"""


def fail(*, worker_id: str, outcomes: Sequence[Outcome], rand=None) -> dict[int, str]:
    """A run raised or timed out: schedule a retry with backoff, or fail for good.

    Returns {task id: new status} for the runs applied (fenced like complete).
    """
    if not outcomes:
        return {}
    cfg = engine()
    kwargs = {"rand": rand} if rand else {}
    params = {
        "worker": worker_id,
        "ids": [o.task_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "errors": [jsonsafe.storable_error(o.error or "error") for o in outcomes],
        "delays": [backoff_delay(o.retry_count, base=cfg.BACKOFF_BASE, cap=cfg.BACKOFF_CAP,
                                 **kwargs) for o in outcomes],
    }
    applied = dict(_run(_FAIL, params))
    _log_lost(worker_id, outcomes, set(applied), "fail")
    return applied


_FINISH_EVENT_SQL = "CASE status WHEN 'queued' THEN 'task_released' ELSE 'task_cancelled' END"


def _finish_by_worker(status_sql: str, *, worker_id: str, outcomes: Sequence[Outcome],
                      releasing: bool) -> set[int]:
    """Shared statement for a worker ending runs as cancelled, or releasing them.

    A released run goes back to `queued`, unless somebody asked to cancel it meanwhile.
    """
    sql = f"""
    WITH {_input_cte(", details", ", %(details)s::text[]")},
    upd AS (
        UPDATE tasks t
        SET status = {status_sql}, updated_at = now(), locked_by = NULL,
            locked_until = NULL,
            finished_at = CASE WHEN {status_sql} = 'queued' THEN NULL ELSE now() END
        FROM input i WHERE {_FENCE}
        RETURNING t.id, t.status, t.attempts, i.details
    ), hist AS (
        INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                                  created_at)
        SELECT id, status, {_FINISH_EVENT_SQL}, attempts, %(worker)s, details, now() FROM upd
    ), {_grouped_notify_sql("upd", _FINISH_EVENT_SQL)}
    SELECT upd.id FROM upd CROSS JOIN (SELECT count(*) FROM note) n
    """
    if not outcomes:
        return set()
    params = {"worker": worker_id, "ids": [o.task_id for o in outcomes],
              "attempts": [o.attempt for o in outcomes],
              "details": [jsonsafe.storable_error(o.error) for o in outcomes]}
    applied = {r[0] for r in _run(sql, params)}
    _log_lost(worker_id, outcomes, applied, "release" if releasing else "cancel")
    return applied


def finish_cancelled(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """The worker stopped runs that were cancelled: they end `cancelled`."""
    return _finish_by_worker("'cancelled'", worker_id=worker_id, outcomes=outcomes,
                             releasing=False)


def release(*, worker_id: str, outcomes: Sequence[Outcome]) -> set[int]:
    """A stopping worker hands unfinished runs back to the queue, due at once (or ends
    them `cancelled` when a cancel was requested)."""
    return _finish_by_worker(
        "CASE WHEN t.cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END",
        worker_id=worker_id, outcomes=outcomes, releasing=True)


def _log_lost(worker_id, outcomes, applied, action) -> None:
    lost = [o.task_id for o in outcomes if o.task_id not in applied]
    if lost:
        logger.warning("lease lost before %s: tasks %s are no longer held by %s", action,
                       lost[:20], worker_id,
                       extra={"action": "lease_lost", "task_ids": lost, "worker": worker_id})


# --- the reconciler: rescue expired leases, forget silent workers -------------------

RECONCILE_LOCK_KEY = 0x7461736B  # "task": one reconciler at a time across all workers

_EXPIRED = """
SELECT id, retry_count, locked_by, locked_until FROM tasks
WHERE status = 'running' AND locked_until < now()
ORDER BY locked_until LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

# A lost worker's run ends like a failed one (the _FAIL rule: retry after the backoff, fail
# for good without retries left, cancelled if a cancel was requested), with its own event.
_RESCUE = f"""
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(delays)s::float8[], %(workers)s::text[],
                         %(leases)s::timestamptz[]) AS i(id, delay, worker, lease_end)
), upd AS (
    UPDATE tasks t
    SET status = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN t.retry_count < t.max_retries THEN 'retrying' ELSE 'failed' END,
        retry_count = CASE WHEN {_RETRY_OK} THEN t.retry_count + 1 ELSE t.retry_count END,
        run_at = CASE WHEN {_RETRY_OK} THEN now() + make_interval(secs => i.delay)
                      ELSE t.run_at END,
        finished_at = CASE WHEN {_RETRY_OK} THEN NULL ELSE now() END,
        last_error = format('worker %%s lost: lease expired at %%s', i.worker, i.lease_end),
        updated_at = now(), locked_by = NULL, locked_until = NULL
    FROM input i
    WHERE t.id = i.id AND t.status = 'running' AND t.locked_until < now()
    RETURNING t.id, t.status, t.attempts, t.retry_count, t.max_retries, t.last_error,
              i.worker, i.delay
), hist AS (
    INSERT INTO task_history (task_id, status, event_type, attempt, worker_id, details,
                              created_at)
    SELECT id, status, 'lease_expired', attempts, coalesce(worker, ''),
           last_error || CASE status
               WHEN 'retrying' THEN format('; requeued: retry %%s of %%s in %%ss', retry_count,
                                           max_retries, round(delay::numeric, 1))
               WHEN 'cancelled' THEN '; cancelled as requested'
               ELSE '; no retries left' END,
           now()
    FROM upd
), {_notify_sql("'lease_expired'", "upd")}
SELECT upd.id, upd.status FROM upd LEFT JOIN note ON true
"""


def rescue_expired(*, limit: int = 1000, rand=None) -> dict[int, str]:
    """Settle up to `limit` running tasks whose lease expired (their worker was lost).

    Each one is retried after backoff_delay(retry_count), as a failed run would be, or
    fails for good, or ends cancelled if a cancel was requested; returns {task id: status}.
    Rows another session holds are skipped, so concurrent rescuers never collide.
    """
    cfg = engine()
    kwargs = {"rand": rand} if rand else {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_EXPIRED, {"limit": limit})
        rows = cursor.fetchall()
        if not rows:
            return {}
        cursor.execute(_RESCUE, {
            "ids": [r[0] for r in rows],
            "delays": [backoff_delay(r[1], base=cfg.BACKOFF_BASE, cap=cfg.BACKOFF_CAP,
                                     **kwargs) for r in rows],
            "workers": [r[2] for r in rows],
            "leases": [r[3] for r in rows],
        })
        rescued = dict(cursor.fetchall())
    logger.warning("recovered %d task(s) with expired leases", len(rescued),
                   extra={"action": "reconcile", "task_ids": list(rescued)[:100]})
    return rescued


def liveness_window() -> float:
    """Seconds of heartbeat silence after which a worker counts as gone."""
    cfg = engine()
    return max(cfg.LEASE_SECONDS, 3 * cfg.HEARTBEAT_INTERVAL)


_REAP = f"""
WITH gone AS (
    DELETE FROM task_workers WHERE id IN (
        SELECT id FROM task_workers
        WHERE last_seen < now() - make_interval(secs => %(window)s)
        ORDER BY last_seen LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id
), note AS (
    SELECT pg_notify('{CHANNEL}', json_build_object(
        'event', 'worker_offline', 'worker', id, 'count', 0, 'ids', '[]'::json)::text)
    FROM gone
)
SELECT gone.id FROM gone CROSS JOIN (SELECT count(*) FROM note) n ORDER BY gone.id
"""


def reap_workers(*, window: float | None = None, limit: int = 1000) -> list[str]:
    """Forget up to `limit` workers silent for longer than `window` seconds (default: the
    liveness window); one worker_offline event each. Returns their ids."""
    window = liveness_window() if window is None else window
    with connection.cursor() as cursor:
        cursor.execute(_REAP, {"window": window, "limit": limit})
        gone = [r[0] for r in cursor.fetchall()]
    if gone:
        logger.warning("forgot %d silent worker(s): %s", len(gone), ", ".join(gone[:20]),
                       extra={"action": "worker_reaped", "workers": gone[:100]})
    return gone


def reconcile(*, limit: int = 1000, worker_timeout: float | None = None) -> dict[int, str] | None:
    """One batch of rescue_expired and reap_workers, under a transaction-level advisory
    lock so one reconciler works at a time; None when another holds it, else
    {task id: new status}. The maintainer (tasks/maintenance/) runs both on its own."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RECONCILE_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return None
        recovered = rescue_expired(limit=limit)
        reap_workers(window=worker_timeout)
    return recovered


# --- workers' own rows ---------------------------------------------------------------


def register_worker(*, worker_id: str, hostname: str, pid: int, queues: Sequence[str],
                    concurrency: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO task_workers (id, hostname, pid, queues, concurrency, started_at,
                                         last_seen)
               VALUES (%s, %s, %s, %s::jsonb, %s, now(), now())
               ON CONFLICT (id) DO UPDATE SET last_seen = now()""",
            [worker_id, hostname, pid, json.dumps(list(queues)), concurrency])
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, json.dumps(
            {"event": "worker_online", "worker": worker_id, "count": 0, "ids": []})])


def unregister_worker(*, worker_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM task_workers WHERE id = %s", [worker_id])
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, json.dumps(
            {"event": "worker_offline", "worker": worker_id, "count": 0, "ids": []})])


# --- transitions a person asks for ---------------------------------------------------


def _locked(task_id: Any) -> Task:
    pk = parse_id(task_id)
    if pk is None:
        raise TaskNotFound(task_id)
    try:
        return Task.objects.select_for_update().get(pk=pk)
    except Task.DoesNotExist:
        raise TaskNotFound(task_id) from None


def _record(task: Task, event: str, *, details: str = "", worker_id: str = "") -> None:
    TaskHistory.objects.create(task=task, status=task.status, event_type=event,
                               attempt=task.attempts, worker_id=worker_id, details=details)


NOW = object()  # in _save: the database's clock, like the SQL transitions use


def _save(task: Task, **changes: Any) -> None:
    changes["updated_at"] = NOW
    Task.objects.filter(pk=task.pk).update(
        **{name: Now() if value is NOW else value for name, value in changes.items()})
    for name, value in changes.items():
        if value is not NOW:
            setattr(task, name, value)
    task.refresh_from_db(fields=[name for name, value in changes.items() if value is NOW])


def _cancel_locked(task: Task, reason: str) -> str:
    """Cancel one locked task; returns the event written. Raises InvalidTransition."""
    details = reason or "cancelled"
    if task.status in (Status.QUEUED, Status.RETRYING):
        _save(task, status=Status.CANCELLED, finished_at=NOW, cancel_requested_at=NOW)
        _record(task, Event.TASK_CANCELLED, details=details)
        return Event.TASK_CANCELLED
    if task.status == Status.RUNNING:
        if task.cancel_requested_at is None:
            _save(task, cancel_requested_at=NOW)
            _record(task, Event.CANCEL_REQUESTED, details=details,
                    worker_id=task.locked_by or "")
        return Event.CANCEL_REQUESTED
    raise InvalidTransition(task.pk, task.status, "cancel")


@transaction.atomic
def cancel(task_id: int, *, reason: str = "") -> Task:
    """Cancel a task. Queued or retrying: cancelled now. Running: the worker is told
    (cancel_requested) and ends it `cancelled` within seconds. Finished: InvalidTransition.
    """
    task = _locked(task_id)
    event = _cancel_locked(task, reason)
    notify(event, [task.pk], worker=task.locked_by or "")
    return task


def _retry_locked(task: Task, reason: str) -> None:
    if task.status not in (Status.FAILED, Status.CANCELLED):
        raise InvalidTransition(task.pk, task.status, "retry")
    _save(task, status=Status.QUEUED, retry_count=0, run_at=NOW, finished_at=None,
          cancel_requested_at=None, locked_by=None, locked_until=None, result=None)
    _record(task, Event.TASK_REQUEUED, details=reason or "requeued by a person")


@transaction.atomic
def retry(task_id: int, *, reason: str = "") -> Task:
    """A person re-runs a failed or cancelled task: back to `queued`, retries reset."""
    task = _locked(task_id)
    _retry_locked(task, reason)
    notify(Event.TASK_REQUEUED, [task.pk])
    return task


@dataclass
class BulkResult:
    """What a bulk action did: ids changed, and ids skipped with the reason."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def _bulk(task_ids: Iterable[int], apply, reason: str) -> tuple[BulkResult, dict]:
    result = BulkResult()
    events: dict[str, list[int]] = {}
    with transaction.atomic():
        pks = {task_id: parse_id(task_id) for task_id in task_ids}
        tasks = {t.pk: t for t in Task.objects.select_for_update()
                 .filter(pk__in=[pk for pk in pks.values() if pk is not None]).order_by("pk")}
        for task_id in task_ids:
            task = tasks.get(pks[task_id])
            if task is None:
                result.skipped[task_id] = "not found"
                continue
            try:
                event = apply(task, reason)
            except InvalidTransition:
                result.skipped[task_id] = f"already {task.status}"
                continue
            result.done.append(task_id)
            events.setdefault(event, []).append(task_id)
        for event, ids in events.items():
            notify(event, ids)  # one NOTIFY per kind of change, not one per task
    return result, events


def cancel_many(task_ids: Iterable[int], *, reason: str = "") -> BulkResult:
    """Cancel many tasks in one transaction; finished ones are skipped with the reason."""
    return _bulk(list(task_ids), _cancel_locked, reason)[0]


def retry_many(task_ids: Iterable[int], *, reason: str = "") -> BulkResult:
    """Requeue many failed/cancelled tasks in one transaction; others are skipped."""

    def apply(task, why):
        _retry_locked(task, why)
        return Event.TASK_REQUEUED

    return _bulk(list(task_ids), apply, reason)[0]


def get(task_id: Any) -> Task:
    """The task with that id, or TaskNotFound."""
    pk = parse_id(task_id)
    if pk is None:
        raise TaskNotFound(task_id)
    try:
        return Task.objects.get(pk=pk)
    except Task.DoesNotExist:
        raise TaskNotFound(task_id) from None
