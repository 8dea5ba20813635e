from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The REST API as an app of its own, so its system checks register at startup."""

    name = "tasks.api"
    label = "tasks_api"
    verbose_name = "Task Service API"

    def ready(self) -> None:
        from tasks.api import checks  # noqa: F401 - registers the checks
