from __future__ import annotations

import signal

import pytest

from plugins import registry
from tests.support import processes
from tests.support.plugins import TEST_PLUGINS
from tests.support.query_db import query_db, run_query_on  # noqa: F401 - fixtures


@pytest.fixture(scope="session", autouse=True)
def _test_plugins():
    from django.conf import settings

    registry.load({**settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS})
    yield
    registry.load()


@pytest.fixture
def worker_factory(transactional_db, tmp_path):
    """Start real `manage.py runworker` processes; all are stopped at teardown."""
    started = []

    def start(*args: str, **env: str):
        log = tmp_path / f"worker-{len(started)}.log"
        proc = processes.manage("runworker", *args, env=processes.process_env(**env), log=log)
        proc.log_path = log
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            processes.stop(proc, signal.SIGKILL, timeout=10)
