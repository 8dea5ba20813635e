"""How a task's fields read on the admin's pages: badges the live script updates, JSON
shown bounded, run times, and the one date format (tasks/static/tasks/localtime.js shows
each <time> in the reader's locale and time zone; the ISO form is on hover)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from tasks import jsonsafe
from tasks.models import Status, Task


def status_badge(status: str, task_id: int | None = None) -> str:
    """A coloured badge; `data-task-id` lets the live script update it in place."""
    return format_html('<span class="task-status task-status-{}" data-task-id="{}">{}</span>',
                       status, task_id or "", status)


PRETTY_MAX_CHARS = 20_000  # per value on the task page; the API has the whole of it


def pretty(value: Any) -> str:
    if value is None or value == "":
        return format_html('<span class="task-empty">{}</span>', "—")
    if isinstance(value, str):
        text = value
    elif jsonsafe.depth_exceeds(value, jsonsafe.max_depth()):
        # Indenting N levels costs N^2 characters, and json.dumps recurses.
        return truncated("", f"nested deeper than {jsonsafe.max_depth()} levels: not shown")
    else:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    if len(text) > PRETTY_MAX_CHARS:
        return truncated(text[:PRETTY_MAX_CHARS],
                          f"truncated: the first {PRETTY_MAX_CHARS:,} of {len(text):,} "
                          f"characters are shown")
    return format_html('<pre class="task-pre">{}</pre>', text)


def truncated(text: str, note: str) -> str:
    return format_html('<pre class="task-pre">{}</pre><p class="task-truncated">{}</p>',
                       text, note)


def timestamp(value: datetime.datetime | None, *, precise: bool = False,
              compact: bool = False) -> str:
    """A point in time, the same way on every page: server-rendered in the site's time
    zone (read without JavaScript), rewritten by localtime.js into the reader's, the ISO
    form on hover. `precise` keeps milliseconds (a task's transitions are often within one
    second); `compact` (list columns) drops what the reader knows: the date of today, the
    year and seconds of another day."""
    if value is None:
        return format_html('<span class="task-empty">{}</span>', "—")
    iso = value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    local = timezone.localtime(value)
    if compact:
        today = local.date() == timezone.localdate()
        text = local.strftime("%H:%M:%S" if today else "%m-%d %H:%M")
        if today and precise:
            text = local.strftime("%H:%M:%S.%f")[:-3]
        flag = " data-compact data-precise" if precise else " data-compact"
    elif precise:
        text, flag = local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], " data-precise"
    else:
        text, flag = local.strftime("%Y-%m-%d %H:%M:%S"), ""
    return format_html('<time class="task-time" datetime="{}" title="{}"{}>{}</time>', iso,
                       iso, mark_safe(flag), text)


def date_display(field: str, description: str | None = None):
    """A ModelAdmin's read-only column or field showing the object's date `field` in the one
    date format (timestamp); described as the field's name with spaces by default."""
    def show(self, obj: Any) -> str:
        return timestamp(getattr(obj, field))
    show.short_description = description or field.replace("_", " ")
    show.__name__ = f"{field}_when"
    return show


def seconds_text(seconds: float) -> str:
    """A span of time, short: 4.2s, 3m 07s, 2h 05m, 3d 04h."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def duration(task: Task) -> str:
    if not task.started_at:
        return "—"
    end = task.finished_at or (timezone.now() if task.status == Status.RUNNING else None)
    if end is None:
        return "—"
    return seconds_text((end - task.started_at).total_seconds())


def progress(value: dict | None) -> str:
    """What the plugin last reported: `done / total (pct) message`, or a dash."""
    if not value:
        return format_html('<span class="task-empty">{}</span>', "—")
    done, total = value.get("done"), value.get("total")
    amount = f"{done:g}" if isinstance(done, (int, float)) else "?"
    if isinstance(total, (int, float)) and total:
        amount += f" / {total:g} ({100 * done / total:.0f}%)" \
            if isinstance(done, (int, float)) else f" / {total:g}"
    return format_html('<span class="task-progress">{}</span> {}', amount,
                       value.get("message") or "")


def task_table(rows: list[Task], parents: dict[int, list[int]] | None = None) -> str:
    """Tasks as a table (id linked to its page, name, type, status badge, and with
    `parents`, the ids each one runs after)."""
    if not rows:
        return format_html('<span class="task-empty">{}</span>', "—")
    def link(pk: int) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("admin:tasks_task_change",
                                                          args=[pk]), pk)

    head = "<th>task</th><th>name</th><th>type</th><th>status</th>"
    if parents is not None:
        head += "<th>after</th>"
    body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>", (
        (link(t.pk), t.name, t.type, status_badge(t.status, t.pk),
         format_html("<td>{}</td>", format_html_join(", ", "{}", (
             (link(p),) for p in parents.get(t.pk, [])))) if parents is not None else "")
        for t in rows))
    return format_html('<table class="task-steps"><thead><tr>{}</tr></thead>'
                       "<tbody>{}</tbody></table>", mark_safe(head), body)  # noqa: S308 - constant
