"""The task pages: the list (search, filters, live statuses), the read-only task page with
its history, the add form, and the Cancel / Retry buttons.

Every change of a task's state goes through tasks.engine (cancel, retry, enqueue, delete); the
admin only reads tasks, and deletes finished ones.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation, IncorrectLookupParameters
from django.db.models import F
from django.db.models.functions import Coalesce, Now
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from tasks import authz, jsonsafe, states, workflow_selectors
from tasks.admin import search
from tasks.admin.actions import BulkActions
from tasks.admin.buttons import TaskButtons
from tasks.admin.display import (
    date_display,
    duration,
    pretty,
    progress,
    status_badge,
    task_table,
    timestamp,
)
from tasks.admin.filtered import FilteredActions
from tasks.admin.filters import (
    QueueFilter,
    RunsAfterFilter,
    RunsBeforeFilter,
    TypeFilter,
    WorkerFilter,
    WorkflowFilter,
)
from tasks.admin.forms import TaskAddForm
from tasks.admin.paging import EstimatedCountPaginator, TaskChangeList, date_hierarchy_links
from tasks.admin.runs import TaskHistoryInline, run_context
from tasks.exceptions import IdempotencyConflict, InvalidTask
from tasks.models import Status, Task

DEPENDENCIES_SHOWN = 200  # parents, and children, on a task page; the rest in the list
DATE_FIELDS = ("run_at", "locked_until", "cancel_requested_at", "created_at", "updated_at",
               "started_at", "finished_at")
DEPENDENCY_FIELDS = ("workflow_display", "on_parent_failure", "parents_display",
                     "children_display")
ENGINE_FIELDS = ("attempts", "retry_count", "max_retries", "timeout_seconds", "run_at_when",
                 "locked_by", "locked_until_when", "cancel_requested_at_when",
                 "idempotency_key", "created_at_when", "updated_at_when", "started_at_when",
                 "finished_at_when")


@admin.register(Task)
class TaskAdmin(TaskButtons, FilteredActions, BulkActions, admin.ModelAdmin):
    list_display = ("id", "name_display", "type_display", "status_display", "priority_short",
                    "queue", "retries", "created", "started", "run_time")
    list_display_links = ("id",)  # and the name: name_display is its own link
    # The last three are listed only while chosen: the task and workflow pages link them.
    list_filter = ("status", TypeFilter, QueueFilter, WorkerFilter, "created_at",
                   RunsAfterFilter, RunsBeforeFilter, WorkflowFilter)
    # And a number means an id, key=value a payload: get_search_results (admin/search.py).
    search_fields = ("name", "type")
    search_help_text = search.HELP
    date_hierarchy = "created_at"
    ordering = ("-id",)
    # Each sort but run time reads an index ((column, id): TaskChangeList); run time is
    # computed (a running task's grows), so it sorts the rows the filter leaves.
    sortable_by = ("id", "status_display", "priority_short", "queue", "created", "started",
                   "run_time")
    # Facet counts are a COUNT per filter choice on every page load: never on this table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 500
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["cancel_selected", "retry_selected", "delete_selected_finished"]
    form = TaskAddForm

    class Media:
        css = {"all": ["tasks/admin.css"]}
        js = ["tasks/localtime.js", "tasks/live.js", "tasks/task_live.js"]

    # --- columns ---

    @admin.display(description="status", ordering="status")
    def status_display(self, task: Task) -> str:
        return status_badge(task.status, task.pk)

    @admin.display(description="name", ordering="name")
    def name_display(self, task: Task) -> str:
        # Cut to one line by CSS; the whole name on hover.
        return format_html('<a class="task-name" href="{}" title="{}">{}</a>',
                           reverse("admin:tasks_task_change", args=[task.pk]), task.name,
                           task.name)

    @admin.display(description="prio", ordering="priority")
    def priority_short(self, task: Task) -> int:
        return task.priority  # a narrow header: the list must fit a laptop's screen

    @admin.display(description="type", ordering="type")
    def type_display(self, task: Task) -> str:
        return format_html('<span class="task-type" title="{}">{}</span>', task.type,
                           task.type)

    @admin.display(description="created", ordering="created_at")
    def created(self, task: Task) -> str:
        return timestamp(task.created_at, compact=True)

    # Not yet started counts as earliest / shortest: a descending sort (latest, longest
    # first) ends with the waiting tasks, and the admin flips NULLS along with the order.
    @admin.display(description="started", ordering=F("started_at").asc(nulls_first=True))
    def started(self, task: Task) -> str:
        return timestamp(task.started_at, compact=True)

    @admin.display(description="retries")
    def retries(self, task: Task) -> str:
        return format_html('<span data-task-retries="{}">{}/{}</span>', task.pk,
                           task.retry_count, task.max_retries)

    @admin.display(description="run time", ordering=(
        Coalesce("finished_at", Now()) - F("started_at")).asc(nulls_first=True))
    def run_time(self, task: Task) -> str:
        return duration(task)

    @admin.display(description="payload")
    def payload_display(self, task: Task) -> str:
        return pretty(task.payload)

    @admin.display(description="result")
    def result_display(self, task: Task) -> str:
        return pretty(task.result)

    @admin.display(description="last error")
    def error_display(self, task: Task) -> str:
        return pretty(task.last_error)

    @admin.display(description="progress")
    def progress_display(self, task: Task) -> str:
        return format_html('<span data-task-progress="{}">{}</span>', task.pk,
                           progress(task.current_progress))

    @admin.display(description="runs after")
    def parents_display(self, task: Task) -> str:
        return self._linked(task, "parents", "before")

    @admin.display(description="runs before")
    def children_display(self, task: Task) -> str:
        return self._linked(task, "children", "after")

    def _linked(self, task: Task, side: str, parameter: str) -> str:
        """The first DEPENDENCIES_SHOWN parents or children, and a link to all of them."""
        links = getattr(task, "links", None) or {side: [], f"{side}_total": 0}
        table = task_table(links[side])
        more = links[f"{side}_total"] - len(links[side])
        if more <= 0:
            return table
        url = reverse("admin:tasks_task_changelist") + "?" + urlencode({parameter: task.pk})
        return format_html('{}<p class="task-truncated">The first {} of {} are shown; '
                           '<a href="{}" class="task-{}-all">{} more in the task list</a>.</p>',
                           table, len(links[side]), links[f"{side}_total"], url, side, more)

    @admin.display(description="workflow")
    def workflow_display(self, task: Task) -> str:
        if task.workflow_id is None:
            return format_html('<span class="task-empty">{}</span>', "—")
        return format_html('<a href="{}">workflow #{}</a>', reverse(
            "admin:tasks_workflow_change", args=[task.workflow_id]), task.workflow_id)

    # --- list page: search and date drill-down without table scans ---

    def get_search_results(self, request, queryset, search_term):
        if jsonsafe.text_problem(search_term):
            return queryset.none(), False  # no name holds what PostgreSQL cannot store
        term = search_term.strip().removeprefix("#")
        if term.isascii() and term.isdigit():
            # A number is a task id: one index lookup, not a scan of every name.
            task_id = states.parse_id(term)
            return (queryset.filter(pk=task_id) if task_id else queryset.none()), False
        payload = search.payload_query(search_term)
        if payload is not None:
            return queryset.filter(payload), False
        return super().get_search_results(request, queryset, search_term)

    def changelist_view(self, request, extra_context=None):
        params = request.GET.copy()
        params.pop("p", None)
        extra_context = {**(extra_context or {}), "filter_verbs": self.filter_verbs(request),
                         "filter_query": params.urlencode()}
        return super().changelist_view(request, extra_context)

    def get_changelist(self, request, **kwargs):
        return TaskChangeList

    def get_changelist_instance(self, request):
        try:
            cl = super().get_changelist_instance(request)
            cl.task_dates = date_hierarchy_links(cl)
        except (ValueError, OverflowError) as exc:
            # Django's date drill-down computes the end of ?created_at__year=9999 as year
            # 10000; the changelist answers bad parameters with its "?e=1" page instead.
            raise IncorrectLookupParameters(exc) from exc
        return cl

    # --- permissions (tasks.authz): engine fields are never edited here ---

    def get_queryset(self, request):
        # Without tasks.view_all_tasks a user sees (and so steers) only their own tasks.
        return authz.visible(super().get_queryset(request), request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        # Tasks change only through the queue (the Cancel / Retry buttons and actions),
        # so the change page is a read-only view and Save never overwrites a worker.
        return False

    def has_cancel_permission(self, request) -> bool:
        return authz.may(request.user, "cancel")

    def has_retry_permission(self, request) -> bool:
        return authz.may(request.user, "retry")

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and not obj.is_finished:
            return False  # cancel it first; a running task is held by a worker
        return super().has_delete_permission(request, obj)

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location=action_location)
        actions.pop("delete_selected", None)  # ours reports what it skipped, and why
        return actions

    # --- pages ---

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": TaskAddForm.Meta.fields})]
        return [
            (None, {"fields": ("name", "type", "status_display", "queue", "priority")}),
            ("Payload and outcome", {"fields": ("payload_display", "result_display",
                                                "error_display", "progress_display")}),
            ("Dependencies", {"fields": DEPENDENCY_FIELDS}),
            ("Engine", {"fields": ENGINE_FIELDS, "classes": ("collapse",)}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:  # the read-only task page needs no add form
            kwargs["form"] = forms.ModelForm
        else:
            kwargs["form"] = type("TaskAddForm", (TaskAddForm,), {"user": request.user})
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("name", "type", "status_display", "queue", "priority", "payload_display",
                "result_display", "error_display", "progress_display", *DEPENDENCY_FIELDS,
                *ENGINE_FIELDS)

    def get_inlines(self, request, obj):
        return [TaskHistoryInline] if obj is not None else []

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        # The task page's own parts, from the task the change view has already read once.
        if obj is not None:
            obj.links = workflow_selectors.dependencies(obj, request.user,
                                                        limit=DEPENDENCIES_SHOWN)
            context.update(run_context(obj))
        context.update(
            can_cancel=self.has_cancel_permission(request) and states.can("cancel", obj),
            can_retry=self.has_retry_permission(request) and states.can("retry", obj),
            can_run_now=self.has_retry_permission(request) and states.can("run_now", obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change) -> None:
        if change:  # unreachable while has_change_permission is False; never save a task
            return
        try:
            task = form.enqueue()
        except InvalidTask as exc:  # a parent gone since the form was checked
            obj.pk, obj.was_created, obj.conflict = None, False, str(exc)
            obj.name = form.spec.get("name", "")
        except IdempotencyConflict as exc:
            # The key names another task: show that one, and say why nothing was queued.
            obj.pk, obj.was_created, obj.conflict = exc.task_id, False, str(exc)
        else:
            for f in Task._meta.concrete_fields:
                setattr(obj, f.attname, getattr(task, f.attname))
            obj.was_created = task.was_created
        obj._state.adding = False

    def save_related(self, request, form, formsets, change) -> None:
        pass  # nothing related is edited here; the queue wrote the history row

    def log_addition(self, request, obj, message):
        if getattr(obj, "was_created", True):  # a reused key added nothing
            return super().log_addition(request, obj, message)
        return None

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(obj, "conflict", None):
            self.message_user(request, f"Nothing was queued: {obj.conflict}", messages.ERROR)
            if obj.pk is None:
                return HttpResponseRedirect(reverse("admin:tasks_task_add"))
        elif obj.status == Status.WAITING:
            self.message_user(request, format_html(
                "Task #{} “{}” is waiting for its parents.", obj.pk, obj.name),
                messages.SUCCESS)
        elif not obj.was_created:
            self.message_user(request, format_html(
                "Nothing was queued: the idempotency key belongs to task #{}.", obj.pk),
                messages.WARNING)
        else:
            self.message_user(request, format_html("Task #{} “{}” queued.", obj.pk, obj.name),
                              messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tasks_task_change", args=[obj.pk]))


for _name in DATE_FIELDS:  # the task page's read-only dates
    setattr(TaskAdmin, f"{_name}_when", date_display(_name))
