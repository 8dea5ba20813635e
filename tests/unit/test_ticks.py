"""Schedule ticks as pure functions of an injected clock: cron in a time zone, intervals,
and what a schedule does with ticks it missed."""

from __future__ import annotations

import datetime

import pytest

from tasks import ticks

UTC = datetime.UTC


def at(h: int, m: int = 0, s: int = 0, day: int = 1) -> datetime.datetime:
    return datetime.datetime(2026, 3, day, h, m, s, tzinfo=UTC)


EVERY_MINUTE = ticks.Timing("* * * * *", "UTC", None)
EVERY_2S = ticks.Timing("", "UTC", 2)


def test_cron_ticks_fall_on_the_minute():
    assert ticks.after(EVERY_MINUTE, at(10, 0, 30)) == at(10, 1)
    assert ticks.after(EVERY_MINUTE, at(10, 1)) == at(10, 2)  # strictly after


def test_cron_is_read_in_the_schedules_time_zone():
    nine_in_paris = ticks.Timing("0 9 * * *", "Europe/Paris", None)
    assert ticks.after(nine_in_paris, at(0)) == at(8)  # CET is UTC+1 on 1 March
    assert ticks.after(nine_in_paris, at(0, day=30)) == at(7, day=30)  # CEST: UTC+2


def test_interval_ticks_keep_their_anchor():
    assert ticks.after(EVERY_2S, at(10), anchor=at(9, 59, 59)) == at(10, 0, 1)
    assert ticks.after(EVERY_2S, at(10)) == at(10, 0, 2)


def test_a_tick_on_time_is_enqueued_and_the_next_follows():
    d = ticks.due(EVERY_MINUTE, at(10, 1), at(10, 1, 0), skip_missed=False)
    assert (d.tick, d.missed, d.next_run_at) == (at(10, 1), 0, at(10, 2))


@pytest.mark.parametrize("skip,tick,missed", [(False, at(13), 3), (True, None, 4)])
def test_after_an_outage_catch_up_once_runs_the_latest_tick_and_skip_runs_none(
        skip, tick, missed):
    hourly = ticks.Timing("", "UTC", 3600)
    d = ticks.due(hourly, at(10), at(13, 30), skip_missed=skip)
    assert (d.tick, d.missed, d.next_run_at) == (tick, missed, at(14))


def test_a_frequent_schedule_that_skips_still_runs_its_latest_tick_on_time():
    d = ticks.due(ticks.Timing("", "UTC", 60), at(10, 1), at(13, 0, 30), skip_missed=True)
    assert (d.tick, d.missed, d.next_run_at) == (at(13), 179, at(13, 1))


def test_a_daily_cron_missed_for_hours_catches_up_once():
    daily = ticks.Timing("0 9 * * *", "UTC", None)
    d = ticks.due(daily, at(9), at(15), skip_missed=False)
    assert (d.tick, d.next_run_at) == (at(9), at(9, day=2))
    assert ticks.due(daily, at(9), at(15), skip_missed=True).tick is None


@pytest.mark.parametrize("timing,field", [
    (ticks.Timing("61 * * * *", "UTC", None), "cron"),
    (ticks.Timing("* * *", "UTC", None), "cron"),
    (ticks.Timing("* * * * *", "Mars/Olympus", None), "timezone"),
    (ticks.Timing("", "UTC", 0), "interval_seconds"),
    (ticks.Timing("", "UTC", None), "non_field_errors"),
    (ticks.Timing("* * * * *", "UTC", 5), "non_field_errors"),
])
def test_bad_timings_name_the_field(timing, field):
    assert field in ticks.problems(timing)


def test_good_timings_have_no_problems():
    assert ticks.problems(EVERY_MINUTE) == {} and ticks.problems(EVERY_2S) == {}
