"""The task page's run section and history: the attempts timeline from the task's history,
for a running task its elapsed time, deadline, lease and worker (linked), and the history
rows. Each is bounded (a task retried 10,000 times shows its latest runs and newest rows,
and says where the rest are: the history list, filtered to the task)."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from tasks import selectors, states
from tasks.admin.display import pretty, seconds_text, timestamp
from tasks.models import Status, Task, TaskHistory, Worker

HISTORY_SHOWN = 200  # history rows on a task page


def history_url(task_id: int) -> str:
    """The history list filtered to one task (every row, newest first)."""
    return reverse("admin:tasks_taskhistory_changelist") + "?" + urlencode({"q": task_id})


class NewestHistory(BaseInlineFormSet):
    """The task's newest HISTORY_SHOWN rows, oldest of them first; `total` and `more`
    say how many there are and how many are left out."""

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            rows = super().get_queryset()
            newest = list(rows.order_by("-created_at", "-id")[:HISTORY_SHOWN + 1])
            self.total = len(newest) if len(newest) <= HISTORY_SHOWN else rows.count()
            self._queryset = newest[:HISTORY_SHOWN][::-1]
            self.more = self.total - len(self._queryset)
            self.history_url = history_url(self.instance.pk) if self.more else ""
        return self._queryset


class TaskHistoryInline(admin.TabularInline):
    model = TaskHistory
    formset = NewestHistory
    template = "admin/tasks/task/history_inline.html"
    fields = ("when", "event_type", "status", "attempt", "worker_id", "details",
              "error_class", "trace")
    readonly_fields = fields
    ordering = ("created_at", "id")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="when")
    def when(self, row: TaskHistory) -> str:
        return timestamp(row.created_at, precise=True)

    @admin.display(description="traceback")
    def trace(self, row: TaskHistory) -> str:
        return pretty(row.traceback)  # monospaced and bounded, like the task's last error


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
    earlier = runs[0]["attempt"] - 1 if runs else 0  # attempts left out of the timeline
    return {"runs": runs, "running": running, "runs_earlier": earlier,
            "runs_history_url": history_url(task.pk) if earlier else "",
            "deferred_until": timestamp(task.run_at) if states.is_deferred(task) else ""}
