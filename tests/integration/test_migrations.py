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
    assert "(created_at)" in indexes["idx_created_at"]
    assert "(status, id)" in indexes["idx_status_id"]
    # Each index is written three times per task (insert, claim, completion): a rare
    # read's index is partial, so the hot path writes none of its entries.
    for name in ("idx_type_status", "idx_priority_id", "idx_queue_id", "idx_started_id"):
        assert name not in indexes
    assert "WHERE (failed_parent_id IS NOT NULL)" in indexes["idx_failed_parent"]
    full = {name for name, definition in indexes.items() if " WHERE " not in definition}
    assert full == {"tasks_pkey", "idx_created_at", "idx_status_id", "idx_payload_path"}
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
    indexes = _indexes("task_history")
    assert "(task_id, created_at)" in indexes["idx_task_id_created_at"]
    # The event index leaves out the three events every task writes.
    event = indexes["idx_history_event_id"]
    assert "(event_type, id)" in event and "task_started" in event and "WHERE" in event


def test_each_dependency_column_has_one_foreign_key_that_cascades():
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT a.attname, c.confdeltype, c.condeferrable FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.conrelid = 'task_dependencies'::regclass AND c.contype = 'f'
            ORDER BY a.attname""")
        assert cursor.fetchall() == [("child_id", "c", True), ("parent_id", "c", True)]
