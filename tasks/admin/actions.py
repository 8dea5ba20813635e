"""The task list's bulk actions: a confirmation page saying what would be done and what
skipped, then the engine's bulk verbs, then a report grouped by reason."""

from __future__ import annotations

from collections import defaultdict

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from tasks import engine, selectors, states
from tasks.models import Status, Task

MAX_BULK = 5000  # tasks one action may touch; beyond it, filter the list first
SKIPPED_IDS_SHOWN = 10


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


def stopping_ids(cancelled: list[int]) -> set[int]:
    """Those of the tasks a cancel took that are still running: asked to stop, they end
    `cancelled` when their worker stops them."""
    return {pk for pk, (status, *_) in selectors.task_statuses(cancelled).items()
            if status == Status.RUNNING}


def stopping_note(stopping: set[int]) -> list[str]:
    return ([f"{len(stopping)} stopping (running: its worker will end it as cancelled)"]
            if stopping else [])


class BulkActions:
    """TaskAdmin's actions (mixed into it): cancel, retry and delete the selected tasks."""

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
                return "" if task.status in states.sources("cancel") else \
                    f"already {task.status}"
            return self._confirm(request, queryset, action="cancel_selected",
                                 title="Cancel tasks?", verb="cancel", plan=plan)
        ids = self._selected_ids(request, queryset)
        if ids is None:
            return None
        result = engine.cancel_many(ids, reason=f"cancelled by {request.user.get_username()} "
                                               "in the admin")
        stopping = stopping_ids(result.done)
        text = bulk_report("cancelled", len(result.done) - len(stopping), result.skipped,
                           stopping_note(stopping))
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
