"""The dashboard's charts over a chosen range (15 min, 1 h, 24 h): finished tasks
(throughput and failures) and run time p50/p95 by when tasks finished, wait time (due ->
started) p50/p95 by when they started.

Each series is one query over the range only, through the index on finished_at (partial:
a task enters it when it ends, so an enqueue pays nothing) and the (started_at, id) index
(full, shared with the task list's sort by start: an enqueue adds one entry, NULL first):
the cost follows the range's volume, not the table's size. Drawn as plain SVG on the
server, so the charts need no JavaScript and no library (dashboard.js only re-fetches
them).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: datetime.timedelta
    step: datetime.timedelta
    step_label: str


RANGES = {r.key: r for r in (
    Range("15m", "15 min", datetime.timedelta(minutes=15), datetime.timedelta(seconds=30),
          "30 s"),
    Range("1h", "1 h", datetime.timedelta(hours=1), datetime.timedelta(minutes=2), "2 min"),
    Range("24h", "24 h", datetime.timedelta(hours=24), datetime.timedelta(minutes=30),
          "30 min"),
)}
DEFAULT_RANGE = "1h"

_OWNER = "(%(owner)s::bigint IS NULL OR owner_id = %(owner)s::bigint)"

_FINISHED = f"""
SELECT date_bin(%(step)s, finished_at, %(origin)s) AS bucket,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
           ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE status IN ('succeeded', 'failed') AND started_at IS NOT NULL)
FROM tasks
WHERE finished_at >= %(origin)s AND finished_at IS NOT NULL AND {_OWNER}
GROUP BY 1
"""

_STARTED = f"""
SELECT date_bin(%(step)s, started_at, %(origin)s) AS bucket,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
           ORDER BY greatest(0, extract(epoch FROM started_at - run_at)))
FROM tasks
WHERE started_at >= %(origin)s AND started_at IS NOT NULL AND {_OWNER}
GROUP BY 1
"""


def chosen_range(value: Any) -> Range:
    return RANGES.get(value if isinstance(value, str) else "", RANGES[DEFAULT_RANGE])


def series(window: Range, owner_id: int | None = None,
           now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """One entry per step of the range, oldest first: succeeded, failed, run_p50/p95 and
    wait_p50/p95 (seconds; None where no task ran)."""
    now = now or timezone.now()
    step = window.step.total_seconds()
    end = datetime.datetime.fromtimestamp((now.timestamp() // step + 1) * step, datetime.UTC)
    origin = end - window.span
    params = {"step": window.step, "origin": origin, "owner": owner_id}
    with connection.cursor() as cursor:
        cursor.execute(_FINISHED, params)
        finished = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute(_STARTED, params)
        started = {row[0]: row[1] for row in cursor.fetchall()}
    points = []
    for i in range(int(window.span / window.step)):
        bucket = origin + i * window.step
        succeeded, failed, run = finished.get(bucket, (0, 0, None))
        wait = started.get(bucket)
        points.append({
            "at": bucket, "succeeded": succeeded, "failed": failed,
            "run_p50": run[0] if run else None, "run_p95": run[1] if run else None,
            "wait_p50": wait[0] if wait else None, "wait_p95": wait[1] if wait else None,
        })
    return points


# --- drawing ---

W, H, LEFT, BOTTOM, TOP = 400, 120, 40, 16, 6


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f}h"
    if value >= 60:
        return f"{value / 60:.1f}m"
    return f"{value:.2g}s" if value < 10 else f"{value:.0f}s"


def _frame(top: float, label) -> list[SafeString]:
    parts = []
    for f in (0, 0.5, 1):
        y = TOP + (H - BOTTOM - TOP) * (1 - f)
        parts.append(format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="chart-grid"></line>'
            '<text x="{}" y="{}" class="chart-label" text-anchor="end">{}</text>',
            LEFT, W, f"{y:.1f}", f"{y:.1f}", LEFT - 4, f"{y + 3:.1f}", label(top * f)))
    return parts


def _svg(chart_id: str, title: str, parts: list, points: list, window: Range) -> SafeString:
    ticks = format_html(
        '<text x="{}" y="{}" class="chart-label">{}</text>'
        '<text x="{}" y="{}" class="chart-label" text-anchor="end">now</text>',
        LEFT, H - 3, f"−{window.label}", W, H - 3)
    return format_html(
        '<svg id="{}" class="task-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" '
        'preserveAspectRatio="none">{}{}</svg>',
        chart_id, title, W, H, mark_safe("".join(parts)), ticks)


def bars(chart_id: str, title: str, points: list, key: str, window: Range) -> SafeString:
    top = max([p[key] for p in points] + [1])
    plot_h, bar_w = H - BOTTOM - TOP, (W - LEFT) / len(points)
    parts = _frame(top, lambda v: f"{v:.0f}")
    for i, p in enumerate(points):
        if not p[key]:
            continue
        h = plot_h * p[key] / top
        parts.append(format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" class="chart-{}">'
            "<title>{}: {}</title></rect>",
            f"{LEFT + i * bar_w + 0.5:.1f}", f"{TOP + plot_h - h:.1f}",
            f"{max(1.0, bar_w - 1):.1f}", f"{h:.1f}", key, p["at"].isoformat(), p[key]))
    return _svg(chart_id, title, parts, points, window)


def lines(chart_id: str, title: str, points: list, keys: tuple[str, str],
          window: Range) -> SafeString:
    top = max([p[k] or 0 for p in points for k in keys] + [0.001])
    plot_h, step_w = H - BOTTOM - TOP, (W - LEFT) / len(points)
    parts = _frame(top, _seconds)
    for key in keys:
        coords = [(LEFT + (i + 0.5) * step_w, TOP + plot_h * (1 - p[key] / top))
                  for i, p in enumerate(points) if p[key] is not None]
        if coords:
            parts.append(format_html('<polyline points="{}" class="chart-line chart-{}">'
                                     "</polyline>",
                                     " ".join(f"{x:.1f},{y:.1f}" for x, y in coords), key))
            parts.append(format_html_join("", '<circle cx="{}" cy="{}" r="1.5" '
                                              'class="chart-dot chart-{}"></circle>',
                                          ((f"{x:.1f}", f"{y:.1f}", key) for x, y in coords)))
    return _svg(chart_id, title, parts, points, window)


def charts(window: Range, owner_id: int | None = None) -> list[dict[str, Any]]:
    """The four charts of the range, each {id, title, svg, summary}."""
    points = series(window, owner_id)
    succeeded = sum(p["succeeded"] for p in points)
    failed = sum(p["failed"] for p in points)

    def peak(key: str) -> str:
        values = [p[key] for p in points if p[key] is not None]
        return _seconds(max(values)) if values else "—"

    return [
        {"id": "chart-throughput", "title": "Succeeded",
         "summary": f"{succeeded} in {window.label}",
         "svg": bars("chart-throughput-svg", "Succeeded tasks per step", points, "succeeded",
                     window)},
        {"id": "chart-failures", "title": "Failed", "summary": f"{failed} in {window.label}",
         "svg": bars("chart-failures-svg", "Failed tasks per step", points, "failed", window)},
        {"id": "chart-wait", "title": "Wait time (due → started), p50 / p95",
         "summary": f"highest p95 {peak('wait_p95')}",
         "svg": lines("chart-wait-svg", "Wait time p50 and p95", points,
                      ("wait_p50", "wait_p95"), window)},
        {"id": "chart-run", "title": "Run time, p50 / p95",
         "summary": f"highest p95 {peak('run_p95')}",
         "svg": lines("chart-run-svg", "Run time p50 and p95", points,
                      ("run_p50", "run_p95"), window)},
    ]
