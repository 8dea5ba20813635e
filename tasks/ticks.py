"""When a schedule's ticks fall: cron expressions (cronsim, in the schedule's time zone) and
fixed intervals. Pure functions of their arguments, the clock included, so tests need no
waiting and no database."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# A tick later than this is missed: a `skip` schedule drops it.
MISSED_AFTER = datetime.timedelta(seconds=60)
MAX_INTERVAL = 366 * 86400
_EPSILON = datetime.timedelta(microseconds=1)


@dataclass(frozen=True)
class Timing:
    cron: str  # "" for an interval schedule
    timezone: str
    interval_seconds: int | None


def problems(timing: Timing) -> dict[str, list[str]]:
    """Field -> messages for a timing that cannot produce ticks ({} when it can)."""
    errors: dict[str, list[str]] = {}
    if bool(timing.cron) == (timing.interval_seconds is not None):
        errors["non_field_errors"] = ["Give either cron (with timezone) or interval_seconds."]
        return errors
    try:
        zone = ZoneInfo(timing.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        errors["timezone"] = [f"Unknown time zone {timing.timezone!r}: use an IANA name "
                              f"such as 'UTC' or 'Europe/Paris'."]
        zone = datetime.UTC
    if timing.cron:
        try:
            CronSim(timing.cron, datetime.datetime.now(zone))
        except (CronSimError, ValueError) as exc:
            errors["cron"] = [f"Not a valid cron expression: {exc}."]
    elif isinstance(timing.interval_seconds, bool) or not isinstance(timing.interval_seconds, int) \
            or not 1 <= timing.interval_seconds <= MAX_INTERVAL:
        errors["interval_seconds"] = [f"Must be an integer from 1 to {MAX_INTERVAL}."]
    return errors


def after(timing: Timing, moment: datetime.datetime,
          anchor: datetime.datetime | None = None) -> datetime.datetime:
    """The first tick strictly after `moment`. Interval ticks fall at anchor + k * interval
    (anchor: a previous tick; without one, ticks start one interval after `moment`)."""
    if timing.cron:
        local = moment.astimezone(ZoneInfo(timing.timezone))
        return next(CronSim(timing.cron, local)).astimezone(datetime.UTC)
    step = datetime.timedelta(seconds=timing.interval_seconds)
    if anchor is None:
        return moment + step
    periods = (moment - anchor) // step + 1
    return anchor + periods * step


def latest(timing: Timing, pending: datetime.datetime,
           now: datetime.datetime) -> datetime.datetime:
    """The last tick at or before `now`, given the pending tick (a due one, <= now)."""
    if timing.cron:
        local = (now + _EPSILON).astimezone(ZoneInfo(timing.timezone))
        found = next(CronSim(timing.cron, local, reverse=True)).astimezone(datetime.UTC)
        return max(found, pending)
    step = datetime.timedelta(seconds=timing.interval_seconds)
    return pending + ((now - pending) // step) * step


@dataclass(frozen=True)
class Due:
    tick: datetime.datetime | None  # the tick to enqueue now, or None (skipped)
    missed: int  # due ticks not enqueued (approximate for cron: 0 or more)
    next_run_at: datetime.datetime


def due(timing: Timing, pending: datetime.datetime, now: datetime.datetime,
        skip_missed: bool) -> Due:
    """What to do about a schedule whose pending tick is due (pending <= now): the latest
    due tick is enqueued, unless it is missed (older than MISSED_AFTER) and the schedule
    skips missed ticks; the ones before it are dropped either way."""
    last = latest(timing, pending, now)
    missed = 0 if last == pending else 1
    if not timing.cron:
        missed = int((last - pending) / datetime.timedelta(seconds=timing.interval_seconds))
    following = after(timing, now, anchor=last)
    if skip_missed and now - last > MISSED_AFTER:
        return Due(None, missed + 1, following)
    return Due(last, missed, following)
