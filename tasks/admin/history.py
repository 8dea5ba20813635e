"""The history of every task in one read-only list: who cancelled what, which worker was
lost, what failed with which error. Fast on tens of millions of rows: newest first by
primary key (no sorting by other columns), the planner's estimate instead of COUNT(*)
(paging.EstimatedCountPaginator), filters whose choices are fixed lists, and an index on
(event_type, id) so one kind of event is a short index walk however rare it is.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from tasks import authz, states
from tasks.admin.display import timestamp
from tasks.admin.filters import StorableValueFilter
from tasks.admin.paging import EstimatedCountPaginator
from tasks.models import TaskHistory, Worker


class HistoryWorkerFilter(StorableValueFilter):
    title = "worker"
    parameter_name = "worker"

    def lookups(self, request, model_admin):
        names = set(Worker.objects.values_list("id", flat=True))
        if self.value():
            names.add(self.value())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(worker_id=self.value()) if self.value() else queryset


@admin.register(TaskHistory)
class TaskHistoryAdmin(admin.ModelAdmin):
    list_display = ("id", "when", "task_link", "event_type", "status", "attempt",
                    "worker_id", "error_class", "details_short")
    list_display_links = None
    list_filter = ("event_type", "status", HistoryWorkerFilter)
    search_fields = ("=worker_id",)  # and a number means a task: get_search_results
    search_help_text = "A number shows that task's history; other text a worker id."
    ordering = ("-id",)
    sortable_by = ()
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 200
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    class Media:
        css = {"all": ["tasks/admin.css"]}
        js = ["tasks/localtime.js"]

    @admin.display(description="when")
    def when(self, row: TaskHistory) -> str:
        return timestamp(row.created_at, precise=True, compact=True)

    @admin.display(description="task")
    def task_link(self, row: TaskHistory) -> str:
        return format_html('<a href="{}">#{}</a>',
                           reverse("admin:tasks_task_change", args=[row.task_id]), row.task_id)

    @admin.display(description="details")
    def details_short(self, row: TaskHistory) -> str:
        text = row.error_message or row.details
        return format_html('<span class="task-history-details" title="{}">{}</span>', text,
                           text)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        scope = authz.owner_scope(request.user)
        return queryset if scope is None else queryset.filter(task__owner_id=scope)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().removeprefix("#")
        if term.isascii() and term.isdigit():
            task_id = states.parse_id(term)
            return (queryset.filter(task_id=task_id) if task_id else queryset.none()), False
        return super().get_search_results(request, queryset, search_term)

    def has_view_permission(self, request, obj=None) -> bool:
        return authz.may(request.user, "view")  # as for tasks; scoped by get_queryset

    def has_module_permission(self, request) -> bool:
        return authz.may(request.user, "view")

    def has_add_permission(self, request) -> bool:
        return False  # the engine writes history

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # history goes with its task (delete finished, the pruner)
