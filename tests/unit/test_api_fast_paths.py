"""The API's fast paths give what DRF's own would: a task's representation (BuiltOnce)
and a create body's parsed values (TaskCreateSerializer.parse)."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from tasks.api.serializers import (
    _PLAIN,
    CREATE_FIELDS,
    TaskCreateSerializer,
    TaskListSerializer,
    TaskSerializer,
)
from tasks.models import Task

UTC = datetime.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def task(**values) -> Task:
    base = {
        "id": 12, "name": "resize", "type": "count", "status": "running",
        "payload": {"n": [1, 2.5, None, "x"]}, "priority": -3, "queue": "images",
        "retry_count": 1, "max_retries": 3, "last_error": "", "timeout_seconds": 30,
        "run_at": datetime.datetime(2026, 12, 7, 10, 0, tzinfo=UTC), "result": None,
        "locked_by": "host:1", "idempotency_key": None, "attempts": 2,
        "created_at": datetime.datetime(2026, 12, 7, 9, 59, 58, 123456, tzinfo=UTC),
        "updated_at": datetime.datetime(2026, 12, 7, 11, 0, tzinfo=PARIS),
        "started_at": datetime.datetime(2026, 12, 7, 10, 0, 1, tzinfo=UTC),
        "finished_at": None, "owner_id": 7, "origin": "api", "workflow_id": None,
        "on_parent_failure": "fail",
        "progress": {"attempt": 2, "done": 3, "total": 9, "message": "", "at": "t"},
    }
    t = Task(**{**base, **values})
    t.parent_ids = [3, 4]
    return t


def drf(serializer_class, instance) -> dict:
    """DRF's own representation: fields built for this instance, each written by its
    get_attribute and to_representation."""
    return serializers.Serializer.to_representation(serializer_class(), instance)


TASKS = [
    task(),
    task(status="succeeded", result={"ok": True}, finished_at=datetime.datetime(
        2026, 12, 7, 10, 0, 2, tzinfo=PARIS), owner_id=None, progress=None, locked_by=None),
    task(status="queued", idempotency_key="k-1", run_at=datetime.datetime(
        2030, 1, 1, tzinfo=zoneinfo.ZoneInfo("America/New_York")), attempts=0),
    task(status="not-a-choice", origin="python", payload={}, workflow_id=5),
]


@pytest.mark.parametrize("serializer_class", [TaskSerializer, TaskListSerializer])
@pytest.mark.parametrize("zone", [None, "Asia/Kolkata"])
def test_a_task_is_written_as_drf_writes_it(serializer_class, zone):
    for t in TASKS:
        if zone is None:
            assert serializer_class(t).data == drf(serializer_class, t)
        else:
            with timezone.override(zone):
                fast = serializer_class(t).data
                assert fast == drf(serializer_class, t)
                assert fast["created_at"].endswith("+05:30")


def test_a_list_is_written_as_drf_writes_each_task():
    assert TaskSerializer(TASKS, many=True).data == [drf(TaskSerializer, t) for t in TASKS]


def test_the_fast_parse_knows_every_create_field():
    assert set(_PLAIN) == set(CREATE_FIELDS)


PARSER = TaskCreateSerializer()

BODIES = [
    {"name": "a", "type": "count"},
    {"name": "", "type": "", "payload": None, "priority": 0, "queue": "q.1:x",
     "max_retries": None, "timeout_seconds": 5, "idempotency_key": "k", "depends_on": [1],
     "after": None, "on_parent_failure": "run", "run_at": None},
    {"name": "a", "type": "count", "payload": {"deep": [{"x": [1, 2]}]}},
    # Not plain: each goes through DRF (parsed, or refused with its errors).
    {"name": "a", "type": "count", "priority": "5"},
    {"name": "a", "type": "count", "priority": True},
    {"name": "a", "type": "count", "priority": 2.0},
    {"name": 5, "type": "count"},
    {"name": "é", "type": "count"},
    {"name": "a\x00", "type": "count"},
    {"name": "a", "type": "count", "queue": ""},
    {"name": "a", "type": "count", "queue": None},
    {"name": None, "type": "count"},
    {"name": "a", "type": "count", "idempotency_key": ""},
    {"name": "a", "type": "count", "run_at": "2026-12-07T10:00:00Z"},
    {"name": "a", "type": "count", "run_at": "yesterday"},
    {"name": "a", "type": "count", "colour": "red"},
    ["not", "an", "object"],
]


@pytest.mark.parametrize("body", BODIES)
def test_a_create_body_parses_as_run_validation_parses_it(body):
    try:
        expected = dict(PARSER.run_validation(body))
    except ValidationError as exc:
        with pytest.raises(ValidationError) as raised:
            PARSER.parse(body)
        assert raised.value.detail == exc.detail
    else:
        assert PARSER.parse(body) == expected
