"""Submitting tasks: enqueue, enqueue_many and enqueue_workflow, owners and idempotency keys.

A task is validated completely (spec.prepare) before anything is written; a batch is written
by one statement (queries.sql: insert_tasks) with its history rows and one NOTIFY. An
idempotency key is unique per owner: reused with the same fields it returns the task that
exists, with other fields it raises IdempotencyConflict. Tasks with parents, and
workflows, are stored by tasks.engine.graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from tasks import jsonsafe
from tasks.engine.graph import insert_graph, insert_workflow
from tasks.engine.spec import (
    JSON_NUL,
    QUEUE_NAME_RE,
    TASK_COLUMNS,
    Prepared,
    Submitter,
    fingerprint,
    has_nul,
    loads,
    new_task,
    prepare,
    same_or_conflict,
    submitter,
    task_from_row,
)
from tasks.engine.sql import copy, run
from tasks.exceptions import InvalidTask
from tasks.models import Origin, Task, Workflow

__all__ = ["JSON_NUL", "QUEUE_NAME_RE", "TASK_COLUMNS", "enqueue", "enqueue_many",
           "enqueue_workflow", "has_nul", "loads", "prepare", "task_from_row"]


def enqueue(*, owner: Any = None, origin: str = Origin.PYTHON, parent_scope: int | None = None,
            **spec: Any) -> Task:
    """Validate and store one task; returns it with `was_created` set.

    Keyword-only fields: name, type, payload, priority, queue, run_at, max_retries,
    timeout_seconds, idempotency_key, depends_on (ids of tasks it runs after) and
    on_parent_failure; `owner` (a user or id: who submitted it) and `origin` record where
    it came from; `parent_scope` (an owner id) limits the parents to that owner's tasks,
    as authz.owner_scope says for a user. With unmet parents the task is `waiting`.
    Inside a caller's transaction the task exists, and workers are woken, only if that
    transaction commits. An idempotency key is unique per owner: reused with the same
    fields it returns the existing task (was_created False) and writes nothing; with other
    fields it raises IdempotencyConflict.
    """
    who = submitter(owner, origin)
    p = prepare(**spec)
    if p.after:
        raise InvalidTask({"after": ["Only in enqueue_many: positions in the same request."]})
    if p.has_parents:
        return insert_graph([p], who, parent_scope=parent_scope, single=True)[0]
    rows = run("insert_task", {
        "name": p.name, "type": p.type, "payload": p.payload_json, "priority": p.priority,
        "queue": p.queue, "run_at": p.run_at, "max_retries": p.max_retries,
        "timeout_seconds": p.timeout_seconds, "idempotency_key": p.idempotency_key,
        "idempotency_hash": fingerprint(p), "owner_id": who.owner_id, "origin": who.origin,
    })
    if rows:
        task_id, created_at, run_at, _sent = rows[0]
        return new_task(task_id, p, created_at, run_at, who)
    (row,) = run("select_by_keys", {"owner_id": who.owner_id or 0,
                                    "keys": [p.idempotency_key]})
    return same_or_conflict(task_from_row(row), p)


def enqueue_many(specs: Iterable[dict[str, Any]], *, owner: Any = None,
                 origin: str = Origin.PYTHON, parent_scope: int | None = None) -> list[Task]:
    """Validate every task, then store them all in one statement; same order as given.

    One invalid task rejects the batch: InvalidTask.errors maps each bad index to its
    field errors, and nothing is written. So does an idempotency key given twice in the
    batch. A key that exists already returns that task, or raises IdempotencyConflict
    (and writes nothing) when the fields differ, as in `enqueue`. A task's `after` names
    earlier tasks of this batch by position, so a whole graph is one call.
    """
    who = submitter(owner, origin)
    specs = list(specs)
    if len(specs) >= COPY_MIN_TASKS and not any(map(_needs_a_statement, specs)):
        return _copy_many(specs, who)
    prepared, keyed = _prepare_many(specs)
    if not prepared:
        return []
    if any(p.has_parents for p in prepared):
        _refuse_keys(prepared)
        return insert_graph(prepared, who, parent_scope=parent_scope)
    if not keyed:
        return _insert_many(prepared, who)
    # Keys: a conflict found after the insert must undo it, whatever the caller's mode.
    with transaction.atomic():
        return _insert_many(prepared, who)


def enqueue_workflow(specs: Iterable[dict[str, Any]], *, name: str = "", owner: Any = None,
                     origin: str = Origin.PYTHON,
                     parent_scope: int | None = None) -> tuple[Workflow, list[Task]]:
    """Store a workflow: its steps (task specs as in enqueue_many, `after` naming earlier
    steps by position) in one transaction; the Workflow and its tasks in step order."""
    who = submitter(owner, origin)
    if not isinstance(name, str) or len(name) > 255 or jsonsafe.text_problem(name):
        raise InvalidTask({"name": ["Must be text of at most 255 characters."]})
    prepared, _keyed = _prepare_many(specs)
    if not prepared:
        raise InvalidTask({"steps": ["A workflow needs at least one step."]})
    _refuse_keys(prepared)
    return insert_workflow(prepared, who, name=name, parent_scope=parent_scope)


def _refuse_keys(prepared: list[Prepared]) -> None:
    errors = {str(i): {"idempotency_key": ["Not supported in a request with dependencies."]}
              for i, p in enumerate(prepared) if p.idempotency_key is not None}
    if errors:
        raise InvalidTask(errors)


def _prepare_one(spec: Any) -> Prepared:
    """One task of a batch validated; InvalidTask with its field errors."""
    if not isinstance(spec, dict):
        raise InvalidTask("Each task must be an object.")
    try:
        return prepare(**spec)
    except TypeError as exc:  # unknown keyword
        raise InvalidTask({"non_field_errors": [str(exc)]}) from None


def _needs_a_statement(spec: Any) -> bool:
    """Whether a task of a batch needs insert_tasks or the graph (a key, parents)."""
    return isinstance(spec, dict) and any(spec.get(name) is not None
                                          for name in ("idempotency_key", "depends_on", "after"))


def _prepare_many(specs: Iterable[dict[str, Any]]) -> tuple[list[Prepared], bool]:
    """Every spec validated (InvalidTask: index -> field errors), and whether any has a key."""
    prepared: list[Prepared] = []
    errors: dict[str, Any] = {}
    first_with_key: dict[str, int] = {}
    for index, spec in enumerate(specs):
        try:
            p = _prepare_one(spec)
        except InvalidTask as exc:
            errors[str(index)] = exc.errors
            continue
        if later := [i for i in p.after if i >= index]:
            errors[str(index)] = {"after": [
                f"Position {later[0]} is not an earlier task of this request."]}
        key = p.idempotency_key
        if key is not None and key in first_with_key:
            errors[str(index)] = {"idempotency_key": [
                f"Repeats the key of task {first_with_key[key]} in this request."]}
        elif key is not None:
            first_with_key[key] = index
        prepared.append(p)
    if errors:
        raise InvalidTask(errors)
    return prepared, bool(first_with_key)


# From this many tasks without idempotency keys or parents on, a batch is streamed with
# COPY: a few more round trips, but each task is validated and encoded while the server
# stores the ones before it, where insert_tasks' arrays are built whole first.
COPY_MIN_TASKS = 64


def _insert_many(prepared: list[Prepared], who: Submitter) -> list[Task]:
    columns = list(zip(*[
        (p.name, p.type, p.payload_json, p.priority, p.queue, p.run_at, p.max_retries,
         p.timeout_seconds, p.idempotency_key, fingerprint(p)) for p in prepared
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
            task = same_or_conflict(existing[key], p)
        else:
            task_id, _key, created_at, run_at = next(inserted)
            task = new_task(task_id, p, created_at, run_at, who)
        result.append(task)
    return result


def _copy_many(specs: list[Any], who: Submitter) -> list[Task]:
    """Store a large batch of plain tasks in one transaction (the caller's, if it has one):
    ids reserved, then each task validated and copied in as it comes (the server stores
    rows while later ones are checked), then their history rows and one NOTIFY. A task
    that fails validation refuses the batch as in _prepare_many: every bad index is
    named, and the rows copied so far are rolled back."""
    owner_id, origin = who.owner_id, who.origin
    errors: dict[str, Any] = {}
    tasks: list[Task] = []

    def rows(ids, now):
        for index, (task_id, spec) in enumerate(zip(ids, specs, strict=True)):
            try:
                p = _prepare_one(spec)
            except InvalidTask as exc:
                errors[str(index)] = exc.errors
                continue
            if errors:
                continue  # refused already: only the errors are still of use
            run_at = p.run_at or now
            tasks.append(new_task(task_id, p, now, run_at, who))
            yield (task_id, p.name, p.type, "queued", p.payload_json, p.priority, p.queue,
                   run_at, 0, p.max_retries, p.timeout_seconds, 0, "", owner_id, origin, now,
                   now, False, p.on_parent_failure)

    with transaction.atomic():
        ((now, ids),) = run("reserve_task_ids", {"n": len(specs)})
        copy("copy_tasks", rows(ids, now))
        if errors:
            raise InvalidTask(errors)  # leaving the block rolls the copied rows back
        run("record_queued", {"ids": ids})
    return tasks
