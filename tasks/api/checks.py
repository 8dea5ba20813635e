"""System checks for the API's security settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def anonymous_api_access(app_configs, **kwargs) -> list[Warning]:
    if not getattr(settings, "TASKS_API_ALLOW_ANONYMOUS", False):
        return []
    return [Warning(
        "TASKS_API_ALLOW_ANONYMOUS is on: anyone who reaches the server can create, read, "
        "cancel and retry tasks through /api/.",
        hint="Unset TASKS_API_ALLOW_ANONYMOUS and give clients tokens "
             "(manage.py createtoken USERNAME).",
        id="tasks_api.W001",
    )]


@register(Tags.security, deploy=True)
def public_metrics(app_configs, **kwargs) -> list[Warning]:
    if not getattr(settings, "TASKS_METRICS_PUBLIC", False):
        return []
    return [Warning(
        "TASKS_METRICS_PUBLIC is on: anyone who reaches the server can read /metrics "
        "(queue names, task types, counts and worker figures).",
        hint="Unset TASKS_METRICS_PUBLIC and set TASKS_METRICS_TOKEN; give Prometheus the "
             "token as a bearer credential.",
        id="tasks_api.W002",
    )]
