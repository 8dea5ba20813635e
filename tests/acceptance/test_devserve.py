"""`make run` ends in `manage.py devserve`: the web server and one worker, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import urllib.request

import pytest

from tasks import engine
from tasks.models import Task
from tests.support import processes
from tests.support.processes import free_port, wait_until

pytestmark = pytest.mark.process



def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_devserve_serves_runs_tasks_and_stops_cleanly_on_ctrl_c(transactional_db, tmp_path):
    port = free_port()
    log = tmp_path / "devserve.log"
    proc = processes.manage("devserve", "--port", str(port), log=log)
    try:
        wait_until(lambda: healthy(port), timeout=60, message="devserve never served /health")
        task = engine.enqueue(name="via devserve", type="simulate", payload={"duration": 0})
        wait_until(lambda: Task.objects.get(pk=task.pk).status == "succeeded", timeout=20)
        # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Stopped." in text
    assert "second signal" not in text, "the worker was signalled twice"
    assert "stopped after 1 task(s)" in text
    assert not healthy(port)
