"""manage.py end2end against real worker processes."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.management import call_command

from tasks.models import Task
from tests.support import processes

pytestmark = pytest.mark.process


def test_end2end_runs_a_mix_of_tasks_through_real_workers(worker_factory, run_query_on):
    # run_query on a database and role of its own, in this process and in the workers.
    for _ in range(2):
        worker_factory("--concurrency", "6", TASKS_BACKOFF_BASE="0.05",
                       TASKS_BACKOFF_CAP="0.2", TASKS_POLL_INTERVAL="0.2",
                       TASKS_QUERY_DATABASE_URL=run_query_on.url)
    processes.wait_until(lambda: _workers() == 2, timeout=30, message="workers did not start")
    out = io.StringIO()
    call_command("end2end", "-n", "20", "--timeout", "90", "--interval", "0.5",
                 "--max-duration", "0.2", stdout=out)
    text = out.getvalue()
    assert "20 tasks on queue 'default'; 2 worker(s) online." in text
    progress = [line for line in text.splitlines() if line.startswith("[")]
    assert progress[-1].startswith("[" + "#" * 30 + "] 20/20 finished")
    assert "queued 0 running 0 retrying 0" in progress[-1]
    assert "Summary" in text
    tasks = Task.objects.filter(name__startswith="end2end ")
    assert tasks.count() == 20
    assert not tasks.exclude(status__in=["succeeded", "failed"]).exists()
    # The mix: the timeout tasks fail at their 1-second deadline; emails and queries succeed.
    overrun = tasks.filter(timeout_seconds=1)
    assert overrun.count() == 2
    assert set(overrun.values_list("status", flat=True)) == {"failed"}
    assert set(tasks.filter(type__in=["send_email", "run_query"])
               .values_list("status", flat=True)) == {"succeeded"}
    for type_name in ("simulate", "send_email", "run_query"):
        assert f"    {type_name}" in text
    queried = tasks.filter(type="run_query").first()
    assert queried.result["rows"][0][0] == run_query_on.name  # its own database


def test_end2end_times_out_with_a_non_zero_exit_when_no_worker_runs(transactional_db):
    result = subprocess.run(
        [sys.executable, str(processes.ROOT / "manage.py"), "end2end", "-n", "5",
         "--timeout", "1.5", "--interval", "0.5"],
        env=processes.process_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "0 worker(s) online" in result.stdout
    assert "run_query is off (no TASKS_QUERY_DATABASE_URL): no queries." in result.stdout
    assert "[" + "." * 30 + "] 0/5 finished" in result.stdout
    assert "Traceback" not in result.stderr
    assert "Timed out after 1.5s: 5 of 5 tasks unfinished (5 cancelled)." in result.stderr
    # Nothing of the drill is left waiting for a worker.
    assert set(Task.objects.values_list("status", flat=True)) == {"cancelled"}


def _workers() -> int:
    from tasks import selectors

    return selectors.workers_online().count()
