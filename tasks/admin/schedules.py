"""Schedules in the admin: next runs, last task and its status; enable, disable and run-now
actions; the add and change forms validate through the engine (a bad payload or cron
expression shows beside its field) and save through it, so each change is audited."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from tasks import authz, engine
from tasks.admin.display import date_display, timestamp
from tasks.exceptions import InvalidTask, TaskServiceError
from tasks.models import Schedule, Task

schedules = engine.schedules
_UNREAD = object()


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = list(schedules.FIELDS)

    def clean(self):
        data = super().clean()
        values = {name: data.get(name) for name in schedules.FIELDS}
        values["cron"] = values["cron"] or ""
        try:
            schedules.validate(values)
        except InvalidTask as exc:
            for field, errors in exc.errors.items():
                target = field if field in self.fields else None
                messages_ = errors if isinstance(errors, list) else [str(errors)]
                for message in messages_:
                    self.add_error(target, str(message))
        return data


def _actor(request) -> str:
    return f"{request.user.get_username()} in the admin"


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "type", "when", "enabled", "next_runs_display", "last_task",
                    "queue")
    list_filter = ("enabled", "type")
    search_fields = ("name",)
    actions = ["enable_selected", "disable_selected", "run_selected_now"]
    readonly_fields = ("next_runs_display", "last_tick_when", "last_task", "created_when",
                       "updated_when")

    class Media:
        js = ["tasks/localtime.js"]  # the one date format (tasks.admin.display.timestamp)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ("name", "type", "payload", "queue", "priority", "max_retries",
                               "timeout_seconds", "enabled")}),
            ("When", {"fields": ("cron", "timezone", "interval_seconds", "missed_ticks")}),
        ]
        if obj is not None:
            fieldsets.append(("Runs", {"fields": self.readonly_fields}))
        return fieldsets

    @admin.display(description="when")
    def when(self, obj: Schedule) -> str:
        return f"{obj.cron} ({obj.timezone})" if obj.cron else f"every {obj.interval_seconds}s"

    @admin.display(description="next runs")
    def next_runs_display(self, obj: Schedule) -> str:
        runs = schedules.next_runs(obj, 3)
        if not runs:
            return "paused"
        return format_html_join(", ", "{}", ((timestamp(t),) for t in runs))

    last_tick_when = date_display("last_tick_at", "last tick")
    created_when = date_display("created_at", "created")
    updated_when = date_display("updated_at", "updated")

    @admin.display(description="last task")
    def last_task(self, obj: Schedule) -> str:
        if obj.last_task_id is None:
            return "—"
        status = getattr(obj, "last_task_status", _UNREAD)
        if status is _UNREAD:  # a schedule not read through get_queryset
            status = Task.objects.filter(pk=obj.last_task_id).values_list(
                "status", flat=True).first()
        if status is None:
            return f"#{obj.last_task_id} (deleted)"
        return format_html('<a href="{}">#{}</a> <span class="task-status task-status-{}">{}'
                           '</span>', reverse("admin:tasks_task_change",
                                              args=[obj.last_task_id]),
                           obj.last_task_id, status, status)

    def get_queryset(self, request):
        # The last task's status comes with the page's own query, not one query a row.
        return super().get_queryset(request).annotate(last_task_status=Subquery(
            Task.objects.filter(pk=OuterRef("last_task_id")).values("status")[:1]))

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data.get(name) for name in schedules.FIELDS}
        fields["cron"] = fields["cron"] or ""
        if change:
            saved = schedules.update(obj.pk, actor=_actor(request), **fields)
        else:
            saved = schedules.create(actor=_actor(request), owner=request.user, **fields)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        schedules.delete(obj.pk, actor=_actor(request))

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            schedules.delete(schedule.pk, actor=_actor(request))

    def _each(self, request, queryset, verb, done: str) -> None:
        count = 0
        for schedule in queryset:
            try:
                verb(schedule.pk, actor=_actor(request))
            except TaskServiceError as exc:
                self.message_user(request, f"{schedule.name}: {exc}", messages.ERROR)
            else:
                count += 1
        self.message_user(request, f"{count} schedule(s) {done}.", messages.SUCCESS)

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_selected(self, request, queryset):
        self._each(request, queryset, schedules.resume, "enabled")

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_selected(self, request, queryset):
        self._each(request, queryset, schedules.pause, "disabled")

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_selected_now(self, request, queryset):
        refused = authz.refused_types(request.user, queryset.values_list("type", flat=True))
        if refused:
            self.message_user(request, f"You may not enqueue tasks of type "
                              f"{', '.join(map(repr, refused))}.", messages.ERROR)
            return
        self._each(request, queryset, schedules.run_now, "enqueued now")
