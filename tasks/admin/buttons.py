"""The buttons of a task's page: Cancel, Retry and Run now, each a POST that asks
tasks.engine and comes back to the page with what happened."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from tasks import engine
from tasks.exceptions import InvalidTransition, TaskNotFound
from tasks.models import Status, Task


class TaskButtons:
    """Mixed into TaskAdmin: the buttons' URLs and views (permissions are TaskAdmin's)."""

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:task_id>/cancel/", wrap(self.cancel_view), name="tasks_task_cancel"),
            path("<int:task_id>/retry/", wrap(self.retry_view), name="tasks_task_retry"),
            path("<int:task_id>/run-now/", wrap(self.run_now_view),
                 name="tasks_task_run_now"),
            *self.filtered_urls(),
            *super().get_urls(),
        ]

    def _steer(self, request: HttpRequest, task_id: int, action, done: str,
               allowed: bool) -> HttpResponse:
        get_object_or_404(self.get_queryset(request), pk=task_id)  # another's task: 404
        if not allowed:
            verb = action.__name__.replace("_", " ")
            self.message_user(request, f"You may not {verb} tasks.", messages.ERROR)
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
                elif task.status == Status.WAITING:
                    done = "requeued: it waits for its parents"
                self.message_user(request, f"Task #{task_id} {done}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tasks_task_change", args=[task_id]))

    def cancel_view(self, request, task_id: int) -> HttpResponse:
        return require_POST(lambda r: self._steer(
            r, task_id, engine.cancel, "cancelled", self.has_cancel_permission(r)))(request)

    def retry_view(self, request, task_id: int) -> HttpResponse:
        return require_POST(lambda r: self._steer(
            r, task_id, engine.retry, "requeued", self.has_retry_permission(r)))(request)

    def run_now_view(self, request, task_id: int) -> HttpResponse:
        return require_POST(lambda r: self._steer(
            r, task_id, engine.run_now, "made due now", self.has_retry_permission(r)))(request)
