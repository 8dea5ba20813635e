"""The pages of the tasks app that a project includes: the live dashboard, /health,
/metrics and /favicon.ico (the admin links no icon of its own). Include it before the
admin's own URLs, which would otherwise answer admin/dashboard/:

    urlpatterns = [
        path("", include("tasks.urls")),
        path("api/", include("tasks.api.urls")),  # optional: the REST API
        path("admin/", admin.site.urls),
    ]

The dashboard's live updates also need the websocket routes of tasks.live.routing in the
project's ASGI application.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path, re_path

from tasks import views
from tasks.live.page import charts_view, dashboard_view
from tasks.metrics import metrics_view

urlpatterns = [
    re_path(r"^health/?$", views.health, name="health"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="tasks-dashboard"),
    path("admin/dashboard/charts/", admin.site.admin_view(charts_view),
         name="tasks-dashboard-charts"),
]
