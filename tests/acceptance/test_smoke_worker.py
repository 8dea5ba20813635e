import pytest

from tasks import queue
from tasks.models import Task
from tests.support.processes import wait_until

pytestmark = pytest.mark.process


def test_worker_runs_a_task_woken_by_listen(worker_factory):
    proc = worker_factory("--concurrency", "2")
    task = queue.enqueue(name="hello", type="simulate", payload={"duration": 0})
    wait_until(lambda: Task.objects.get(pk=task.pk).status == "succeeded", timeout=20)
    assert proc.poll() is None
