"""A worker's own statements commit without waiting for the WAL flush.

Claims, heartbeats and completions are the worker's bookkeeping of runs, and each is its
own transaction: waiting for the WAL to reach the disk on every one of them is most of a
claim's round trip. With `synchronous_commit = off` on the connections of the threads that
write only these (the dispatcher, the completer, the heartbeat), a commit returns once it
is in the WAL buffers, and the WAL writer flushes within a fraction of a second.

What this risks is bounded by at-least-once delivery: a clean stop or restart of
PostgreSQL flushes everything; a crash of the server (not of a worker) may roll back the
last few hundred milliseconds of claims and completions, and those tasks run again, as
they would after a worker's crash. Enqueues, a person's cancel or retry, schedules and a
plugin's own database work keep the server's setting: they are other connections.

Behind PgBouncer in transaction pooling a session setting would leak to other clients,
so TASKS_WORKER_ASYNC_COMMIT=0 turns this off there.
"""

from __future__ import annotations

import threading

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from tasks.conf import engine

_thread = threading.local()


def commit_without_waiting() -> None:
    """From now on this thread's connection commits without waiting for the WAL flush
    (unless TASKS_WORKER_ASYNC_COMMIT is off), through reconnects too."""
    if not engine().WORKER_ASYNC_COMMIT:
        return
    _thread.asynchronous = True
    if connection.connection is not None:
        _apply(connection)


def _apply(wrapper) -> None:
    with wrapper.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")


@receiver(connection_created)
def _on_connect(sender, connection, **kwargs) -> None:
    if getattr(_thread, "asynchronous", False) and connection.alias == DEFAULT_DB_ALIAS:
        _apply(connection)
