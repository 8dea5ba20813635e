"""The local client of `manage.py task`: this project's database, answering with the
REST API's JSON shapes (plain dicts and lists), so the command prints the same output as
with --address (taskcli.remote.RemoteClient), and ClientError with the same one-line
messages.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import EmptyPage
from django.core.serializers.json import DjangoJSONEncoder
from django.http import QueryDict

from taskcli.remote import TASKS_PATH, ClientError, list_query, one_line
from tasks import engine, selectors
from tasks.api.filters import TaskFilter
from tasks.api.pagination import LenientPaginator, envelope
from tasks.api.serializers import (
    TaskCreateSerializer,
    TaskHistorySerializer,
    TaskListSerializer,
    TaskSerializer,
    spec_from,
)
from tasks.exceptions import TaskServiceError
from tasks.models import Origin

__all__ = ["ClientError", "LocalClient"]


def _plain(data: Any) -> Any:
    """Serializer output as plain JSON types, exactly as the API would send it."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


class LocalClient:
    """Talks to the database of this Django project (tasks.engine and tasks.selectors)."""

    def create(self, spec: dict[str, Any]) -> dict:
        serializer = TaskCreateSerializer(data=spec)
        if not serializer.is_valid():
            raise ClientError(one_line(serializer.errors))
        return self._call(engine.enqueue, **spec_from(serializer.validated_data),
                          origin=Origin.CLI)

    def get(self, task_id: str) -> dict:
        return self._call(selectors.task, task_id)

    def list(self, filters: dict[str, Any], page: int, page_size: int) -> dict:
        query = list_query(filters, page, page_size)
        filterset = TaskFilter(data=QueryDict(query), queryset=selectors.tasks())
        if not filterset.is_valid():
            raise ClientError(one_line({k: list(v) for k, v in filterset.errors.items()}))
        paginator = LenientPaginator(filterset.qs, page_size)
        try:
            rows = paginator.page(page)
        except EmptyPage as exc:
            raise ClientError(str(exc)) from None
        results = _plain(TaskListSerializer(rows.object_list, many=True).data)
        return envelope(count=paginator.count, page=page, page_size=page_size,
                        results=results, full_path=f"{TASKS_PATH}?{query}")

    def status(self) -> dict:
        return _plain(selectors.stats())

    def history(self, task_id: str) -> list[dict]:
        try:
            rows = selectors.history(task_id)
        except TaskServiceError as exc:
            raise ClientError(str(exc)) from None
        return _plain(TaskHistorySerializer(rows, many=True).data)

    def cancel(self, task_id: str) -> dict:
        return self._call(lambda pk: engine.cancel(selectors.task_id(pk),
                                                   reason="cancelled from the command line"),
                          task_id)

    def retry(self, task_id: str, run_now: bool = False) -> dict:
        return self._call(lambda pk: engine.retry(selectors.task_id(pk), run_now=run_now,
                                                  reason="requeued from the command line"),
                          task_id)

    @staticmethod
    def _call(func, *args, **kwargs) -> dict:
        try:
            task = func(*args, **kwargs)
        except TaskServiceError as exc:
            raise ClientError(str(exc)) from None
        return _plain(TaskSerializer(task).data)
