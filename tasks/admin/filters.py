"""List filters whose choices come from indexes and planner statistics, never a scan."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q

from plugins import registry
from tasks import jsonsafe, selectors, states
from tasks.models import Status, TaskDependency, Worker


class StorableValueFilter(admin.SimpleListFilter):
    """A value PostgreSQL cannot compare (a NUL, an unpaired surrogate) filters nothing.
    The query-string middleware answers 400 first; this keeps the filter safe alone."""

    def value(self):
        value = super().value()
        return None if value and jsonsafe.text_problem(value) else value


class TypeFilter(StorableValueFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        names = set(registry.types()) | set(selectors.task_types())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


class QueueFilter(StorableValueFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        names = set(selectors.known_queues())
        if self.value():
            names.add(self.value())  # keep the chosen one listed even if it is rare
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(queue=self.value()) if self.value() else queryset


class WorkerFilter(StorableValueFilter):
    """The tasks a worker is running now (the running-lease index serves it)."""

    title = "running on worker"
    parameter_name = "worker"

    def lookups(self, request, model_admin):
        names = set(Worker.objects.values_list("id", flat=True))
        if self.value():
            names.add(self.value())  # a lost worker's link keeps working
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(status=Status.RUNNING, locked_by=self.value())


class RelatedToTaskFilter(StorableValueFilter):
    """The tasks related to one task or workflow (by id), from an index: where the task and
    workflow pages link when they show only the first of many. Listed while chosen."""

    def lookups(self, request, model_admin):
        return [(self.value(), f"#{self.value()}")] if self.value() else []

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        pk = states.parse_id(self.value())
        return queryset.none() if pk is None else queryset.filter(self.related(pk))

    def related(self, pk: int) -> Q:
        raise NotImplementedError


class RunsAfterFilter(RelatedToTaskFilter):
    title = "runs after task"  # its children
    parameter_name = "after"

    def related(self, pk: int) -> Q:
        return Q(pk__in=TaskDependency.objects.filter(parent_id=pk).values("child_id"))


class RunsBeforeFilter(RelatedToTaskFilter):
    title = "runs before task"  # its parents
    parameter_name = "before"

    def related(self, pk: int) -> Q:
        return Q(pk__in=TaskDependency.objects.filter(child_id=pk).values("parent_id"))


class WorkflowFilter(RelatedToTaskFilter):
    title = "workflow"
    parameter_name = "workflow"

    def related(self, pk: int) -> Q:
        return Q(workflow_id=pk)
