"""Task list filters (django-filter), shared by the API and the local CLI."""

from __future__ import annotations

import datetime

import django_filters as filters
from django import forms
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from tasks import jsonsafe, states
from tasks.models import Status, Task

ORDERING_FIELDS = ("id", "created_at", "updated_at", "run_at", "priority", "name", "status",
                   "type", "queue", "finished_at")


class TextField(forms.CharField):
    """Any Unicode text; a NUL or an unpaired surrogate, which PostgreSQL cannot take, is
    a field error rather than a failed query."""

    def validate(self, value):
        super().validate(value)
        if value and (bad := jsonsafe.text_problem(value)):
            raise forms.ValidationError(f"Invalid text: it {bad}.", code="invalid_text")


class TextFilter(filters.CharFilter):
    field_class = TextField


class CommaMultipleChoiceField(forms.MultipleChoiceField):
    """Accepts `status=a&status=b` and `status=a,b` alike."""

    def to_python(self, value):
        values = super().to_python(value)
        return [part.strip() for item in values for part in item.split(",") if part.strip()]


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 datetime, sent to PostgreSQL in UTC: it rejects offsets beyond ±15:59,
    and an offset can push a datetime out of Python's range."""

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return None
        try:
            return value.astimezone(datetime.UTC)
        except OverflowError:
            raise forms.ValidationError("Date and time out of range.", code="overflow") from None


class UtcDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class StatusFilter(filters.MultipleChoiceFilter):
    field_class = CommaMultipleChoiceField


class IntegerFilter(filters.NumberFilter):
    field_class = forms.IntegerField


class TaskFilter(filters.FilterSet):
    status = StatusFilter(choices=Status.choices,
                          help_text="One or several statuses: repeat the parameter or "
                                    "comma-separate them, e.g. status=failed,cancelled.")
    type = TextFilter(field_name="type", help_text="Task type.")
    queue = TextFilter(field_name="queue", help_text="Queue name.")
    priority = IntegerFilter(field_name="priority", min_value=-(2**31), max_value=2**31 - 1)
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    q = TextFilter(method="search", help_text="Search in names (and the exact id).")
    ordering = filters.OrderingFilter(fields=ORDERING_FIELDS)

    class Meta:
        model = Task
        fields = ["status", "type", "queue", "priority"]

    def search(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        value = value.strip()
        if not value:
            return queryset
        match = Q(name__icontains=value)
        if (pk := states.parse_id(value)) is not None:
            match |= Q(pk=pk)
        return queryset.filter(match)
