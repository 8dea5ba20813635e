"""The live dashboard page, rendered whole on the server (usable without JavaScript);
tasks/static/tasks/dashboard.js keeps it current over the websocket
(tasks.live.consumers.DashboardConsumer) and re-fetches the range charts
(`charts_view`)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from tasks import authz
from tasks.live import charts, dashboard
from tasks.models import Status

CHARTS_REFRESH_SECONDS = 30


def _allowed(request: HttpRequest) -> int | None:
    """The owner scope of the figures (None: every task); PermissionDenied without
    tasks.view_task."""
    if not authz.may(request.user, "view"):
        raise PermissionDenied
    return authz.owner_scope(request.user)


def _charts_context(request: HttpRequest, owner_id: int | None) -> dict:
    window = charts.chosen_range(request.GET.get("range"))
    return {"charts": charts.charts(window, owner_id), "range": window,
            "ranges": list(charts.RANGES.values()),
            "charts_url": reverse("tasks-dashboard-charts"),
            "charts_refresh": CHARTS_REFRESH_SECONDS}


def dashboard_view(request: HttpRequest) -> TemplateResponse:
    """Staff with tasks.view_task (wrapped by admin.site.admin_view in the root URLconf);
    without tasks.view_all_tasks, the figures are of the user's own tasks."""
    owner_id = _allowed(request)
    data = dashboard.page_context(owner_id=owner_id)
    for worker in data["snapshot"]["workers"]:
        worker["running_shown"] = list(zip(worker["running_ids"], worker["running_progress"],
                                           strict=True))
    context = {
        **admin.site.each_context(request),
        **_charts_context(request, owner_id),
        "title": "Live dashboard",
        "data": data,
        "snapshot": data["snapshot"],
        "status_counts": [(s, data["snapshot"]["counts"].get(s, 0)) for s in Status.values],
        "task_list_url": reverse("admin:tasks_task_changelist"),
        "workers_url": reverse("admin:tasks_worker_changelist"),
        "task_url_template": reverse("admin:tasks_task_change", args=[0]).replace("/0/", "/{id}/"),
        "can_steer_queues": request.user.has_perm("tasks.change_queue"),
    }
    return TemplateResponse(request, "tasks/dashboard.html", context)


def charts_view(request: HttpRequest) -> TemplateResponse:
    """The range charts alone (an HTML fragment), for dashboard.js to refresh them."""
    owner_id = _allowed(request)
    return TemplateResponse(request, "tasks/dashboard_charts.html",
                            _charts_context(request, owner_id))
