"""The lifecycle as data (tasks/states.py), and the README table rendered from it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import states
from tasks.states import Event, Status

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lifecycle_table_is_rendered_from_the_transitions():
    text = README.read_text()
    table = states.lifecycle_table()
    assert table in text, f"README's lifecycle table differs; it should read:\n{table}"


def test_every_status_and_event_takes_part_in_a_transition():
    targets = {t.target for t in states.TRANSITIONS}
    sources = {s for t in states.TRANSITIONS for s in t.sources}
    assert set(Status.values) <= targets | sources
    assert {e for t in states.TRANSITIONS for e in t.events} == set(Event.values)


def test_status_sets_partition_the_statuses():
    assert states.ACTIVE | states.FINISHED == set(Status.values)
    assert not states.ACTIVE & states.FINISHED
    assert states.CLAIMABLE < states.ACTIVE
    assert states.sources("claim") == states.CLAIMABLE
    assert states.sources("retry") == states.RETRYABLE


def task(status: str, cancel_requested_at=None) -> SimpleNamespace:
    return SimpleNamespace(status=status, cancel_requested_at=cancel_requested_at)


@pytest.mark.parametrize(("action", "status", "asked", "allowed"), [
    ("cancel", Status.QUEUED, None, True),
    ("cancel", Status.RETRYING, None, True),
    ("cancel", Status.RUNNING, None, True),
    ("cancel", Status.RUNNING, "2026-01-01", False),  # already asked to stop
    ("cancel", Status.SUCCEEDED, None, False),
    ("retry", Status.FAILED, None, True),
    ("retry", Status.CANCELLED, None, True),
    ("retry", Status.RUNNING, None, False),
    ("retry", Status.SUCCEEDED, None, False),
])
def test_can(action, status, asked, allowed):
    assert states.can(action, task(status, asked)) is allowed


def test_can_refuses_nothing_and_unknown_actions():
    assert states.can("cancel", None) is False
    with pytest.raises(KeyError):
        states.can("teleport", task(Status.QUEUED))


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1), ("42", 42), (" 7 ", 7), (2**63 - 1, 2**63 - 1), ("9223372036854775807", 2**63 - 1),
    (0, None), (-3, None), ("0", None), (2**63, None), ("9223372036854775808", None),
    ("²", None), ("٣", None), ("1e3", None), ("", None), ("12a", None), (True, None),
    (1.0, None), (None, None), ("9" * 400, None), ("\x00", None),
])
def test_parse_id(value, expected):
    assert states.parse_id(value) == expected


def test_liveness_window():
    assert states.liveness_window(SimpleNamespace(LEASE_SECONDS=30,
                                                  HEARTBEAT_INTERVAL=5)) == 30
    assert states.liveness_window(SimpleNamespace(LEASE_SECONDS=30,
                                                  HEARTBEAT_INTERVAL=20)) == 60


def test_worker_state_changes_at_the_liveness_thresholds():
    settings = SimpleNamespace(LEASE_SECONDS=30, HEARTBEAT_INTERVAL=5)
    assert states.liveness_thresholds(settings) == {"online": 7.5, "lost": 30}
    assert [states.worker_state(s, settings) for s in (0, 7.5, 7.6, 30, 30.1)] == [
        "online", "online", "late", "late", "lost"]
