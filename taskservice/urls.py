from django.contrib import admin
from django.urls import include, path, re_path

from tasks import views
from tasks.live.page import charts_view, dashboard_view
from tasks.metrics import metrics_view

urlpatterns = [
    re_path(r"^health/?$", views.health, name="health"),
    path("favicon.ico", views.favicon, name="favicon"),
    # --- REST API (issue 3) ---
    path("api/", include("tasks.api.urls")),
    # --- Live dashboard (issue 4) ---
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="tasks-dashboard"),
    path("admin/dashboard/charts/", admin.site.admin_view(charts_view),
         name="tasks-dashboard-charts"),
    # --- Production: metrics (issue 5) ---
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]

handler500 = "tasks.api.exceptions.server_error"
