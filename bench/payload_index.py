"""What an index for payload search costs on enqueue.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/payload_index.py --tasks 20000

Works in its own database (`--db-name`, created and dropped at the end). For each design
(no payload index, GIN jsonb_path_ops, GIN pg_trgm on the payload's text) it empties the
tasks table, creates that index, and enqueues the same tasks through tasks.engine: batches
of --batch with enqueue_many, then --singles one at a time with enqueue. Prints the time
per 1,000 tasks, the slowdown against no index, and the index's size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.admin_list import database_urls  # noqa: E402

DESIGNS = {
    "no payload index": None,
    "GIN jsonb_path_ops (chosen)":
        "CREATE INDEX idx_payload_path ON tasks USING gin (payload jsonb_path_ops)",
    "GIN pg_trgm on payload::text":
        "CREATE INDEX idx_payload_trgm ON tasks USING gin ((payload::text) gin_trgm_ops)",
}


def payload(i: int) -> dict:
    """A send_email-like payload: a few keys, an address, a sentence, a list."""
    return {"to": f"user{i}@example.com", "subject": f"Invoice {i} for order {i * 7}",
            "body": "Hello, your invoice is attached. Thank you for your order.",
            "tags": ["billing", f"customer-{i % 500}"], "attempt_key": f"k-{i:08d}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--singles", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db-name", default="taskservice_bench_payload")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL")
    if not base:
        parser.error("set DATABASE_URL to a PostgreSQL server the benchmark may create a "
                     "database on")
    import psycopg

    admin_url, bench_url = database_urls(base, args.db_name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db_name}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskservice.settings")
    os.environ["DEBUG"] = "1"
    import django

    django.setup()
    try:
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    return 0


def run(args) -> None:
    from django.core.management import call_command
    from django.db import connection

    from tasks import engine

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    specs = [{"name": f"mail {i}", "type": "noop", "payload": payload(i)}
             for i in range(args.tasks)]
    # Unmeasured: the first enqueues of a connection prepare its statements and warm the
    # caches, which would otherwise be charged to the first design.
    for first in range(0, min(len(specs), 10 * args.batch), args.batch):
        engine.enqueue_many(specs[first:first + args.batch])
    for spec in specs[:min(args.singles, 100)]:
        engine.enqueue(**spec)
    results = []
    for label, create in DESIGNS.items():
        batched, single, sizes = [], [], []
        for _ in range(args.rounds):
            with connection.cursor() as cursor:
                cursor.execute("DROP INDEX IF EXISTS idx_payload_path")
                cursor.execute("DROP INDEX IF EXISTS idx_payload_trgm")
                cursor.execute("TRUNCATE tasks, task_history, task_dependencies")
                if create:
                    cursor.execute(create)
            start = time.perf_counter()
            for first in range(0, len(specs), args.batch):
                engine.enqueue_many(specs[first:first + args.batch])
            batched.append((time.perf_counter() - start) * 1000 / len(specs) * 1000)
            start = time.perf_counter()
            for spec in specs[:args.singles]:
                engine.enqueue(**spec)
            single.append((time.perf_counter() - start) * 1000 / args.singles * 1000)
            with connection.cursor() as cursor:
                cursor.execute("SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) "
                               "FROM pg_index WHERE indrelid = 'tasks'::regclass AND "
                               "indexrelid::regclass::text LIKE 'idx_payload_%%'")
                sizes.append(cursor.fetchone()[0])
        results.append((label, statistics.median(batched), statistics.median(single),
                        max(sizes)))

    base_batch, base_single = results[0][1], results[0][2]
    total = args.tasks + args.singles
    print(f"\nEnqueue cost of a payload index ({args.tasks:,} tasks in batches of "
          f"{args.batch}, then {args.singles:,} one by one; median of {args.rounds})\n")
    print(f"{'design':<30} {'batched ms/1k':>14} {'vs none':>8} {'single ms/1k':>13} "
          f"{'vs none':>8} {'index MB':>9}")
    print("-" * 86)
    for label, batch_ms, single_ms, size in results:
        print(f"{label:<30} {batch_ms:>14.1f} {batch_ms / base_batch - 1:>+8.0%} "
              f"{single_ms:>13.1f} {single_ms / base_single - 1:>+8.0%} "
              f"{size / 2**20 * 1000 / total:>9.2f}")
    print("\n(index MB: per 1,000 tasks)")


if __name__ == "__main__":
    sys.exit(main())
