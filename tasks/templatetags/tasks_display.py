"""Template filters for the one date format and short spans of time (tasks.admin.display)."""

from __future__ import annotations

import datetime

from django import template

from tasks.admin.display import seconds_text, timestamp

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
