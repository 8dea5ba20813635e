"""Queues in the admin: every queue with its depth, pause and limits, and a Pause/Resume
button and a limits form per queue. The list is selectors.queues() (queues without a row
show too); every change is an engine verb with the user named in the audit row."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from tasks import engine, selectors
from tasks.exceptions import TaskServiceError
from tasks.models import Queue

LIMIT_FIELDS = ("concurrency_limit", "rate_limit")


def _number(text: str, kind):
    """A form's limit: blank removes it; anything else must parse (the engine checks it)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text  # the engine names the field and the problem


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name="tasks_queue_changelist"),
            path("<str:name>/<str:verb>/", wrap(self.steer_view), name="tasks_queue_steer"),
        ]

    def has_add_permission(self, request) -> bool:
        return False  # a queue exists as soon as a task names it

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Queues",
            "opts": self.model._meta,
            "queues": selectors.queues(),
            "can_change": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/tasks/queue/change_list.html", context)

    def steer_view(self, request, name: str, verb: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        actor = f"{request.user.get_username()} in the admin"
        try:
            if verb == "pause":
                engine.pause_queue(name, actor=actor)
            elif verb == "resume":
                engine.resume_queue(name, actor=actor)
            elif verb == "limits":
                engine.set_queue_limits(
                    name, actor=actor,
                    concurrency_limit=_number(request.POST.get("concurrency_limit"), int),
                    rate_limit=_number(request.POST.get("rate_limit"), float))
            else:
                raise TaskServiceError(f"Unknown action {verb!r}.")
        except TaskServiceError as exc:
            self.message_user(request, f"Queue {name}: {exc}", messages.ERROR)
        else:
            done = {"pause": "paused", "resume": "resumed", "limits": "limits set"}[verb]
            self.message_user(request, f"Queue {name}: {done}.", messages.SUCCESS)
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
            back = reverse("admin:tasks_queue_changelist")  # e.g. from the dashboard
        return HttpResponseRedirect(back)
