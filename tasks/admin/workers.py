"""Registered workers, read-only: they register themselves and the reaper forgets them.
Each shows its state from its heartbeat (online, late, lost: tasks.states.worker_state) and
links the tasks it runs."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from tasks import authz, selectors, states
from tasks.admin.display import timestamp
from tasks.conf import engine
from tasks.models import Status, Task, Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("hostname", "pid", "state", "queues_display", "running_tasks",
                    "seen", "started", "id")
    ordering = ("hostname", "pid")
    readonly_fields = ("id", "hostname", "pid", "state", "queues_display", "concurrency",
                       "running_tasks", "started", "seen")
    fields = readonly_fields

    class Media:
        css = {"all": ["tasks/admin.css"]}
        js = ["tasks/localtime.js"]

    def get_queryset(self, request):
        # Per worker, from the running-lease index: how many it runs, and the first ids;
        # of the tasks this user may see (tasks.authz), so others' are not even counted.
        running = authz.visible(Task.objects.filter(status=Status.RUNNING,
                                                    locked_by=OuterRef("pk")), request.user)
        count = running.order_by().values("locked_by").annotate(n=Count("pk")).values("n")
        return super().get_queryset(request).annotate(
            running=Coalesce(Subquery(count, output_field=IntegerField()), Value(0)),
            running_ids=ArraySubquery(running.order_by("pk").values("pk")[
                :selectors.RUNNING_IDS_SHOWN]))

    @admin.display(description="state")
    def state(self, worker: Worker) -> str:
        silent = (timezone.now() - worker.last_seen).total_seconds()
        value = states.worker_state(silent, engine())
        return format_html('<span class="task-worker-state task-worker-{}" title="last '
                           'heartbeat {}s ago">{}</span>', value, f"{silent:.0f}", value)

    @admin.display(description="queues")
    def queues_display(self, worker: Worker) -> str:
        return ", ".join(worker.queues) if worker.queues else "all queues"

    @admin.display(description="running tasks", ordering="running")
    def running_tasks(self, worker: Worker) -> str:
        count, ids = worker.running, worker.running_ids
        links = format_html_join(" ", '<a href="{}">#{}</a>', (
            (reverse("admin:tasks_task_change", args=[i]), i) for i in ids))
        everything = reverse("admin:tasks_task_changelist") + "?" + urlencode(
            {"worker": worker.id})
        return format_html('{} / {} {} <a href="{}" class="task-muted">{}</a>', count,
                           worker.concurrency, links, everything,
                           "all" if count else "none now")

    @admin.display(description="last seen", ordering="last_seen")
    def seen(self, worker: Worker) -> str:
        return timestamp(worker.last_seen, compact=True)

    @admin.display(description="started", ordering="started_at")
    def started(self, worker: Worker) -> str:
        return timestamp(worker.started_at, compact=True)

    def has_add_permission(self, request) -> bool:
        return False  # workers register themselves

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the reaper forgets silent workers
