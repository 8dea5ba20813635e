"""Template filters for the one date format and short spans of time (tasks.admin.display)."""

from __future__ import annotations

import datetime

from django import template

from tasks import authz, selectors
from tasks.admin.display import seconds_text, timestamp
from tasks.models import Status, Task

register = template.Library()


@register.filter
def when(value) -> str:
    """A datetime, or its ISO text (the dashboard's JSON), as a <time> element."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
    return timestamp(value)


@register.filter
def span(seconds) -> str:
    """Seconds as 4.2s, 3m 07s, 2h 05m; "—" for None."""
    return "—" if seconds is None else seconds_text(float(seconds))


@register.simple_tag(takes_context=True)
def task_counts(context) -> list[tuple[str, int]]:
    """Tasks per status as the request's user may see them (all, or their own), for the
    admin index; [] without tasks.view_task."""
    user = context["request"].user
    if not authz.may(user, "view"):
        return []
    counts = selectors.status_counts(selectors.owned(Task.objects.all(),
                                                     authz.owner_scope(user)))
    return [(status, counts[status]) for status in Status.values]
