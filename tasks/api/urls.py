"""/api/ routes; every path works with and without a trailing slash."""

from __future__ import annotations

from django.urls import re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from tasks.api.queues import QueueViewSet
from tasks.api.schedules import ScheduleViewSet
from tasks.api.views import StatsView, TaskViewSet, not_found

router = SimpleRouter()
router.trailing_slash = "/?"  # the regex routes accept both /api/tasks and /api/tasks/
router.register("tasks", TaskViewSet, basename="task")
router.register("queues", QueueViewSet, basename="queue")
router.register("schedules", ScheduleViewSet, basename="schedule")

urlpatterns = [
    re_path(r"^stats/?$", StatsView.as_view(), name="api-stats"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
    re_path(r"", not_found),
]
