"""The history of every task in one read-only list: who cancelled what, which worker was
lost, what failed with which error. Fast on tens of millions of rows: newest first by
primary key (no sorting by other columns), the planner's estimate instead of COUNT(*)
(paging.EstimatedCountPaginator), filters whose choices are fixed lists, and each page's
reads bounded whatever the filter (HistoryWindowFilter):

- no filter, or one kind of event: a walk of the primary key or of (event_type, id);
- one task (a number searched): that task's rows, from (task_id, created_at);
- status or worker, which no index serves (task_history takes none for them: each is paid
  on every transition): a window of the newest SCAN_ROWS rows, with older windows a link
  away;
- a user who sees only their own tasks: the history of their OWN_TASKS latest tasks, found
  through the tasks' owner index, with older tasks a link away.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Max, Subquery
from django.urls import reverse
from django.utils.html import format_html

from tasks import authz, states
from tasks.admin.display import timestamp
from tasks.admin.filters import StorableValueFilter
from tasks.admin.paging import EstimatedCountPaginator
from tasks.models import Task, TaskHistory, Worker

SCAN_ROWS = 100_000  # history rows a filter no index serves reads, at most, per page
OWN_TASKS = 1_000  # a user who sees only their own tasks: the history of this many
UNINDEXED = ("status__exact", "worker")  # the filters no index of task_history serves


def _searched_task(request) -> bool:
    term = request.GET.get("q", "").strip().removeprefix("#")
    return term.isascii() and term.isdigit()


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


class HistoryWindowFilter(admin.ListFilter):
    """Which rows the list reads (the module's docstring says why): `?before=<history id>`
    moves the window of a filter no index serves, `?tasks_before=<task id>` a scoped user's
    window of tasks. Shown, with older and newest links, while a window applies."""

    title = "rows read"
    template = "admin/tasks/taskhistory/window_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.before = self._id(params, "before")
        self.tasks_before = self._id(params, "tasks_before")
        self.scope = authz.owner_scope(request.user)
        term = request.GET.get("q", "").strip()
        self.slow = any(request.GET.get(k) for k in UNINDEXED) or (
            bool(term) and not _searched_task(request))
        if _searched_task(request):
            self.mode = None  # one task's rows: its index bounds them
        elif self.scope is not None:
            self.mode = "tasks"
        else:
            self.mode = "ids" if self.slow or self.before else None
        self.window: Any = None

    def _id(self, params, name: str) -> int | None:
        if name not in params:
            return None
        raw = params.pop(name)[-1]
        value = states.parse_id(raw)
        if value is None:
            raise IncorrectLookupParameters(f"{name} must be an id, not {raw!r}")
        self.used_parameters[name] = raw
        return value

    def expected_parameters(self) -> list[str]:
        return ["before", "tasks_before"]

    def has_output(self) -> bool:
        return self.mode is not None

    def queryset(self, request, queryset):
        if self.mode == "ids":
            newest = TaskHistory.objects.aggregate(n=Max("id"))["n"] or 0
            high = min(self.before, newest) if self.before else newest
            low = max(0, high - SCAN_ROWS) if self.slow else 0
            self.window = (low, high)
            return queryset.filter(id__gt=low, id__lte=high)
        if self.mode == "tasks":
            mine = Task.objects.filter(owner_id=self.scope)
            if self.tasks_before:  # older than that task, in (created_at, id) order
                at = Subquery(Task.objects.filter(pk=self.tasks_before, owner_id=self.scope)
                              .values("created_at")[:1])
                mine = mine.filter(created_at__lte=at).exclude(created_at=at,
                                                                pk__gte=self.tasks_before)
            ids = list(mine.order_by("-created_at", "-id").values_list("pk", flat=True)
                       [:OWN_TASKS])
            self.window = ids
            return queryset.filter(task_id__in=ids)
        return queryset

    def choices(self, changelist):
        drop = self.expected_parameters()
        if self.mode == "ids":
            low, high = self.window
            yield {"selected": True, "query_string": "", "display": (
                f"ids #{low + 1:,} to #{high:,}" + (
                    f" (at most {SCAN_ROWS:,} rows: no index serves this filter)"
                    if self.slow else ""))}
            if low > 0:
                yield {"selected": False, "display": "older rows",
                       "query_string": changelist.get_query_string({"before": low}, drop)}
        else:
            ids = self.window or []
            yield {"selected": True, "query_string": "", "display": (
                f"the history of your {len(ids):,} "
                f"{'latest' if not self.tasks_before else 'next older'} tasks")}
            if len(ids) == OWN_TASKS:
                yield {"selected": False, "display": "older tasks",
                       "query_string": changelist.get_query_string(
                           {"tasks_before": ids[-1]}, drop)}
        if self.before or self.tasks_before:
            yield {"selected": False, "display": "newest",
                   "query_string": changelist.get_query_string({}, drop)}


@admin.register(TaskHistory)
class TaskHistoryAdmin(admin.ModelAdmin):
    list_display = ("id", "when", "task_link", "event_type", "status", "attempt",
                    "worker", "error_class", "details_short")
    list_display_links = None
    list_filter = ("event_type", "status", HistoryWorkerFilter, HistoryWindowFilter)
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

    @admin.display(description="worker")
    def worker(self, row: TaskHistory) -> str:
        # host:pid:suffix can be long: cut to one line, the whole id on hover.
        return format_html('<span class="task-history-worker" title="{}">{}</span>',
                           row.worker_id, row.worker_id)

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
