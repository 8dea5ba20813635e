"""A task to submit, validated: `prepare` checks every field before anything is written and
returns a Prepared spec; who submits it (Submitter); the Task built from what was stored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from plugins import registry
from plugins.base import PayloadError, Plugin
from tasks import jsonsafe
from tasks.conf import EngineSettings, engine
from tasks.exceptions import IdempotencyConflict, InvalidTask, UnknownTaskType
from tasks.models import Origin, Status, Task
from tasks.states import ON_PARENT_FAILURE, parse_id

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

# The order of the columns insert_task and select_by_keys return.
TASK_COLUMNS = [f.column for f in Task._meta.concrete_fields]
_ATTNAMES = [f.attname for f in Task._meta.concrete_fields]
_JSON_COLUMNS = {"payload", "result", "progress"}

# A JSON-escaped NUL (\u0000 not itself escaped): jsonb refuses it.
JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def has_nul(text: str) -> bool:
    return "\\u0000" in text and JSON_NUL.search(text) is not None


def loads(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _built(values: dict[str, Any]) -> Task:
    """A Task as the database holds it (not `adding`), from a value for every field by
    attribute name: what Model.from_db makes, without its per-field descriptor calls (a
    bulk enqueue builds thousands). With any init signal connected, from_db itself."""
    if pre_init.receivers or post_init.receivers:
        return Task.from_db("default", _ATTNAMES, [values[name] for name in _ATTNAMES])
    task = Task.__new__(Task)
    state = ModelState()
    state.adding = False
    state.db = "default"
    task.__dict__.update(values)
    task._state = state
    return task


def task_from_row(row: Sequence) -> Task:
    values = [
        loads(v) if col in _JSON_COLUMNS else v for col, v in zip(TASK_COLUMNS, row, strict=True)
    ]
    return Task.from_db("default", _ATTNAMES, values)


class Prepared(NamedTuple):
    """One validated task, ready to be stored (a tuple: a bulk call makes thousands)."""

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
    depends_on: tuple[int, ...] = ()  # ids of existing tasks
    after: tuple[int, ...] = ()  # positions of earlier tasks in the same request
    on_parent_failure: str = "fail"

    @property
    def has_parents(self) -> bool:
        return bool(self.depends_on or self.after)


MAX_PARENTS = 1000  # parents of one task


def _parents(errors: dict, name: str, value: Any, parse) -> tuple[int, ...]:
    """A list of parent references, each parsed by `parse` (None: not one), deduplicated."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        errors[name] = ["Must be a list."]
        return ()
    if len(value) > MAX_PARENTS:
        errors[name] = [f"At most {MAX_PARENTS} parents, got {len(value)}."]
        return ()
    parsed = [parse(v) for v in value]
    bad = [v for v, p in zip(value, parsed, strict=True) if p is None]
    if bad:
        errors[name] = [f"Not a valid reference: {bad[0]!r}."]
        return ()
    return tuple(dict.fromkeys(parsed))


def _position(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _int_in(errors: dict, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = [f"Must be an integer from {low} to {high}."]
        return 0
    if not low <= value <= high:
        errors[name] = [f"Must be between {low} and {high}, got {value}."]
    return value


def _payload_json(errors: dict, plugin: Plugin, payload: dict,
                  max_bytes: int) -> tuple[dict, str]:
    """The payload, checked and validated by its plugin, and the JSON text to store."""
    if not payload:  # no fields: nothing to walk, and its text is known
        text = "{}"
    else:
        # One pass of the C encoder: its ASCII text spells every NUL and surrogate as an
        # escape, and its brackets bound the nesting; only a suspect text is walked.
        try:
            text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            text = ""
        if not (text and jsonsafe.text_is_plainly_safe(text)) \
                and (unsafe := jsonsafe.problem(payload, "payload")):
            errors["payload"] = [unsafe]  # before the plugin walks it
            return payload, "{}"
    try:
        cleaned = plugin.validate(payload)
    except PayloadError as exc:
        errors["payload"] = exc.errors  # the plugin's own field errors
        return payload, "{}"
    if not text or cleaned is not payload or type(plugin).validate is not Plugin.validate:
        # A plugin's validate may return another value or change this one in place.
        try:
            text = json.dumps(cleaned, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            errors["payload"] = [f"Must be JSON-serialisable: {exc}."]
            return cleaned, "{}"
    size = len(text) if text.isascii() else len(text.encode())
    if size > max_bytes:
        errors["payload"] = [f"Too large: {size} bytes; the limit is {max_bytes} bytes."]
    elif has_nul(text):
        errors["payload"] = ["Must not contain NUL characters."]
    return cleaned, text


def with_default_limits(max_retries: Any, timeout_seconds: Any,
                        cfg: EngineSettings | None = None) -> tuple[Any, Any]:
    """max_retries and timeout_seconds with the engine's defaults for those not set (None):
    what a submitted task is validated with, and what a schedule's ticks are enqueued with."""
    cfg = cfg or engine()
    return (cfg.DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            cfg.DEFAULT_TIMEOUT if timeout_seconds is None else timeout_seconds)


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
    depends_on: Any = None,
    after: Any = None,
    on_parent_failure: str | None = None,
) -> Prepared:
    """Validate one task before anything is written; raise InvalidTask naming each field.

    `depends_on` names existing tasks by id, `after` earlier tasks of the same request by
    position (enqueue_many); whether they exist is checked when the task is stored."""
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
            else:
                payload, payload_json = _payload_json(errors, plugin, payload,
                                                      cfg.MAX_PAYLOAD_BYTES)
    priority = _int_in(errors, "priority", priority, cfg.MIN_PRIORITY, cfg.MAX_PRIORITY)
    max_retries, timeout_seconds = with_default_limits(max_retries, timeout_seconds, cfg)
    max_retries = _int_in(errors, "max_retries", max_retries, 0, cfg.MAX_RETRIES_LIMIT)
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
    parents = _parents(errors, "depends_on", depends_on, parse_id)
    positions = _parents(errors, "after", after, _position)
    on_parent_failure = "fail" if on_parent_failure is None else on_parent_failure
    if on_parent_failure not in ON_PARENT_FAILURE:
        errors["on_parent_failure"] = [
            f"Must be one of {', '.join(map(repr, ON_PARENT_FAILURE))}."]
    elif on_parent_failure != "fail" and not (parents or positions):
        errors["on_parent_failure"] = ["Only for a task with depends_on or after."]
    if (parents or positions) and idempotency_key is not None:
        errors["idempotency_key"] = ["Not supported for a task with depends_on or after."]
    if errors:
        raise InvalidTask(errors)
    return Prepared(name, type, payload, payload_json, priority, queue, run_at, max_retries,
                     timeout_seconds, idempotency_key, parents, positions, on_parent_failure)


_ORIGINS = frozenset(Origin.values)


@dataclass(frozen=True)
class Submitter:
    owner_id: int | None
    origin: str


def submitter(owner: Any, origin: str) -> Submitter:
    owner_id = getattr(owner, "pk", owner)
    if owner_id is not None and (isinstance(owner_id, bool) or not isinstance(owner_id, int)):
        raise TypeError(f"owner must be a user or a user id, got {owner!r}")
    if origin not in _ORIGINS:
        raise TypeError(f"origin must be one of {', '.join(Origin.values)}, got {origin!r}")
    return Submitter(owner_id, str(origin))


def fingerprint(p: Prepared) -> str | None:
    """A digest of what was submitted with an idempotency key (None without a key)."""
    if p.idempotency_key is None:
        return None
    body = json.dumps([p.name, p.type, p.payload_json, p.priority, p.queue,
                       p.run_at.isoformat() if p.run_at else None, p.max_retries,
                       p.timeout_seconds], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def same_or_conflict(existing: Task, p: Prepared) -> Task:
    """A reused key: the existing task if the body is the same, else IdempotencyConflict."""
    if existing.idempotency_hash != fingerprint(p):
        raise IdempotencyConflict(existing.pk, p.idempotency_key)
    existing.was_created = False
    return existing


def new_task(task_id: int, p: Prepared, created_at, run_at, submitter: Submitter) -> Task:
    """The Task just inserted from `p`, built without reading the row back."""
    values = {
        "id": task_id, "name": p.name, "type": p.type, "status": Status.QUEUED,
        "payload": p.payload, "priority": p.priority, "queue": p.queue, "run_at": run_at,
        "retry_count": 0, "max_retries": p.max_retries, "timeout_seconds": p.timeout_seconds,
        "attempts": 0, "locked_by": None, "locked_until": None, "last_error": "",
        "result": None, "idempotency_key": p.idempotency_key,
        "idempotency_hash": fingerprint(p), "owner_id": submitter.owner_id,
        "origin": submitter.origin, "cancel_requested_at": None,
        "created_at": created_at, "updated_at": created_at, "started_at": None,
        "finished_at": None, "has_dependents": False, "on_parent_failure": p.on_parent_failure,
        "failed_parent_id": None, "workflow_id": None, "progress": None,
    }
    task = _built(values)
    task.was_created = True
    task.parent_ids = list(p.depends_on)  # graph.insert_graph adds those named by position
    return task
