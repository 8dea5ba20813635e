"""The loader of tasks/engine/queries.sql, the statements' agreement with events.py, and one
statement for each job (task ids are taken by one)."""

from __future__ import annotations

import re

import pytest

from tasks.engine import events, sql


def test_each_name_maps_to_its_statement_without_the_comment_line():
    text = ("-- header\n\n-- name: first --\n-- does one thing.\nSELECT 1\n\n"
            "-- name: second --\n-- does another.\nSELECT %(x)s\nFROM t\n")
    assert sql.parse(text) == {"first": "SELECT 1", "second": "SELECT %(x)s\nFROM t"}


def test_a_name_used_twice_is_an_error():
    text = "-- name: twice --\n-- a.\nSELECT 1\n-- name: twice --\n-- b.\nSELECT 2\n"
    with pytest.raises(ValueError, match="'twice' is used twice"):
        sql.parse(text)


def test_a_name_without_sql_is_an_error():
    text = "-- name: empty --\n-- says what it does, but there is nothing.\n\n-- name: ok --\n" \
           "-- fine.\nSELECT 1\n"
    with pytest.raises(ValueError, match="'empty' has no SQL"):
        sql.parse(text)


def test_a_name_without_its_comment_line_is_an_error():
    with pytest.raises(ValueError, match="'bare' needs a comment line"):
        sql.parse("-- name: bare --\nSELECT 1\n")


def test_an_unknown_name_is_refused_before_touching_the_database():
    with pytest.raises(KeyError, match="no_such_statement"):
        sql.run("no_such_statement", {})


def test_the_shipped_file_loads_and_has_the_engine_statements():
    assert {"insert_task", "insert_tasks", "claim_any", "claim_queues", "heartbeat",
            "complete_runs", "fail_runs", "cancel_runs", "release_runs", "rescue_expired",
            "reap_workers", "register_worker", "unregister_worker", "select_by_keys",
            "delete_finished"} <= set(sql.QUERIES)
    for name, statement in sql.QUERIES.items():
        assert "{" not in statement.replace("%(", ""), f"{name}: a template placeholder"


def test_the_statements_notify_on_the_one_channel_with_the_one_id_limit():
    text = "\n".join(sql.QUERIES.values())
    channels = set(re.findall(r"pg_notify\('([^']*)'", text))
    assert channels == {events.CHANNEL}
    limits = set(re.findall(r"LIMIT (\d+)\) s\)", text)) | set(re.findall(r"\[1:(\d+)\]", text))
    assert limits == {str(events.NOTIFY_MAX_IDS)}
    names = set(re.findall(r"'event', '(\w+)'", text))
    names |= {n for case in re.findall(r"'event', CASE[^,]*?END", text, re.S)
              for n in re.findall(r"(?:THEN|ELSE) '(\w+)'", case)}
    assert names <= events.NAMES
    assert {"task_queued", "task_started", "task_succeeded", "retry_scheduled", "task_failed",
            "task_cancelled", "task_released", "lease_expired", "worker_online",
            "worker_offline", "tasks_deleted"} <= names


def test_payload_counts_every_id_and_sends_at_most_the_limit():
    import json

    body = json.loads(events.payload("task_queued", range(1, 251), queue="mail"))
    assert body == {"event": "task_queued", "count": 250,
                    "ids": list(range(1, events.NOTIFY_MAX_IDS + 1)), "queue": "mail"}


def test_one_statement_takes_task_ids_from_the_sequence():
    # A graph's edges and a copied batch both need ids before their rows exist.
    takers = [name for name, statement in sql.QUERIES.items()
              if "nextval(" in statement
              and re.search(r"pg_get_serial_sequence\('tasks',\s*'id'\)", statement)]
    assert takers == ["reserve_task_ids"]
