"""Schedules in the engine against real PostgreSQL: validation on save, ticks fired once
each with an injected clock, missed ticks, run now, pause and resume, audit and events, a
leader where the type's plugin cannot run, a type no longer registered, a failing schedule
among others, the settings' sync."""

from __future__ import annotations

import datetime
import threading

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from plugins import registry
from plugins.base import NotRunnableHere
from tasks import engine
from tasks.engine.events import SCHEDULE_EVENTS
from tasks.exceptions import InvalidInput, NotFound, UnknownTaskType
from tasks.listener import connect_kwargs
from tasks.maintenance.scheduler import Scheduler, SchedulerConfig
from tasks.models import AuditEntry, Schedule, Task, TaskHistory
from tests.integration.conftest import next_events, sql
from tests.support.plugins import CountRuns

pytestmark = pytest.mark.django_db(transaction=True)
schedules = engine.schedules
sync = engine.schedule_settings.sync


def minute(n: int = 0) -> datetime.datetime:
    """The start of a minute n minutes from the current one (UTC)."""
    now = timezone.now().replace(second=0, microsecond=0)
    return now + datetime.timedelta(minutes=n)


def every_minute(**fields) -> Schedule:
    return schedules.create(name=fields.pop("name", "tick"), type="count", cron="* * * * *",
                            actor="alice", **fields)


def test_a_cron_schedule_fires_at_the_minute_and_not_before():
    s = every_minute(payload={"sleep": 0})
    assert s.next_run_at == minute(1)
    clock = Scheduler(SchedulerConfig(interval=1, batch_size=10))
    clock.clock = lambda: minute(1) - datetime.timedelta(seconds=1)
    assert clock.run_once() == 0 and not Task.objects.exists()
    clock.clock = lambda: minute(1) + datetime.timedelta(milliseconds=300)
    assert clock.run_once() == 1
    task = Task.objects.get()
    assert (task.name, task.type, task.origin, task.run_at) == ("tick", "count", "schedule",
                                                                minute(1))
    assert task.idempotency_key == f"schedule:{s.pk}:{minute(1).isoformat()}"
    (row,) = TaskHistory.objects.filter(task=task)
    assert f"scheduled by 'tick' (schedule {s.pk})" in row.details
    s.refresh_from_db()
    assert (s.last_tick_at, s.last_task_id, s.next_run_at) == (minute(1), task.pk, minute(2))
    assert clock.run_once() == 0  # the same moment again: nothing more


def test_the_same_tick_is_never_enqueued_twice_even_if_the_bookkeeping_is_rewound():
    s = every_minute()
    schedules.fire_due(now=minute(1))
    Schedule.objects.filter(pk=s.pk).update(next_run_at=minute(1))  # as if a crash lost it
    assert schedules.fire_due(now=minute(1)) == {s.pk: None}
    assert Task.objects.count() == 1


def test_two_leaders_at_once_enqueue_each_tick_once():
    for i in range(20):
        every_minute(name=f"s{i}")
    barrier = threading.Barrier(2)
    results = []

    def leader():
        from django.db import connection as own

        try:
            barrier.wait()
            results.append(schedules.fire_due(now=minute(1) + datetime.timedelta(seconds=1)))
        finally:
            own.close()

    threads = [threading.Thread(target=leader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert Task.objects.count() == 20
    assert len(set(Task.objects.values_list("idempotency_key", flat=True))) == 20
    assert len(results) == 2  # both leaders fired, neither failed
    fired = [(sid, tid) for result in results for sid, tid in result.items() if tid]
    assert len({sid for sid, _ in fired}) == len(fired) == 20  # each schedule by one leader
    assert {tid for _, tid in fired} == set(Task.objects.values_list("pk", flat=True))


@pytest.mark.parametrize("policy,expected", [("catch_up_once", 1), ("skip", 0)])
def test_missed_ticks_after_an_outage(policy, expected):
    s = schedules.create(name="hourly", type="count", cron="0 * * * *", missed_ticks=policy)
    pending = s.next_run_at
    fired = schedules.fire_due(now=pending + datetime.timedelta(hours=5, minutes=30))
    assert Task.objects.count() == expected
    if expected:
        assert Task.objects.get().run_at == pending + datetime.timedelta(hours=5)
    assert fired == {s.pk: Task.objects.get().pk if expected else None}
    s.refresh_from_db()
    assert s.next_run_at == pending + datetime.timedelta(hours=6)


def test_pause_stops_ticks_and_resume_starts_from_now():
    s = every_minute()
    schedules.pause(s.pk, actor="bob")
    assert Schedule.objects.get(pk=s.pk).next_run_at is None
    assert schedules.fire_due(now=minute(5)) == {}
    resumed = schedules.resume(s.pk, actor="bob")
    assert resumed.next_run_at == minute(1)
    assert list(AuditEntry.objects.values_list("action", "actor")) == [
        ("schedule_created", "alice"), ("schedule_paused", "bob"), ("schedule_resumed", "bob")]


def test_run_now_enqueues_at_once_and_leaves_the_ticks_alone():
    s = every_minute()
    task = schedules.run_now(s.pk, actor="carol")
    assert task.status == "queued" and task.origin == "schedule"
    assert "run now from schedule 'tick' by carol" in TaskHistory.objects.get(task=task).details
    s.refresh_from_db()
    assert s.last_task_id == task.pk and s.next_run_at == minute(1)


def test_a_schedule_without_limits_fires_with_the_engines_defaults_as_enqueue_does(settings):
    settings.TASKS_ENGINE = {**settings.TASKS_ENGINE, "DEFAULT_MAX_RETRIES": 7,
                             "DEFAULT_TIMEOUT": 42}
    every_minute(name="unset")
    every_minute(name="zero", max_retries=0, timeout_seconds=5)
    schedules.fire_due(now=minute(1))
    engine.enqueue(name="direct", type="count")
    limits = {name: (retries, timeout) for name, retries, timeout
              in Task.objects.values_list("name", "max_retries", "timeout_seconds")}
    assert limits == {"unset": (7, 42), "zero": (0, 5), "direct": (7, 42)}


def test_next_runs_of_an_interval_schedule():
    s = schedules.create(name="often", type="count", interval_seconds=90)
    runs = schedules.next_runs(s, 3)
    assert [b - a for a, b in zip(runs, runs[1:], strict=False)] == [
        datetime.timedelta(seconds=90)] * 2


@pytest.mark.parametrize("fields,field", [
    ({"payload": {"duration": "long"}, "type": "simulate"}, "payload"),
    ({"type": "no_such_type"}, "type"),
    ({"cron": "every day"}, "cron"),
    ({"cron": "* * * * *", "timezone": "Nowhere/City"}, "timezone"),
    ({"cron": "", "interval_seconds": 0}, "interval_seconds"),
    ({"cron": "", "interval_seconds": None}, "non_field_errors"),
    ({"missed_ticks": "always"}, "missed_ticks"),
    ({"queue": "bad queue"}, "queue"),
    ({"name": ""}, "name"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_schedule_names_the_field_and_saves_nothing(fields, field):
    spec = {"name": "bad", "type": "count", "cron": "* * * * *", **fields}
    with pytest.raises(InvalidInput) as caught:
        schedules.create(**spec)
    assert field in caught.value.errors
    assert not Schedule.objects.exists() and not AuditEntry.objects.exists()


def test_a_taken_name_is_refused():
    every_minute()
    with pytest.raises(InvalidInput, match="exists"):
        every_minute()


def test_update_revalidates_and_retimes():
    s = every_minute()
    changed = schedules.update(s.pk, interval_seconds=30, actor="dan")
    assert (changed.cron, changed.interval_seconds) == ("", 30)
    with pytest.raises(InvalidInput) as caught:
        schedules.update(s.pk, cron="nope")
    assert "cron" in caught.value.errors
    assert Schedule.objects.get(pk=s.pk).interval_seconds == 30


def test_delete_and_unknown_ids():
    s = every_minute()
    schedules.delete(s.pk, actor="eve")
    with pytest.raises(NotFound):
        schedules.get(s.pk)
    with pytest.raises(NotFound):
        schedules.pause("abc")


def test_sync_creates_and_updates_from_settings_and_leaves_others():
    every_minute(name="mine")
    defined = {"nightly": {"type": "count", "cron": "0 3 * * *", "timezone": "Europe/Paris"}}
    assert sync(defined) == ["nightly"]
    assert sync(defined) == []
    defined["nightly"]["cron"] = "0 4 * * *"
    assert sync(defined) == ["nightly"]
    assert sorted(Schedule.objects.values_list("name", flat=True)) == ["mine", "nightly"]


def test_sync_skips_an_invalid_entry_and_syncs_the_others(caplog):
    defined = {"broken": {"type": "count", "cron": "every day"},
               "unknown-field": {"type": "count", "interval_seconds": 60, "colour": "red"},
               "named-twice": {"name": "other", "type": "count", "interval_seconds": 60},
               "fine": {"type": "count", "interval_seconds": 60}}
    with caplog.at_level("ERROR", logger="tasks.engine.schedule_settings"):
        assert sync(defined) == ["fine"]
    assert list(Schedule.objects.values_list("name", flat=True)) == ["fine"]
    logged = {r.schedule_name: r.getMessage() for r in caplog.records}
    assert set(logged) == {"broken", "unknown-field", "named-twice"}
    assert "cron" in logged["broken"] and "colour" in logged["unknown-field"]
    assert sync(["not", "a", "mapping"]) == []


def test_sync_leaves_an_operators_pause_unless_the_setting_states_enabled():
    defined = {"nightly": {"type": "count", "cron": "0 3 * * *"}}
    sync(defined)
    schedules.pause(Schedule.objects.get(name="nightly").pk, actor="ops")
    assert sync(defined) == []
    assert Schedule.objects.get(name="nightly").enabled is False
    defined["nightly"]["cron"] = "0 4 * * *"  # a change from code keeps the pause too
    assert sync(defined) == ["nightly"]
    paused = Schedule.objects.get(name="nightly")
    assert (paused.enabled, paused.cron, paused.next_run_at) == (False, "0 4 * * *", None)
    defined["nightly"]["enabled"] = True  # stated: the setting wins
    assert sync(defined) == ["nightly"]
    assert Schedule.objects.get(name="nightly").enabled is True
    assert list(AuditEntry.objects.values_list("action", "actor")) == [
        ("schedule_created", "settings"), ("schedule_paused", "ops"),
        ("schedule_updated", "settings"), ("schedule_updated", "settings")]


class CountsElsewhere(CountRuns):
    """`count` where its plugin cannot run, as on a leader that lacks what it needs."""

    def unavailable_reason(self):
        return "its licence is on the workers' machines"


def test_a_leader_where_the_types_plugin_cannot_run_still_fires_the_schedule(plugins_here):
    s = every_minute(payload={"sleep": 0})
    plugins_here(count=f"{__name__}.CountsElsewhere")
    assert "count" not in registry.runnable_types()
    with pytest.raises(NotRunnableHere):
        registry.runnable("count")
    assert schedules.fire_due(now=minute(1)) == {s.pk: Task.objects.get().pk}
    task = Task.objects.get()
    assert (task.type, task.payload, task.run_at, task.status) == (
        "count", {"sleep": 0}, minute(1), "queued")
    run = schedules.run_now(s.pk, actor="carol")
    assert (run.type, run.payload) == ("count", {"sleep": 0})
    assert not AuditEntry.objects.filter(action="schedule_failed").exists()


def test_a_schedule_whose_type_is_no_longer_registered_fails_its_tick_and_enqueues_nothing(
        plugins_here, caplog):
    kept = every_minute(name="kept")
    retired = schedules.create(name="retired", type="boom", cron="* * * * *")
    plugins_here(without=["boom"])  # the project dropped the type after it was scheduled
    with caplog.at_level("ERROR", logger="tasks.engine.schedules"):
        fired = schedules.fire_due(now=minute(1))
    assert fired == {kept.pk: Task.objects.get().pk, retired.pk: None}
    assert list(Task.objects.values_list("name", flat=True)) == ["kept"]
    (failed,) = AuditEntry.objects.filter(action="schedule_failed")
    assert (failed.actor, failed.target, failed.details["tick"]) == (
        "scheduler", "retired", minute(1).isoformat())
    assert failed.details["error"].startswith("UnknownTaskType: ")
    assert "'boom'" in failed.details["error"]
    assert any("retired" in r.getMessage() and "'boom'" in r.getMessage()
               for r in caplog.records)
    assert Schedule.objects.get(pk=retired.pk).next_run_at == minute(2)
    with pytest.raises(UnknownTaskType):
        schedules.run_now(retired.pk, actor="carol")
    assert Task.objects.count() == 1
    assert Schedule.objects.get(pk=retired.pk).last_task_id is None


def test_a_type_this_process_lacks_fires_while_a_worker_online_runs_it(plugins_here):
    s = schedules.create(name="elsewhere", type="boom", cron="* * * * *")
    plugins_here(without=["boom"])  # the leader's image lacks it; a worker's has it
    engine.register_worker(worker_id="w-boom", hostname="h", pid=1, queues=[],
                           concurrency=1, types=["boom", "count"])
    assert schedules.fire_due(now=minute(1)) == {s.pk: Task.objects.get().pk}
    assert Task.objects.get().type == "boom"
    engine.unregister_worker(worker_id="w-boom")
    assert schedules.fire_due(now=minute(2)) == {s.pk: None}  # nobody runs it now
    assert Task.objects.count() == 1
    assert AuditEntry.objects.filter(action="schedule_failed").count() == 1


@pytest.fixture
def poison_trigger():
    """A statement that fails for one schedule's task: a trigger refusing tasks named
    'poison' (as a constraint added to the table would)."""
    sql("""CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.name = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF;
             RETURN NEW;
           END $$""")
    sql("CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks FOR EACH ROW "
        "EXECUTE FUNCTION refuse_poison()")
    yield
    sql("DROP TRIGGER refuse_poison ON tasks")
    sql("DROP FUNCTION refuse_poison()")


@pytest.mark.parametrize("break_it,error,next_run_at", [
    ("enqueue", "poison refused", lambda: minute(2)),
    ("timing", "Nowhere/City", lambda: minute(1) + schedules.RETRY_FAILED_AFTER),
])
def test_one_failing_schedule_does_not_stop_the_others(request, caplog, break_it, error,
                                                       next_run_at):
    before, poison, after = (every_minute(name=n) for n in ("a", "poison", "z"))
    if break_it == "enqueue":
        request.getfixturevalue("poison_trigger")
    else:
        sql("UPDATE task_schedules SET timezone = 'Nowhere/City' WHERE id = %s", [poison.pk])
    with caplog.at_level("ERROR", logger="tasks.engine.schedules"):
        fired = schedules.fire_due(now=minute(1))
    assert fired[poison.pk] is None
    assert sorted(Task.objects.values_list("name", flat=True)) == ["a", "z"]
    assert fired[before.pk] and fired[after.pk]
    (failed,) = AuditEntry.objects.filter(action="schedule_failed")
    assert (failed.actor, failed.target) == ("scheduler", "poison")
    assert failed.details["tick"] == minute(1).isoformat() and error in failed.details["error"]
    assert any(error in r.getMessage() for r in caplog.records)
    assert Schedule.objects.get(pk=poison.pk).next_run_at == next_run_at()
    schedules.fire_due(now=minute(2))  # the next pass fires the others again
    assert sorted(Task.objects.values_list("name", flat=True)) == ["a", "a", "z", "z"]


def test_the_due_index_holds_enabled_schedules_only():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_schedule_due'")
        assert "WHERE enabled" in cursor.fetchone()[0]


def test_the_schedules_setting_is_synced_when_the_scheduler_starts(settings):
    settings.TASKS_SCHEDULES = {"from-code": {"type": "count", "interval_seconds": 60},
                                "bad": {"type": "count", "interval_seconds": 0}}
    scheduler = Scheduler(SchedulerConfig(interval=1, batch_size=10))
    scheduler.run_once()
    assert scheduler.synced
    assert Schedule.objects.get(name="from-code").interval_seconds == 60
    assert AuditEntry.objects.get().actor == "settings"


def test_each_change_sends_an_event_naming_the_schedule_and_who():
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        conn.execute(f'LISTEN "{engine.CHANNEL}"')
        s = every_minute()  # by alice
        schedules.update(s.pk, priority=3, actor="dan")
        schedules.pause(s.pk, actor="bob")
        schedules.resume(s.pk, actor="bob")
        task = schedules.run_now(s.pk, actor="carol")
        schedules.delete(s.pk, actor="eve")
        received = next_events(conn, 7)
    about_schedule = [e for e in received if e["event"] in SCHEDULE_EVENTS]
    assert [(e["event"], e["actor"]) for e in about_schedule] == [
        ("schedule_created", "alice"), ("schedule_updated", "dan"), ("schedule_paused", "bob"),
        ("schedule_resumed", "bob"), ("schedule_run_now", "carol"), ("schedule_deleted", "eve")]
    assert {(e["schedule"], e["name"]) for e in about_schedule} == {(s.pk, "tick")}
    (queued,) = [e for e in received if e not in about_schedule]  # run-now's task
    assert (queued["event"], queued["ids"]) == ("task_queued", [task.pk])


def test_a_failed_schedule_sends_an_event_from_the_scheduler():
    s = every_minute()
    sql("UPDATE task_schedules SET timezone = 'Nowhere/City' WHERE id = %s", [s.pk])
    with psycopg.connect(autocommit=True, **connect_kwargs()) as conn:
        conn.execute(f'LISTEN "{engine.CHANNEL}"')
        schedules.fire_due(now=minute(1))
        (event,) = next_events(conn, 1)
    assert (event["event"], event["schedule"], event["actor"]) == (
        "schedule_failed", s.pk, "scheduler")
