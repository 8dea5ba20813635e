"""Submitting tasks: validation into a spec, enqueue and enqueue_many, owners and
idempotency keys.

A task is validated completely (`prepare`) before anything is written; a batch is written
by one statement (queries.sql: insert_tasks) with its history rows and one NOTIFY. An
idempotency key is unique per owner: reused with the same fields it returns the task that
exists, with other fields it raises IdempotencyConflict.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from plugins import registry
from plugins.base import PayloadError
from tasks import jsonsafe
from tasks.conf import engine
from tasks.engine.sql import run
from tasks.exceptions import IdempotencyConflict, InvalidTask, UnknownTaskType
from tasks.models import Origin, Status, Task

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

# The order of the columns insert_task and select_by_keys return.
TASK_COLUMNS = [f.column for f in Task._meta.concrete_fields]
_ATTNAMES = [f.attname for f in Task._meta.concrete_fields]
_JSON_COLUMNS = {"payload", "result"}

# A JSON-escaped NUL (\u0000 not itself escaped): jsonb refuses it.
JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def has_nul(text: str) -> bool:
    return "\\u0000" in text and JSON_NUL.search(text) is not None


def loads(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def task_from_row(row: Sequence) -> Task:
    values = [
        loads(v) if col in _JSON_COLUMNS else v for col, v in zip(TASK_COLUMNS, row, strict=True)
    ]
    return Task.from_db("default", _ATTNAMES, values)


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
                        elif has_nul(payload_json):
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


_ORIGINS = frozenset(Origin.values)


@dataclass(frozen=True)
class _Submitter:
    owner_id: int | None
    origin: str


def _submitter(owner: Any, origin: str) -> _Submitter:
    owner_id = getattr(owner, "pk", owner)
    if owner_id is not None and (isinstance(owner_id, bool) or not isinstance(owner_id, int)):
        raise TypeError(f"owner must be a user or a user id, got {owner!r}")
    if origin not in _ORIGINS:
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
    rows = run("insert_task", {
        "name": p.name, "type": p.type, "payload": p.payload_json, "priority": p.priority,
        "queue": p.queue, "run_at": p.run_at, "max_retries": p.max_retries,
        "timeout_seconds": p.timeout_seconds, "idempotency_key": p.idempotency_key,
        "idempotency_hash": _fingerprint(p), "owner_id": who.owner_id, "origin": who.origin,
    })
    if rows:
        task_id, created_at, run_at, _sent = rows[0]
        return _new_task(task_id, p, created_at, run_at, who)
    (row,) = run("select_by_keys", {"owner_id": who.owner_id or 0,
                                    "keys": [p.idempotency_key]})
    return _same_or_conflict(task_from_row(row), p)


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
    names = ("names", "types", "payloads", "priorities", "queues", "run_ats", "max_retries",
             "timeouts", "keys", "hashes")
    params = dict(zip(names, (list(c) for c in columns), strict=True))
    returned = run("insert_tasks", {**params, "owner_id": who.owner_id, "origin": who.origin})
    inserted_keys = {r[1] for r in returned if r[1]}
    wanted = {p.idempotency_key for p in prepared if p.idempotency_key} - inserted_keys
    existing: dict[str, Task] = {}
    if wanted:
        rows = run("select_by_keys", {"owner_id": who.owner_id or 0, "keys": list(wanted)})
        existing = {t.idempotency_key: t for t in map(task_from_row, rows)}
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
