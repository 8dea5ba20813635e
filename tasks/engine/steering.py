"""Transitions a person asks for (admin, API, CLI): cancel, retry, run now, their bulk
variants, and deleting finished tasks.

Each is one statement of queries.sql (cancel_tasks, retry_tasks, run_now_tasks,
delete_finished) that locks the rows, checks their status, writes one history row per
change and one NOTIFY per kind of change (a retry first locks the tasks with their
parents, lock_for_retry); this module parses the ids and maps the rows it returns to results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from tasks.engine.events import CHANNEL, payload
from tasks.engine.sql import run
from tasks.exceptions import InvalidTransition, TaskNotFound
from tasks.models import Task
from tasks.states import CLAIMABLE, parse_id

CANCEL_DETAILS = "cancelled"
RETRY_DETAILS = "requeued by a person"
RUN_NOW_DETAILS = "run now by a person"


def notify(event: str, ids: Iterable[int], **extra: Any) -> None:
    """Send one event on the channel inside the current transaction."""
    run("send_event", {"channel": CHANNEL, "payload": payload(event, ids, **extra)})


def _pk(task_id: Any) -> int:
    pk = parse_id(task_id)
    if pk is None:
        raise TaskNotFound(task_id)
    return pk


@transaction.atomic
def cancel(task_id: int, *, reason: str = "") -> Task:
    """Cancel a task. Queued or retrying: cancelled now. Running: the worker is told
    (cancel_requested) and ends it `cancelled` within seconds. Finished: InvalidTransition.
    """
    pk = _pk(task_id)
    rows = run("cancel_tasks", {"ids": [pk], "details": reason or CANCEL_DETAILS,
                                "single": True})
    if not rows:
        raise TaskNotFound(task_id)
    ((_, event, status),) = rows
    if event is None:
        raise InvalidTransition(pk, status, "cancel")
    return Task.objects.get(pk=pk)


def lock_for_retry(ids: list[int]) -> None:
    """Lock the tasks and their parents in id order, in the current transaction."""
    run("lock_for_retry", {"ids": ids})


def _retry_rows(ids: list[int], reason: str, run_now: bool) -> list[tuple]:
    """retry_tasks on `ids`, locked first with their parents: the parents' status it reads
    stays theirs until this transaction ends (a parent ending meanwhile then sees its child
    waiting). Inside the caller's transaction."""
    lock_for_retry(ids)
    return run("retry_tasks", {"ids": ids, "details": reason or RETRY_DETAILS,
                               "run_now": run_now})


@transaction.atomic
def retry(task_id: int, *, reason: str = "", run_now: bool = False) -> Task:
    """A person re-runs a failed or cancelled task: back to `queued`, retries reset, due
    now or at its run_at if that is still ahead (unless `run_now`); `waiting` instead
    while one of its parents has not succeeded: it runs after them."""
    pk = _pk(task_id)
    rows = _retry_rows([pk], reason, run_now)
    if not rows:
        raise TaskNotFound(task_id)
    ((_, requeued, status),) = rows
    if not requeued:
        raise InvalidTransition(pk, status, "retry")
    return Task.objects.get(pk=pk)


@dataclass
class BulkResult:
    """What a bulk action did: ids changed, and ids skipped with the reason."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def _bulk(statement: Callable[[list[int]], list[tuple]],
          task_ids: Iterable[Any]) -> BulkResult:
    """Run a bulk statement on the parseable ids; each input id is done or skipped (in
    input order), by the status its task had when the statement locked it."""
    task_ids = list(task_ids)
    pks = {task_id: parse_id(task_id) for task_id in task_ids}
    ids = sorted({pk for pk in pks.values() if pk is not None})
    # The second column is truthy when the task was changed (cancel: its event).
    found = {pk: (changed, status) for pk, changed, status in statement(ids)}
    result = BulkResult()
    for task_id in task_ids:
        row = found.get(pks[task_id])
        if row is None:
            result.skipped[task_id] = "not found"
        elif row[0]:
            result.done.append(task_id)
        else:
            result.skipped[task_id] = f"already {row[1]}"
    return result


@transaction.atomic
def cancel_many(task_ids: Iterable[int], *, reason: str = "") -> BulkResult:
    """Cancel many tasks in one statement; finished ones are skipped with the reason."""
    return _bulk(lambda ids: run("cancel_tasks", {"ids": ids, "single": False,
                                                  "details": reason or CANCEL_DETAILS}),
                 task_ids)


@transaction.atomic
def retry_many(task_ids: Iterable[int], *, reason: str = "",
               run_now: bool = False) -> BulkResult:
    """Requeue many failed/cancelled tasks in one statement (`waiting` those with a parent
    that has not succeeded); others are skipped. A future run_at is kept unless `run_now`."""
    return _bulk(lambda ids: _retry_rows(ids, reason, run_now), task_ids)


def _run_now_rows(task_ids: list[Any], reason: str) -> tuple[dict, dict]:
    pks = {task_id: parse_id(task_id) for task_id in task_ids}
    ids = sorted({pk for pk in pks.values() if pk is not None})
    rows = run("run_now_tasks", {"ids": ids, "details": reason or RUN_NOW_DETAILS})
    return pks, {pk: (changed, status, deferred) for pk, changed, status, deferred in rows}


@transaction.atomic
def run_now(task_id: int, *, reason: str = "") -> Task:
    """A person runs a deferred task (queued or retrying, due later) now: due at once, and
    workers are woken. A task already due, running or finished: InvalidTransition."""
    pk = _pk(task_id)
    _, found = _run_now_rows([pk], reason)
    if pk not in found:
        raise TaskNotFound(task_id)
    changed, status, _ = found[pk]
    if not changed:
        due = " and already due" if status in CLAIMABLE else ""
        raise InvalidTransition(pk, f"{status}{due}", "run now")
    return Task.objects.get(pk=pk)


@transaction.atomic
def run_now_many(task_ids: Iterable[Any], *, reason: str = "") -> BulkResult:
    """Make many deferred tasks due now in one statement; others are skipped: "already
    due", or "already <status>" for running and finished ones."""
    task_ids = list(task_ids)
    pks, found = _run_now_rows(task_ids, reason)
    result = BulkResult()
    for task_id in task_ids:
        row = found.get(pks[task_id])
        if row is None:
            result.skipped[task_id] = "not found"
        elif row[0]:
            result.done.append(task_id)
        elif row[1] in CLAIMABLE:
            result.skipped[task_id] = "already due"
        else:
            result.skipped[task_id] = f"already {row[1]}"
    return result


def get(task_id: Any) -> Task:
    """The task with that id, or TaskNotFound."""
    pk = parse_id(task_id)
    if pk is None:
        raise TaskNotFound(task_id)
    try:
        return Task.objects.get(pk=pk)
    except Task.DoesNotExist:
        raise TaskNotFound(task_id) from None


def delete_finished(task_ids: Iterable[Any]) -> BulkResult:
    """Delete the tasks among `task_ids` that are finished at the moment of deleting, with
    their history; others are skipped with the reason. One `tasks_deleted` event.

    The status is checked by the DELETE itself (queries.sql: delete_finished), so a task
    retried between a person's confirmation and the delete stays.
    """
    task_ids = list(task_ids)
    pks = {task_id: parse_id(task_id) for task_id in task_ids}
    with transaction.atomic():
        gone = {r[0] for r in run("delete_finished",
                                  {"ids": sorted({p for p in pks.values() if p is not None})})}
        present = dict(Task.objects.filter(pk__in=[p for p in pks.values() if p not in gone
                                                   and p is not None])
                       .values_list("pk", "status"))
    result = BulkResult()
    for task_id in task_ids:
        pk = pks[task_id]
        if pk in gone:
            result.done.append(task_id)
        elif pk in present:
            result.skipped[task_id] = f"still {present[pk]}: cancel it first"
        else:
            result.skipped[task_id] = "not found"
    return result
