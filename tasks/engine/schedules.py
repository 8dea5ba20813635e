"""Schedules: create, change, pause, resume, run now, delete, and the firing of due ticks.

A schedule is validated whole before it is saved: its task through engine.prepare (the
plugin validates the payload), its timing through tasks.ticks (cron, time zone, interval).
Each change writes an audit row naming who did it and sends an event. `fire_due` is what
the scheduler service runs: in one transaction it locks the due schedules (skipping rows
another maintainer holds), enqueues one task per schedule for its latest due tick
(queries.sql: enqueue_tick, keyed `schedule:<id>:<tick>`, so nothing doubles it) and moves
each schedule to its next tick. The task is the stored, already validated one: firing asks
no plugin, so a leader where a type's plugin cannot run (unavailable here) still fires it
for the workers that can. Its type must still be registered, here or by a worker online:
a task of a type nobody registers would wait for a worker that never comes, so that tick
fails instead. Each schedule fires in a savepoint of its own: one that fails is logged,
audited (`schedule_failed`) and moved on, and the others fire.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from plugins import registry
from tasks import jsonsafe, ticks
from tasks.engine.events import CHANNEL, SCHEDULE_FAILED, payload
from tasks.engine.spec import prepare, with_default_limits
from tasks.engine.sql import run
from tasks.exceptions import InvalidInput, InvalidTask, NotFound, UnknownTaskType
from tasks.models import AuditEntry, MissedTicks, Schedule, Task
from tasks.states import parse_id

logger = logging.getLogger(__name__)

# What a person may set; the rest is bookkeeping.
FIELDS = ("name", "type", "payload", "queue", "priority", "max_retries", "timeout_seconds",
          "enabled", "cron", "timezone", "interval_seconds", "missed_ticks")
DEFAULTS: dict[str, Any] = {"payload": {}, "queue": "default", "priority": 0,
                            "max_retries": None, "timeout_seconds": None, "enabled": True,
                            "cron": "", "timezone": "UTC", "interval_seconds": None,
                            "missed_ticks": MissedTicks.CATCH_UP_ONCE}
NAME_MAX = 200


def timing(schedule: Schedule) -> ticks.Timing:
    return ticks.Timing(schedule.cron, schedule.timezone, schedule.interval_seconds)


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """The values ready to save, or InvalidInput naming every bad field (forms call this
    to show the errors beside their fields)."""
    errors: dict[str, Any] = {}
    name = values.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["Required: a non-empty string."]
    elif len(name) > NAME_MAX:
        errors["name"] = [f"At most {NAME_MAX} characters."]
    elif bad := jsonsafe.text_problem(name):
        errors["name"] = [f"Invalid text: it {bad}."]
    try:
        spec = prepare(name=name if isinstance(name, str) and name.strip() else "schedule",
                       type=values.get("type"), payload=values.get("payload"),
                       priority=values.get("priority"), queue=values.get("queue"),
                       max_retries=values.get("max_retries"),
                       timeout_seconds=values.get("timeout_seconds"))
    except InvalidTask as exc:
        errors.update({k: v for k, v in exc.errors.items() if k != "name"})
    else:
        values["payload"] = spec.payload
    if not isinstance(values.get("enabled"), bool):
        errors["enabled"] = ["Must be true or false."]
    if values.get("missed_ticks") not in MissedTicks.values:
        errors["missed_ticks"] = [f"Must be one of {', '.join(MissedTicks.values)}."]
    cron, zone = values.get("cron"), values.get("timezone")
    if not isinstance(cron, str) or len(cron) > 200 or jsonsafe.text_problem(cron or ""):
        errors["cron"] = ["Must be a cron expression of at most 200 characters."]
    elif not isinstance(zone, str) or len(zone) > 64:
        errors["timezone"] = ["Must be an IANA time zone name."]
    else:
        values["cron"] = cron.strip()
        errors.update(ticks.problems(ticks.Timing(values["cron"], zone,
                                                  values.get("interval_seconds"))))
    if errors:
        raise InvalidInput(errors)
    return values


def _audit(schedule: Schedule, action: str, actor: str, **details: Any) -> None:
    AuditEntry.objects.create(actor=actor or "", action=action, target_kind="schedule",
                              target=schedule.name, details={"id": schedule.pk, **details})
    run("send_event", {"channel": CHANNEL, "payload": payload(
        action, [], schedule=schedule.pk, name=schedule.name, actor=actor or "")})


def _save(schedule: Schedule) -> Schedule:
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:
        raise InvalidInput({"name": [f"A schedule named {schedule.name!r} exists."]}) from None
    return schedule


def _schedule_next(schedule: Schedule, now: datetime.datetime) -> None:
    schedule.next_run_at = ticks.after(timing(schedule), now) if schedule.enabled else None


def get(schedule_id: Any) -> Schedule:
    pk = parse_id(schedule_id)
    found = Schedule.objects.filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise NotFound("schedule", schedule_id)
    return found


def _unknown(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InvalidInput({key: ["Unknown field."] for key in unknown})


@transaction.atomic
def create(*, actor: str = "", owner: Any = None, **fields: Any) -> Schedule:
    """Validate and save a schedule; its first tick is the next one after now."""
    _unknown(fields)
    values = validate({**DEFAULTS, **fields})
    schedule = Schedule(**values, owner_id=getattr(owner, "pk", owner))
    _schedule_next(schedule, timezone.now())
    _save(schedule)
    _audit(schedule, "schedule_created", actor)
    return schedule


@transaction.atomic
def update(schedule_id: Any, *, actor: str = "", **fields: Any) -> Schedule:
    """Change some fields (validated with the rest as they are); a new timing or enabling
    moves the next tick to the first one after now."""
    _unknown(fields)
    schedule = Schedule.objects.select_for_update().get(pk=get(schedule_id).pk)
    current = {name: getattr(schedule, name) for name in FIELDS}
    if "cron" in fields and fields["cron"] and "interval_seconds" not in fields:
        fields["interval_seconds"] = None  # switching to cron
    if fields.get("interval_seconds") is not None and "cron" not in fields:
        fields["cron"] = ""  # switching to an interval
    values = validate({**current, **fields})
    retimed = any(values[k] != current[k] for k in ("cron", "timezone", "interval_seconds",
                                                    "enabled"))
    for name, value in values.items():
        setattr(schedule, name, value)
    if retimed:
        _schedule_next(schedule, timezone.now())
    schedule.updated_at = timezone.now()
    _save(schedule)
    _audit(schedule, "schedule_updated", actor, fields=sorted(fields))
    return schedule


def pause(schedule_id: Any, *, actor: str = "") -> Schedule:
    """No more ticks until resumed (the ones in between are not caught up)."""
    return _enable(schedule_id, False, "schedule_paused", actor)


def resume(schedule_id: Any, *, actor: str = "") -> Schedule:
    return _enable(schedule_id, True, "schedule_resumed", actor)


@transaction.atomic
def _enable(schedule_id: Any, enabled: bool, action: str, actor: str) -> Schedule:
    schedule = Schedule.objects.select_for_update().get(pk=get(schedule_id).pk)
    if schedule.enabled != enabled:
        schedule.enabled = enabled
        _schedule_next(schedule, timezone.now())
        schedule.updated_at = timezone.now()
        schedule.save(update_fields=["enabled", "next_run_at", "updated_at"])
    _audit(schedule, action, actor)
    return schedule


@transaction.atomic
def delete(schedule_id: Any, *, actor: str = "") -> None:
    """Delete a schedule; the tasks it enqueued stay."""
    schedule = get(schedule_id)
    _audit(schedule, "schedule_deleted", actor)
    schedule.delete()


def _enqueue(schedule: Mapping[str, Any], tick: datetime.datetime, key: str,
             details: str) -> int | None:
    """enqueue_tick for one schedule (a model's fields or a select_due_schedules row as a
    dict): its stored task, validated when it was saved, so no plugin is asked again; the
    task's id, or None when that key's task exists already. UnknownTaskType, and nothing
    enqueued, when its type is registered neither here nor by a worker online (whether
    the plugin can run in this process is not asked: workers elsewhere may run it)."""
    _known_somewhere(schedule["type"])
    max_retries, timeout_seconds = with_default_limits(schedule["max_retries"],
                                                       schedule["timeout_seconds"])
    stored = schedule["payload"]
    rows = run("enqueue_tick", {
        "name": schedule["name"], "type": schedule["type"],
        "payload": stored if isinstance(stored, str) else json.dumps(stored,
                                                                     separators=(",", ":")),
        "priority": schedule["priority"], "queue": schedule["queue"], "tick": tick,
        "max_retries": max_retries, "timeout_seconds": timeout_seconds,
        "key": key, "owner_id": schedule["owner_id"], "details": details})
    return rows[0][0] if rows else None


def _known_somewhere(task_type: str) -> None:
    """UnknownTaskType unless this process registers `task_type` or a worker online
    (task_workers) runs it: a worker whose image has a plugin this one lacks."""
    try:
        registry.get(task_type)
    except UnknownTaskType:
        if not run("worker_runs_type", {"type": task_type})[0][0]:
            raise


def tick_key(schedule_id: int, tick: datetime.datetime) -> str:
    """The idempotency key of a schedule's task for one tick: it carries the tick time."""
    return f"schedule:{schedule_id}:{tick.astimezone(datetime.UTC).isoformat()}"


def _as_dict(schedule: Schedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in (*FIELDS, "id", "owner_id")}


@transaction.atomic
def run_now(schedule_id: Any, *, actor: str = "") -> Task:
    """Enqueue the schedule's task at once, besides its ticks (which stay as they are);
    UnknownTaskType when its type is registered neither here nor by a worker online."""
    schedule = get(schedule_id)
    now = timezone.now()
    key = f"schedule:{schedule.pk}:run-now:{secrets.token_hex(8)}"
    task_id = _enqueue(_as_dict(schedule), now, key,
                       f"run now from schedule {schedule.name!r} by {actor or 'someone'}")
    Schedule.objects.filter(pk=schedule.pk).update(last_task_id=task_id)
    _audit(schedule, "schedule_run_now", actor, task=task_id)
    return Task.objects.get(pk=task_id)


_DUE_COLUMNS = ("id", "name", "type", "payload", "queue", "priority", "max_retries",
                "timeout_seconds", "cron", "timezone", "interval_seconds", "missed_ticks",
                "next_run_at", "owner_id")
# When a schedule's own timing fails (a time zone or cron this process cannot read), the
# next try.
RETRY_FAILED_AFTER = datetime.timedelta(minutes=5)
SCHEDULER = "scheduler"


def fire_due(*, now: datetime.datetime | None = None, limit: int = 100) -> dict[int, int | None]:
    """Enqueue the latest due tick of up to `limit` due schedules in one transaction and
    move each to its next tick; {schedule id: task id, or None when nothing was enqueued
    (a skipped missed tick, a key that exists, or a schedule that failed)}.

    `now` is the scheduler's clock (injectable for tests); schedules another maintainer
    holds are skipped, and their next_run_at has moved when it lets go. Each schedule
    fires in its own savepoint: one that raises is rolled back alone, logged, audited as
    `schedule_failed` with the error, and moved to its next tick after now (that tick is
    dropped), so it neither blocks the batch nor fails again at every pass. A lost
    connection, a timeout or a deadlock rolls back the batch, which the next pass retries.
    """
    now = now or timezone.now()
    fired: dict[int, int | None] = {}
    with transaction.atomic():
        for row in run("select_due_schedules", {"now": now, "limit": limit}):
            schedule = dict(zip(_DUE_COLUMNS, row, strict=True))
            try:
                with transaction.atomic():
                    fired[schedule["id"]] = _fire(schedule, now)
            except (OperationalError, InterfaceError):
                raise  # the database, not the schedule: the whole batch is tried again
            except Exception as exc:  # noqa: BLE001 - any other failure is this schedule's
                fired[schedule["id"]] = None
                _failed(schedule, now, exc)
    return fired


def _fire(schedule: dict[str, Any], now: datetime.datetime) -> int | None:
    step = ticks.due(ticks.Timing(schedule["cron"], schedule["timezone"],
                                  schedule["interval_seconds"]),
                     schedule["next_run_at"], now,
                     skip_missed=schedule["missed_ticks"] == MissedTicks.SKIP)
    task_id = None
    if step.tick is not None:
        details = (f"scheduled by {schedule['name']!r} (schedule {schedule['id']}) "
                   f"for the tick at {step.tick.isoformat()}")
        task_id = _enqueue(schedule, step.tick, tick_key(schedule["id"], step.tick), details)
    if step.missed:
        logger.warning("schedule %s: %d missed tick(s) dropped", schedule["name"],
                       step.missed, extra={"action": "schedule_missed",
                                           "schedule": schedule["id"]})
    run("advance_schedule", {"id": schedule["id"], "next_run_at": step.next_run_at,
                             "tick": step.tick, "task_id": task_id})
    return task_id


def _failed(schedule: dict[str, Any], now: datetime.datetime, exc: Exception) -> None:
    """Record a schedule that failed to fire and move it past the failed tick."""
    pending = schedule["next_run_at"]
    try:
        next_run_at = ticks.after(ticks.Timing(schedule["cron"], schedule["timezone"],
                                               schedule["interval_seconds"]), now,
                                  anchor=pending)
    except Exception:  # noqa: BLE001 - its timing is what fails: try again later
        next_run_at = now + RETRY_FAILED_AFTER
    error = f"{type(exc).__name__}: {exc}"[:2000]
    logger.error("schedule %s: failed to fire the tick at %s (%s); next try at %s",
                 schedule["name"], pending.isoformat(), error, next_run_at.isoformat(),
                 exc_info=exc, extra={"action": SCHEDULE_FAILED, "schedule": schedule["id"]})
    AuditEntry.objects.create(actor=SCHEDULER, action=SCHEDULE_FAILED, target_kind="schedule",
                              target=schedule["name"], details={
                                  "id": schedule["id"], "tick": pending.isoformat(),
                                  "error": error, "next_run_at": next_run_at.isoformat()})
    run("send_event", {"channel": CHANNEL, "payload": payload(
        SCHEDULE_FAILED, [], schedule=schedule["id"], name=schedule["name"], actor=SCHEDULER)})
    run("advance_schedule", {"id": schedule["id"], "next_run_at": next_run_at,
                             "tick": None, "task_id": None})


def next_runs(schedule: Schedule, count: int = 3) -> list[datetime.datetime]:
    """The schedule's next `count` tick times (none while disabled)."""
    if not schedule.enabled or schedule.next_run_at is None:
        return []
    found = [schedule.next_run_at]
    while len(found) < count:
        found.append(ticks.after(timing(schedule), found[-1], anchor=found[-1]))
    return found

