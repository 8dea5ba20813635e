"""The live dashboard page, rendered once; tasks/static/tasks/dashboard.js keeps it current
over the websocket (tasks.live.consumers.DashboardConsumer)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from tasks import authz
from tasks.live import dashboard
from tasks.models import Status


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
