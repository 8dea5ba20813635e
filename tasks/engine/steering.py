"""Transitions a person asks for (admin, API, CLI): cancel, retry, their bulk variants,
and deleting finished tasks.

Each locks the rows it changes, checks their status against tasks/states.py, writes one
history row per change and one NOTIFY per kind of change, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models.functions import Now

from tasks import states
from tasks.engine.events import CHANNEL, payload
from tasks.engine.sql import run
from tasks.exceptions import InvalidTransition, TaskNotFound
from tasks.models import Task, TaskHistory
from tasks.states import Event, Status, parse_id


def notify(event: str, ids: Iterable[int], **extra: Any) -> None:
    """Send one event on the channel inside the current transaction."""
    run("send_event", {"channel": CHANNEL, "payload": payload(event, ids, **extra)})


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
    if task.status in states.CLAIMABLE:
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
    if task.status not in states.RETRYABLE:
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
