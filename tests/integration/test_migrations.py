"""The migrations match the models, and the database has the indexes the engine relies on."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db


def test_makemigrations_check_is_clean():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits non-zero when a migration is missing
        pytest.fail(f"models and migrations differ:\n{out.getvalue()} (exit {exc.code})")
    assert "No changes detected" in out.getvalue()


def test_every_migration_is_applied():
    out = StringIO()
    try:
        call_command("migrate", "--check", stdout=out, stderr=out)
    except SystemExit as exc:
        pytest.fail(f"unapplied migrations:\n{out.getvalue()} (exit {exc.code})")


def _indexes(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                       [table])
        return dict(cursor.fetchall())


def test_the_task_indexes_exist():
    indexes = _indexes("tasks")
    assert "(type, status)" in indexes["idx_type_status"]
    assert "(created_at)" in indexes["idx_created_at"]
    assert "(status, id)" in indexes["idx_status_id"]
    assert "(started_at NULLS FIRST, id)" in indexes["idx_started_id"]
    # The claim's partial index: only waiting rows, in claim order.
    claim = [indexes["idx_claim"], indexes["idx_claim_queue"]]
    assert "(priority DESC, run_at, id)" in claim[0]
    # Per queue: the limited queues' claim and workers of named queues.
    assert "(queue, priority DESC, run_at, id)" in claim[1]
    for definition in claim:
        assert "WHERE" in definition and "queued" in definition and "retrying" in definition
    unique_keys = [d for d in indexes.values() if "UNIQUE" in d and "idempotency_key" in d]
    assert unique_keys


def test_the_history_index_exists():
    assert "(task_id, created_at)" in _indexes("task_history")["idx_task_id_created_at"]
