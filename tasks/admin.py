"""The Django admin as the operator's console: tasks, their history, workers, dashboard.

Every change of a task's state goes through tasks.queue (cancel, retry, enqueue); the
admin only reads tasks with the ORM, and deletes finished ones. Pages stay cheap on a
million rows: no full-table COUNT(*) (the paginator uses the planner's estimate above a
threshold), filter choices and the date drill-down come from indexes and planner
statistics, a number searches the id index, and only indexed columns sort. Measured by
bench/admin_list.py.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation, IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, IntegerField, Max, Min, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from plugins import registry
from tasks import authz, dashboard, engine, jsonsafe, states
from tasks.exceptions import IdempotencyConflict, InvalidTask, InvalidTransition, TaskNotFound
from tasks.models import Origin, Status, Task, TaskHistory, Worker

MAX_BULK = 5000  # tasks one action may touch; beyond it, filter the list first
SKIPPED_IDS_SHOWN = 10


# --- paging without full-table counts --------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """Counts exactly only when the planner expects few rows.

    COUNT(*) reads every matching row; on a million tasks that is most of a page's time.
    Above ESTIMATE_THRESHOLD rows the planner's estimate is used instead: pg_class's
    row count for the unfiltered table, EXPLAIN's for a filtered one. The page then says
    "about N" (see templates/admin/tasks/task/pagination.html).
    """

    ESTIMATE_THRESHOLD = 10_000
    estimated = False

    @cached_property
    def count(self) -> int:
        estimate = self._estimate()
        if estimate is not None and estimate > self.ESTIMATE_THRESHOLD:
            self.estimated = True
            return estimate
        # Exact, but capped: where the planner guessed low, stop counting at the threshold.
        capped = self.object_list.order_by()[: self.ESTIMATE_THRESHOLD + 1].count()
        if capped > self.ESTIMATE_THRESHOLD:
            self.estimated = True
            return max(capped, estimate or 0)
        return capped

    def _estimate(self) -> int | None:
        qs = self.object_list
        try:
            with connection.cursor() as cursor:
                if not qs.query.where:
                    cursor.execute("SELECT reltuples::bigint FROM pg_class "
                                   "WHERE oid = %s::regclass", [qs.model._meta.db_table])
                    row = cursor.fetchone()
                    # -1: never analysed; fall back to counting.
                    return row[0] if row and row[0] >= 0 else None
                sql, params = qs.query.sql_with_params()
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0]
        except Exception:  # an estimate is an optimisation: count instead
            return None
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


# --- list filters that never scan the table ------------------------------------------


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
        names = set(registry.types()) | set(dashboard.distinct_values("type"))
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


class QueueFilter(StorableValueFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        names = set(dashboard.known_queues())
        if self.value():
            names.add(self.value())  # keep the chosen one listed even if it is rare
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(queue=self.value()) if self.value() else queryset


# --- display helpers -----------------------------------------------------------------


def status_badge(status: str, task_id: int | None = None) -> str:
    """A coloured badge; `data-task-id` lets the live script update it in place."""
    return format_html('<span class="task-status task-status-{}" data-task-id="{}">{}</span>',
                       status, task_id or "", status)


PRETTY_MAX_CHARS = 20_000  # per value on the task page; the API has the whole of it


def _pretty(value: Any) -> str:
    if value is None or value == "":
        return format_html('<span class="task-empty">{}</span>', "—")
    if isinstance(value, str):
        text = value
    elif jsonsafe.depth_exceeds(value, jsonsafe.max_depth()):
        # Indenting N levels costs N^2 characters, and json.dumps recurses.
        return _truncated("", f"nested deeper than {jsonsafe.max_depth()} levels: not shown")
    else:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    if len(text) > PRETTY_MAX_CHARS:
        return _truncated(text[:PRETTY_MAX_CHARS],
                          f"truncated: the first {PRETTY_MAX_CHARS:,} of {len(text):,} "
                          f"characters are shown")
    return format_html('<pre class="task-pre">{}</pre>', text)


def _truncated(text: str, note: str) -> str:
    return format_html('<pre class="task-pre">{}</pre><p class="task-truncated">{}</p>',
                       text, note)


def _duration(task: Task) -> str:
    if not task.started_at:
        return "—"
    end = task.finished_at or (timezone.now() if task.status == Status.RUNNING else None)
    if end is None:
        return "—"
    seconds = max(0.0, (end - task.started_at).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def bulk_report(verb: str, done: int, skipped: dict[int, str],
                extra: list[str] | None = None) -> str:
    """'3 cancelled, 2 skipped: already succeeded (#4, #5)', reasons grouped."""
    parts = [f"{done} {verb}", *(extra or [])]
    if skipped:
        by_reason: dict[str, list[int]] = defaultdict(list)
        for task_id, reason in skipped.items():
            by_reason[reason].append(task_id)
        reasons = []
        for reason, ids in sorted(by_reason.items()):
            shown = ", ".join(f"#{i}" for i in sorted(ids)[:SKIPPED_IDS_SHOWN])
            hidden = len(ids) - SKIPPED_IDS_SHOWN
            more = f" and {hidden} more" if hidden > 0 else ""
            reasons.append(f"{reason} ({shown}{more})")
        parts.append(f"{len(skipped)} skipped: {'; '.join(reasons)}")
    return ", ".join(parts)


def _month_after(day: datetime.datetime) -> datetime.datetime:
    return day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)


def date_hierarchy_links(cl) -> dict[str, Any]:
    """The changelist's "Filter by created at" links, from MIN/MAX on the created_at index.

    Django's own date_hierarchy lists only periods that have rows, with SELECT DISTINCT
    date_trunc(...) over every matching row (a full scan on a big table). This lists every
    year / month / day between the first and the last task of the period shown instead;
    an empty period is one click away from "0 tasks".
    """
    prefix = "created_at__"

    def param(name: str) -> int | None:
        value = cl.params.get(prefix + name)
        return int(value) if value not in (None, "") else None

    try:
        year, month, day = param("year"), param("month"), param("day")
        if year and month and day:
            chosen = datetime.date(year, month, day)
    except (TypeError, ValueError):
        return {"show": False}

    def link(filters: dict) -> str:
        return cl.get_query_string(filters, [prefix])

    ys, ms, ds = prefix + "year", prefix + "month", prefix + "day"
    base = {"show": True, "field_name": "created at"}
    if year and month and day:
        return {**base, "back": {"link": link({ys: year, ms: month}),
                                 "title": capfirst(date_format(chosen, "YEAR_MONTH_FORMAT"))},
                "choices": [{"title": capfirst(date_format(chosen, "MONTH_DAY_FORMAT"))}]}
    tz = timezone.get_current_timezone()
    tasks = Task.objects.all()
    if year:
        start = datetime.datetime(year, month or 1, 1, tzinfo=tz)
        end = _month_after(start) if month else start.replace(year=year + 1)
        tasks = tasks.filter(created_at__gte=start, created_at__lt=end)
    span = tasks.aggregate(first=Min("created_at"), last=Max("created_at"))
    if span["first"] is None:
        return {**base, "choices": []}
    first, last = timezone.localtime(span["first"]), timezone.localtime(span["last"])
    if not year and first.year == last.year:  # start one level down, as Django does
        year = first.year
        if first.month == last.month:
            month = first.month
    if year and month:
        return {**base, "back": {"link": link({ys: year}), "title": str(year)}, "choices": [
            {"link": link({ys: year, ms: month, ds: d}),
             "title": capfirst(date_format(datetime.date(year, month, d), "MONTH_DAY_FORMAT"))}
            for d in range(first.day, last.day + 1)]}
    if year:
        return {**base, "back": {"link": link({}), "title": "All dates"}, "choices": [
            {"link": link({ys: year, ms: m}),
             "title": capfirst(date_format(datetime.date(year, m, 1), "YEAR_MONTH_FORMAT"))}
            for m in range(first.month, last.month + 1)]}
    return {**base, "choices": [{"link": link({ys: y}), "title": str(y)}
                                for y in range(first.year, last.year + 1)]}


# --- the add form --------------------------------------------------------------------


class PayloadField(forms.JSONField):
    """forms.JSONField that does not parse over-deep text (to validate it, or to show it
    again with the form's errors): json.loads recurses, and a RecursionError is a 500."""

    @staticmethod
    def _too_deep(value: Any) -> bool:
        return isinstance(value, str) and jsonsafe.text_depth_exceeds(value,
                                                                      jsonsafe.max_depth())

    def to_python(self, value):
        if self._too_deep(value):
            raise forms.ValidationError(
                f"Nested too deep: a payload may nest at most {jsonsafe.max_depth()} levels "
                f"(TASKS_MAX_JSON_DEPTH).", code="too_deep")
        return super().to_python(value)

    def bound_data(self, data, initial):
        if self._too_deep(data):
            return forms.fields.InvalidJSONInput(data)  # shown again as typed
        value = super().bound_data(data, initial)
        if not isinstance(value, str) and jsonsafe.problem(value, depth_limit=10**9):
            # Dumped again, "\ud800" would be a raw surrogate the page cannot encode.
            return forms.fields.InvalidJSONInput(data)
        return value


class TaskAddForm(forms.ModelForm):
    """Enqueue a task by hand. Validation is the queue's own (tasks.queue.prepare, the
    first step of enqueue), so the form accepts exactly what the API and CLI accept."""

    type = forms.ChoiceField(choices=(), help_text="A registered task type (plugin).")
    payload = PayloadField(
        initial=dict, required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"}),
        help_text="A JSON object; the task type's plugin validates its fields.")
    max_retries = forms.IntegerField(required=False, help_text="Blank: the service default.")
    timeout_seconds = forms.IntegerField(required=False,
                                         help_text="Blank: the service default.")
    idempotency_key = forms.CharField(required=False, max_length=255,
                                      help_text="Optional: a second task with this key is refused.")

    class Meta:
        model = Task
        fields = ["name", "type", "payload", "priority", "queue", "run_at", "max_retries",
                  "timeout_seconds", "idempotency_key"]

    user: Any = None  # set per request by TaskAdmin.get_form: the types it may submit

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = [t for t in registry.types() if authz.may_enqueue(self.user, t)]
        self.fields["type"].choices = [("", "---------")] + [(t, t) for t in allowed]
        self.fields["run_at"].required = False
        self.fields["run_at"].help_text = "Blank: now. Later: the task waits until then."
        self.spec: dict[str, Any] = {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned  # fix the form's own errors (bad JSON, not a number) first
        spec = {name: cleaned.get(name) for name in self.Meta.fields}
        spec["idempotency_key"] = spec["idempotency_key"] or None
        spec["payload"] = {} if spec["payload"] is None else spec["payload"]
        try:
            engine.prepare(**spec)
        except InvalidTask as exc:
            self._add_task_errors(exc.errors)
        else:
            self.spec = spec
        return cleaned

    def enqueue(self) -> Task:
        """Submit the cleaned task as the form's user (IdempotencyConflict propagates)."""
        return engine.enqueue(**self.spec, owner=self.user, origin=Origin.ADMIN)

    def _add_task_errors(self, errors: dict[str, Any]) -> None:
        for name, messages_ in errors.items():
            if name == "payload" and isinstance(messages_, dict):
                # The plugin's own errors, per payload field.
                for key, texts in messages_.items():
                    texts = texts if isinstance(texts, list) else [texts]
                    self.add_error("payload", f"{key}: {' '.join(map(str, texts))}")
                continue
            texts = messages_ if isinstance(messages_, list) else [messages_]
            if name in self.fields:
                self.add_error(name, [str(t) for t in texts])
            else:
                self.add_error(None, f"{name}: {' '.join(map(str, texts))}")


# --- tasks ---------------------------------------------------------------------------


class TaskHistoryInline(admin.TabularInline):
    model = TaskHistory
    fields = ("when", "event_type", "status", "attempt", "worker_id", "details")
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
        # To the millisecond: a task's transitions are often within the same second.
        return timezone.localtime(row.created_at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


ENGINE_FIELDS = ("attempts", "retry_count", "max_retries", "timeout_seconds", "run_at",
                 "locked_by", "locked_until", "cancel_requested_at", "idempotency_key",
                 "created_at", "updated_at", "started_at", "finished_at")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "type", "status_display", "priority", "queue", "retries",
                    "created", "run_time")
    list_display_links = ("id", "name")
    list_filter = ("status", TypeFilter, QueueFilter, "created_at")
    search_fields = ("name", "type")  # and a number means an id: get_search_results
    search_help_text = "A number finds that task id; text searches names and types."
    date_hierarchy = "created_at"
    ordering = ("-id",)
    # Sorting is offered only where an index serves it (id, created_at).
    sortable_by = ("id", "created")
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
        js = ["tasks/live.js", "tasks/task_live.js"]

    # --- columns ---

    @admin.display(description="status", ordering="status")
    def status_display(self, task: Task) -> str:
        return status_badge(task.status, task.pk)

    @admin.display(description="created", ordering="created_at")
    def created(self, task: Task) -> str:
        local = timezone.localtime(task.created_at)
        return format_html('<time datetime="{}">{}</time>', local.isoformat(),
                           local.strftime("%Y-%m-%d %H:%M:%S"))

    @admin.display(description="retries")
    def retries(self, task: Task) -> str:
        return format_html('<span data-task-retries="{}">{}/{}</span>', task.pk,
                           task.retry_count, task.max_retries)

    @admin.display(description="run time")
    def run_time(self, task: Task) -> str:
        return _duration(task)

    @admin.display(description="payload")
    def payload_display(self, task: Task) -> str:
        return _pretty(task.payload)

    @admin.display(description="result")
    def result_display(self, task: Task) -> str:
        return _pretty(task.result)

    @admin.display(description="last error")
    def error_display(self, task: Task) -> str:
        return _pretty(task.last_error)

    # --- list page: search and date drill-down without table scans ---

    def get_search_results(self, request, queryset, search_term):
        if jsonsafe.text_problem(search_term):
            return queryset.none(), False  # no name holds what PostgreSQL cannot store
        term = search_term.strip().removeprefix("#")
        if term.isascii() and term.isdigit():
            # A number is a task id: one index lookup, not a scan of every name.
            task_id = states.parse_id(term)
            return (queryset.filter(pk=task_id) if task_id else queryset.none()), False
        return super().get_search_results(request, queryset, search_term)

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
                                                "error_display")}),
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
                "result_display", "error_display", *ENGINE_FIELDS)

    def get_inlines(self, request, obj):
        return [TaskHistoryInline] if obj is not None else []

    def change_view(self, request, object_id, form_url="", extra_context=None):
        task = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_cancel": bool(task and self.has_cancel_permission(request)
                               and not task.is_finished and task.cancel_requested_at is None),
            "can_retry": bool(task and self.has_retry_permission(request)
                              and task.status in (Status.FAILED, Status.CANCELLED)),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        if change:  # unreachable while has_change_permission is False; never save a task
            return
        try:
            task = form.enqueue()
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
        elif not obj.was_created:
            self.message_user(request, format_html(
                "Nothing was queued: the idempotency key belongs to task #{}.", obj.pk),
                messages.WARNING)
        else:
            self.message_user(request, format_html("Task #{} “{}” queued.", obj.pk, obj.name),
                              messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tasks_task_change", args=[obj.pk]))

    # --- Cancel / Retry buttons on the task page ---

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:task_id>/cancel/", wrap(self.cancel_view), name="tasks_task_cancel"),
            path("<int:task_id>/retry/", wrap(self.retry_view), name="tasks_task_retry"),
            *super().get_urls(),
        ]

    def _steer(self, request: HttpRequest, task_id: int, action, done: str,
               allowed: bool) -> HttpResponse:
        get_object_or_404(self.get_queryset(request), pk=task_id)  # another's task: 404
        if not allowed:
            self.message_user(request, f"You may not {action.__name__} tasks.", messages.ERROR)
        else:
            try:
                task = action(task_id, reason=f"{done} by {request.user.get_username()} "
                                              f"in the admin")
            except TaskNotFound:
                get_object_or_404(Task, pk=task_id)
                raise
            except InvalidTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                if task.status == Status.RUNNING:
                    done = "asked to stop: its worker will end it as cancelled"
                self.message_user(request, f"Task #{task_id} {done}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tasks_task_change", args=[task_id]))

    def cancel_view(self, request, task_id: int) -> HttpResponse:
        return require_POST(lambda r: self._steer(
            r, task_id, engine.cancel, "cancelled", self.has_cancel_permission(r)))(request)

    def retry_view(self, request, task_id: int) -> HttpResponse:
        return require_POST(lambda r: self._steer(
            r, task_id, engine.retry, "requeued", self.has_retry_permission(r)))(request)

    # --- bulk actions ---

    def _selected_ids(self, request, queryset) -> list[int] | None:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: MAX_BULK + 1])
        if len(ids) > MAX_BULK:
            self.message_user(request, f"Select at most {MAX_BULK} tasks at a time (filter "
                                       "the list first). Nothing was changed.", messages.ERROR)
            return None
        return ids

    def _confirm(self, request, queryset, *, action: str, title: str, verb: str,
                 plan) -> TemplateResponse | None:
        """A confirmation page: what would be done and what skipped, before doing it."""
        if self._selected_ids(request, queryset) is None:
            return None  # too many: the list page says so
        tasks = list(queryset.order_by("pk")[:MAX_BULK])
        will, skip = [], []
        for task in tasks:
            reason = plan(task)
            (skip if reason else will).append((task, reason))
        context = {
            **self.admin_site.each_context(request),
            "title": title, "opts": self.model._meta, "action": action, "verb": verb,
            "will": will, "skip": skip, "ids": [t.pk for t in tasks],
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/tasks/task/action_confirmation.html", context)

    def _report(self, request, text: str, done: int, skipped: dict) -> None:
        level = messages.SUCCESS if done and not skipped else messages.WARNING
        self.message_user(request, text, level)

    @admin.action(description="Cancel selected tasks", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        if request.POST.get("post") != "yes":
            def plan(task):
                return "" if not task.is_finished else f"already {task.status}"
            return self._confirm(request, queryset, action="cancel_selected",
                                 title="Cancel tasks?", verb="cancel", plan=plan)
        ids = self._selected_ids(request, queryset)
        if ids is None:
            return None
        result = engine.cancel_many(ids, reason=f"cancelled by {request.user.get_username()} "
                                               "in the admin")
        stopping = set(Task.objects.filter(pk__in=result.done, status=Status.RUNNING)
                       .values_list("pk", flat=True))
        extra = ([f"{len(stopping)} stopping (running: its worker will end it as cancelled)"]
                 if stopping else [])
        text = bulk_report("cancelled", len(result.done) - len(stopping), result.skipped, extra)
        self._report(request, text, len(result.done), result.skipped)
        return None

    @admin.action(description="Retry selected tasks", permissions=["retry"])
    def retry_selected(self, request, queryset):
        ids = self._selected_ids(request, queryset)
        if ids is None:
            return None
        result = engine.retry_many(ids, reason=f"requeued by {request.user.get_username()} "
                                              "in the admin")
        text = bulk_report("requeued", len(result.done), result.skipped)
        self._report(request, text, len(result.done), result.skipped)
        return None

    @admin.action(description="Delete selected finished tasks", permissions=["delete"])
    def delete_selected_finished(self, request, queryset):
        if request.POST.get("post") != "yes":
            def plan(task):
                return "" if task.is_finished else f"still {task.status}: cancel it first"
            return self._confirm(request, queryset, action="delete_selected_finished",
                                 title="Delete tasks?", verb="delete", plan=plan)
        ids = self._selected_ids(request, queryset)
        if ids is None:
            return None
        # The engine re-checks the status while deleting: a task requeued meanwhile stays.
        selected = {t.pk: t for t in Task.objects.filter(pk__in=ids)}
        result = engine.delete_finished(ids)
        self.log_deletions(request, [selected[i] for i in result.done if i in selected])
        deleted_ids, skipped = result.done, result.skipped
        text = bulk_report("deleted", len(deleted_ids), skipped)
        self._report(request, text, len(deleted_ids), skipped)
        return None


# --- workers -------------------------------------------------------------------------


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


# --- the live dashboard page ---------------------------------------------------------


def dashboard_view(request: HttpRequest) -> TemplateResponse:
    """Staff with tasks.view_task (wrapped by admin.site.admin_view in the root URLconf);
    without tasks.view_all_tasks, the figures are of the user's own tasks."""
    if not authz.may(request.user, "view"):
        raise PermissionDenied
    data = dashboard.page_context(owner_id=authz.owner_scope(request.user))
    context = {
        **admin.site.each_context(request),
        "title": "Live dashboard",
        "data": data,
        "status_counts": [(s, data["snapshot"]["counts"].get(s, 0)) for s in Status.values],
        "task_list_url": reverse("admin:tasks_task_changelist"),
        "workers_url": reverse("admin:tasks_worker_changelist"),
        "task_url_template": reverse("admin:tasks_task_change", args=[0]).replace("/0/", "/{id}/"),
    }
    return TemplateResponse(request, "tasks/dashboard.html", context)

