"""Paging the task list without full-table counts, and its date drill-down from the
created_at index. Measured by bench/admin_list.py."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import OrderBy
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.text import capfirst

from tasks import selectors


class EstimatedCountPaginator(Paginator):
    """Counts exactly only when the planner expects few rows.

    COUNT(*) reads every matching row; on a million tasks that is most of a page's time.
    Above ESTIMATE_THRESHOLD rows the planner's estimate is used instead: pg_class's
    row count for the unfiltered table, EXPLAIN's for a filtered one. The page then says
    "about N" (see tasks/templates/admin/tasks/task/pagination.html).
    """

    ESTIMATE_THRESHOLD = 10_000
    estimated = False

    @cached_property
    def count(self) -> int:
        estimate = self._estimate()
        if estimate is not None and estimate > self.ESTIMATE_THRESHOLD:
            self.estimated = True
            return estimate
        # Exact, but capped: where the planner guessed low, stop counting at the threshold.
        capped = self.object_list.order_by()[: self.ESTIMATE_THRESHOLD + 1].count()
        if capped > self.ESTIMATE_THRESHOLD:
            self.estimated = True
            return max(capped, estimate or 0)
        return capped

    def _estimate(self) -> int | None:
        return selectors.estimated_count(self.object_list)


class TaskChangeList(ChangeList):
    """Breaks ties of a column sort by id in the sort's own direction (Django's admin
    always adds "-pk"), so one (column, id) index serves the sort both ways: the list
    sorted by status, priority, queue or start reads 50 index entries, not a million rows.
    """

    def get_ordering(self, request, queryset):
        ordering = super().get_ordering(request, queryset)
        if len(ordering) >= 2 and ordering[-1] == "-pk" and not _descending(ordering[0]):
            ordering = [*ordering[:-1], "pk"]
        return ordering


def _descending(field) -> bool:
    if isinstance(field, OrderBy):
        return field.descending
    return isinstance(field, str) and field.startswith("-")


def _month_after(day: datetime.datetime) -> datetime.datetime:
    return day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)


def date_hierarchy_links(cl) -> dict[str, Any]:
    """The changelist's "Filter by created at" links, from MIN/MAX on the created_at index.

    Django's own date_hierarchy lists only periods that have rows, with SELECT DISTINCT
    date_trunc(...) over every matching row (a full scan on a big table). This lists every
    year / month / day between the first and the last task of the period shown instead;
    an empty period is one click away from "0 tasks".
    """
    prefix = "created_at__"

    def param(name: str) -> int | None:
        value = cl.params.get(prefix + name)
        return int(value) if value not in (None, "") else None

    try:
        year, month, day = param("year"), param("month"), param("day")
        if year and month and day:
            chosen = datetime.date(year, month, day)
    except (TypeError, ValueError):
        return {"show": False}

    def link(filters: dict) -> str:
        return cl.get_query_string(filters, [prefix])

    ys, ms, ds = prefix + "year", prefix + "month", prefix + "day"
    base = {"show": True, "field_name": "created at"}
    if year and month and day:
        return {**base, "back": {"link": link({ys: year, ms: month}),
                                 "title": capfirst(date_format(chosen, "YEAR_MONTH_FORMAT"))},
                "choices": [{"title": capfirst(date_format(chosen, "MONTH_DAY_FORMAT"))}]}
    tz = timezone.get_current_timezone()
    start = end = None
    if year:
        start = datetime.datetime(year, month or 1, 1, tzinfo=tz)
        end = _month_after(start) if month else start.replace(year=year + 1)
    first, last = selectors.created_span(start, end)
    if first is None:
        return {**base, "choices": []}
    first, last = timezone.localtime(first), timezone.localtime(last)
    if not year and first.year == last.year:  # start one level down, as Django does
        year = first.year
        if first.month == last.month:
            month = first.month
    if year and month:
        return {**base, "back": {"link": link({ys: year}), "title": str(year)}, "choices": [
            {"link": link({ys: year, ms: month, ds: d}),
             "title": capfirst(date_format(datetime.date(year, month, d), "MONTH_DAY_FORMAT"))}
            for d in range(first.day, last.day + 1)]}
    if year:
        return {**base, "back": {"link": link({}), "title": "All dates"}, "choices": [
            {"link": link({ys: year, ms: m}),
             "title": capfirst(date_format(datetime.date(year, m, 1), "YEAR_MONTH_FORMAT"))}
            for m in range(first.month, last.month + 1)]}
    return {**base, "choices": [{"link": link({ys: y}), "title": str(y)}
                                for y in range(first.year, last.year + 1)]}
