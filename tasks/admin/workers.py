"""Registered workers, read-only: they register themselves and the reaper forgets them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from tasks.models import Status, Task, Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("hostname", "pid", "queues_display", "concurrency", "running_tasks",
                    "last_seen", "started_at", "id")
    ordering = ("hostname", "pid")
    readonly_fields = ("id", "hostname", "pid", "queues_display", "concurrency",
                       "running_tasks", "started_at", "last_seen")
    fields = readonly_fields

    def get_queryset(self, request):
        running = (Task.objects.filter(status=Status.RUNNING, locked_by=OuterRef("pk"))
                   .order_by().values("locked_by").annotate(n=Count("pk")).values("n"))
        return super().get_queryset(request).annotate(
            running=Coalesce(Subquery(running, output_field=IntegerField()), Value(0)))

    @admin.display(description="queues")
    def queues_display(self, worker: Worker) -> str:
        return ", ".join(worker.queues) if worker.queues else "all"

    @admin.display(description="running tasks", ordering="running")
    def running_tasks(self, worker: Worker) -> int:
        return worker.running

    def has_add_permission(self, request) -> bool:
        return False  # workers register themselves

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the reconciler forgets silent workers
