"""Acting on every task that matches the list's current filter and search: cancel, retry,
run now, delete finished.

GET shows a preview (how many match and will be changed, up to the cap, how many others
are skipped and why, the first few by id); POST does it in batches of BATCH ids, each
batch one engine statement in its own transaction, then reports like the selected-rows
actions. The set is read again at POST time: the tasks that match when the person confirms.
Only the tasks the verb applies to are taken (a cancel on "type=send_email" takes the
waiting and running ones, not a million finished ones), in id order, at most CAP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import IS_POPUP_VAR, PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from tasks import engine, states
from tasks.admin.actions import bulk_report, stopping_ids, stopping_note
from tasks.models import Status, Task

CAP = 5000  # tasks one act-on-filter request changes at most; the preview says so
BATCH = 500  # ids per engine statement (one transaction each)
SHOWN = 20  # tasks listed by id in the preview


@dataclass(frozen=True)
class Verb:
    name: str  # the URL's verb
    label: str  # the button: "Cancel"
    done: str  # the report: "cancelled"
    permission: str  # TaskAdmin.has_<permission>_permission
    skipped_as: str  # what the others are, in the preview

    def applies(self) -> Q:
        """The tasks this verb changes, as a filter (the engine re-checks each row): the
        statuses tasks.states allows it from, with states.can's extra conditions."""
        if self.name == "delete":  # no transition: the task goes, only once finished
            return Q(status__in=sorted(states.FINISHED))
        allowed = states.sources(self.name)
        if self.name == "cancel":  # a running task already asked to stop is not asked again
            return (Q(status__in=sorted(allowed))
                    & ~Q(status=Status.RUNNING, cancel_requested_at__isnull=False))
        if self.name == "run_now":  # only a deferred task (states.is_deferred)
            return Q(status__in=sorted(allowed), run_at__gt=timezone.now())
        return Q(status__in=sorted(allowed))

    def act(self, ids: list[int], who: str) -> engine.BulkResult:
        if self.name == "cancel":
            return engine.cancel_many(ids, reason=f"cancelled by {who} in the admin (filter)")
        if self.name == "retry":
            return engine.retry_many(ids, reason=f"requeued by {who} in the admin (filter)")
        if self.name == "run_now":
            return engine.run_now_many(ids, reason=f"run now by {who} in the admin (filter)")
        return engine.delete_finished(ids)


VERBS = {v.name: v for v in (
    Verb("cancel", "Cancel", "cancelled", "cancel", "already finished or already stopping"),
    Verb("retry", "Retry", "requeued", "retry", "not failed or cancelled"),
    Verb("run_now", "Run now", "made due now", "retry", "not deferred (already due, running "
                                                        "or finished)"),
    Verb("delete", "Delete finished", "deleted", "delete", "not finished"),
)}


def capped_count(queryset: QuerySet, cap: int = CAP) -> int:
    """How many rows, counting at most cap + 1 (the preview says "more than cap")."""
    return queryset.order_by()[: cap + 1].count()


class FilteredActions:
    """TaskAdmin's act-on-filter pages (mixed into it)."""

    def filtered_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [path("act/<str:verb>/", wrap(self.act_on_filter_view),
                     name="tasks_task_act_on_filter")]

    def filter_verbs(self, request: HttpRequest) -> list[Verb]:
        """The verbs this user may use."""
        return [v for v in VERBS.values()
                if getattr(self, f"has_{v.permission}_permission")(request)]

    def _matching(self, request: HttpRequest) -> QuerySet[Task]:
        """The tasks the list shows with this query string (filters and search), all
        pages, as this user may see them."""
        cl = self.get_changelist_instance(request)
        return cl.queryset.order_by()

    def act_on_filter_view(self, request: HttpRequest, verb: str) -> HttpResponse:
        chosen = VERBS.get(verb)
        if chosen is None:
            return HttpResponseBadRequest(f"Unknown action {verb!r}: one of "
                                          f"{', '.join(VERBS)}.")
        if chosen not in self.filter_verbs(request):
            raise PermissionDenied
        try:
            matching = self._matching(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("The list's filter is not valid.")
        query = request.GET.urlencode()
        back = reverse("admin:tasks_task_changelist") + (f"?{query}" if query else "")
        if request.method == "POST":
            return self._do(request, chosen, matching, back)
        if request.method != "GET":
            return HttpResponse(status=405)
        applies = matching.filter(chosen.applies())
        will = capped_count(applies)
        others = capped_count(matching.exclude(chosen.applies()))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{chosen.label}: every task matching the filter?",
            "opts": self.model._meta, "verb": chosen, "cap": CAP, "batch": BATCH,
            "will": min(will, CAP), "over_cap": will > CAP, "others": min(others, CAP),
            "others_over_cap": others > CAP,
            "shown": list(applies.order_by("pk")[:SHOWN]), "back": back,
            "filters": _describe(request.GET),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/tasks/task/act_on_filter.html", context)

    def _do(self, request: HttpRequest, verb: Verb, matching: QuerySet[Task],
            back: str) -> HttpResponse:
        if request.POST.get("post") != "yes":
            return HttpResponseBadRequest("Confirm on the preview page first.")
        ids = list(matching.filter(verb.applies()).order_by("pk")
                   .values_list("pk", flat=True)[:CAP])
        who = request.user.get_username()
        done: list[int] = []
        skipped: dict[Any, str] = {}
        stopping: set[int] = set()
        for first in range(0, len(ids), BATCH):
            batch = ids[first:first + BATCH]
            before = ({t.pk: t for t in Task.objects.filter(pk__in=batch)}
                      if verb.name == "delete" else {})
            result = verb.act(batch, who)
            done.extend(result.done)
            skipped.update(result.skipped)
            if verb.name == "cancel":
                stopping |= stopping_ids(result.done)
            if before and result.done:
                self.log_deletions(request, [before[i] for i in result.done if i in before])
        extra = stopping_note(stopping)
        if len(ids) >= CAP:
            extra.append(f"capped at {CAP:,}: more match, act again")
        text = bulk_report(verb.done, len(done) - len(stopping), skipped, extra)
        level = messages.SUCCESS if done and not skipped else messages.WARNING
        self.message_user(request, f"Every task matching the filter: {text}", level)
        return HttpResponseRedirect(back)


def _describe(params) -> list[tuple[str, str]]:
    """The filter as (name, value) pairs, for the preview."""
    shown = []
    for key, values in params.lists():
        if key in ("o", PAGE_VAR, IS_POPUP_VAR):
            continue
        label = "search" if key == "q" else key.replace("__exact", "").replace("__", " ")
        shown.extend((label, v) for v in values)
    return shown
