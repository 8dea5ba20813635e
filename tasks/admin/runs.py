"""The task page's run section: the attempts timeline from the task's history, and for a
running task its elapsed time, deadline, lease and worker (linked)."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from tasks import selectors, states
from tasks.admin.display import seconds_text, timestamp
from tasks.models import Status, Task, Worker


def worker_link(worker_id: str, known: set[str]) -> dict[str, Any]:
    """A worker as the page links it: its admin page while it is registered."""
    url = (reverse("admin:tasks_worker_change", args=[quote(worker_id)])
           if worker_id in known else "")
    return {"id": worker_id, "url": url}


def run_context(task: Task) -> dict[str, Any]:
    runs = selectors.attempts(task.pk)
    ids = {r["worker"] for r in runs if r["worker"]} | ({task.locked_by} if task.locked_by
                                                         else set())
    known = set(Worker.objects.filter(pk__in=ids).values_list("pk", flat=True))
    for run in runs:
        run["worker_link"] = worker_link(run["worker"], known) if run["worker"] else None
        run["duration"] = seconds_text(run["seconds"]) if run["seconds"] is not None else ""
        run["started_html"] = timestamp(run["started"], precise=True)
        run["ended_html"] = timestamp(run["ended"], precise=True) if run["ended"] else ""
    running: dict[str, Any] | None = None
    if task.status == Status.RUNNING and task.started_at:
        now = timezone.now()
        deadline = task.started_at + datetime.timedelta(seconds=task.timeout_seconds)
        running = {
            "elapsed": seconds_text((now - task.started_at).total_seconds()),
            "deadline": timestamp(deadline),
            "left": seconds_text((deadline - now).total_seconds()),
            "overdue": deadline < now,
            "lease": timestamp(task.locked_until),
            "worker": worker_link(task.locked_by, known) if task.locked_by else None,
            "cancel_requested": bool(task.cancel_requested_at),
        }
    return {"runs": runs, "running": running,
            "deferred_until": timestamp(task.run_at) if states.is_deferred(task) else ""}
