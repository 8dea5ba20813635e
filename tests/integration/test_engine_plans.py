"""Prepared statements planned on a nearly empty `tasks` are planned again once it grows.

PostgreSQL keeps the plan it made for a prepared statement; made while the table was
empty (a new or truncated table), the claim's plan reads the whole table (a sequential
scan and a sort) for as long as the connection lives, and a drain falls 10-fold. Counted
here with the server's own statistics of sequential scans on `tasks`.
"""

from __future__ import annotations

import pytest
from django.db import connection

from tasks import engine
from tasks.engine import sql

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "plans-worker"


def seq_scans() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:  # a new transaction: the flush has happened
        cursor.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'tasks'")
        return cursor.fetchone()[0]


def claims_after_the_table_grows() -> int:
    """Sequential scans of `tasks` by claims made after it grew from empty to 20,000."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks")
    for _ in range(10):  # planned, and the plan kept, while the table is empty
        engine.enqueue(name="early", type="count")
        engine.claim(worker_id=WORKER, limit=32)
    engine.enqueue_many([{"name": f"t{i}", "type": "count"} for i in range(20_000)])
    engine.claim(worker_id=WORKER, limit=32)  # sees the size
    before = seq_scans()
    for _ in range(8):
        assert len(engine.claim(worker_id=WORKER, limit=32)) == 32
    return seq_scans() - before


@pytest.fixture
def fresh_plans(monkeypatch):
    monkeypatch.setattr(sql, "_planned_at_bytes", None)
    connection.close()  # a new session: no statement prepared yet


def test_claims_are_planned_again_for_the_grown_table(fresh_plans):
    assert claims_after_the_table_grows() == 0


def test_without_planning_again_the_claim_would_scan_the_table(fresh_plans, monkeypatch):
    monkeypatch.setattr(sql, "REPLAN_GROWTH", 10**9)
    assert claims_after_the_table_grows() > 0
