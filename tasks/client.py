"""The operations of `manage.py task`, against the local database or a remote REST API.

Both clients return the API's JSON shapes (plain dicts and lists), so the command prints
the same output whichever one it talks to, and both raise ClientError with a one-line
message naming the problem.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from django.core.paginator import EmptyPage, Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import QueryDict

from tasks import engine, selectors
from tasks.api.filters import TaskFilter
from tasks.api.pagination import TaskPagination
from tasks.api.serializers import (
    TaskCreateSerializer,
    TaskHistorySerializer,
    TaskListSerializer,
    TaskSerializer,
    spec_from,
)
from tasks.exceptions import InvalidTask, TaskServiceError
from tasks.models import Origin, Status


class ClientError(Exception):
    """An operation failed; the message is one line for people."""


class Client(Protocol):
    def create(self, spec: dict[str, Any]) -> dict: ...
    def get(self, task_id: str) -> dict: ...
    def list(self, filters: dict[str, Any], page: int, page_size: int) -> dict: ...
    def status(self) -> dict[str, int]: ...
    def history(self, task_id: str) -> list[dict]: ...
    def cancel(self, task_id: str) -> dict: ...
    def retry(self, task_id: str) -> dict: ...


def _plain(data: Any) -> Any:
    """Serializer output as plain JSON types, exactly as the API would send it."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _one_line(errors: Any) -> str:
    if isinstance(errors, dict) and "detail" in errors:
        return str(errors["detail"])
    return str(InvalidTask(errors)) if isinstance(errors, dict) else str(errors)


def _query(filters: dict[str, Any], page: int, page_size: int) -> QueryDict:
    query = QueryDict(mutable=True)
    for key, value in filters.items():
        if value in (None, "", []):
            continue
        for item in value if isinstance(value, list) else [value]:
            query.appendlist(key, str(item))
    query["page"] = str(page)
    query["page_size"] = str(page_size)
    return query


def _page_envelope(count: int, page: int, page_size: int, results: list) -> dict:
    return {"count": count, "page": page, "page_size": page_size, "results": results}


def _check_page(page: int, page_size: int) -> int:
    if page < 1:
        raise ClientError("--page must be at least 1.")
    if page_size < 1:
        raise ClientError("--page-size must be at least 1.")
    return min(page_size, TaskPagination.max_page_size)


class LocalClient:
    """Talks to the database of this Django project (tasks.engine and tasks.selectors)."""

    def create(self, spec: dict[str, Any]) -> dict:
        serializer = TaskCreateSerializer(data=spec)
        if not serializer.is_valid():
            raise ClientError(_one_line(serializer.errors))
        return self._call(engine.enqueue, **spec_from(serializer.validated_data), origin=Origin.CLI)

    def get(self, task_id: str) -> dict:
        return self._call(selectors.task, task_id)

    def list(self, filters: dict[str, Any], page: int, page_size: int) -> dict:
        page_size = _check_page(page, page_size)
        filterset = TaskFilter(data=_query(filters, page, page_size),
                               queryset=selectors.tasks())
        if not filterset.is_valid():
            raise ClientError(_one_line({k: list(v) for k, v in filterset.errors.items()}))
        paginator = Paginator(filterset.qs, page_size)
        try:
            rows = paginator.page(page)
        except EmptyPage:
            raise ClientError("Invalid page.") from None
        results = _plain(TaskListSerializer(rows.object_list, many=True).data)
        return _page_envelope(paginator.count, page, page_size, results)

    def status(self) -> dict[str, int]:
        counts = selectors.status_counts()
        return {**counts, "total": sum(counts.values())}

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

    def retry(self, task_id: str) -> dict:
        return self._call(lambda pk: engine.retry(selectors.task_id(pk),
                                                  reason="requeued from the command line"),
                          task_id)

    @staticmethod
    def _call(func, *args, **kwargs) -> dict:
        try:
            task = func(*args, **kwargs)
        except TaskServiceError as exc:
            raise ClientError(str(exc)) from None
        return _plain(TaskSerializer(task).data)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirects)


class RemoteClient:
    """Talks to a Task Service's REST API at `address` with a token."""

    def __init__(self, address: str, token: str, timeout: float = 30.0):
        parts = urllib.parse.urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError(f"--address must be an http(s):// URL, got {address!r}.")
        self.base = address.rstrip("/")
        self.token = token
        self.timeout = timeout

    def create(self, spec: dict[str, Any]) -> dict:
        return self._request("POST", "/api/tasks", body=spec)

    def get(self, task_id: str) -> dict:
        return self._request("GET", f"/api/tasks/{self._id(task_id)}")

    def list(self, filters: dict[str, Any], page: int, page_size: int) -> dict:
        page_size = _check_page(page, page_size)
        query = _query(filters, page, page_size).urlencode()
        data = self._request("GET", f"/api/tasks?{query}")
        return _page_envelope(data["count"], page, page_size, data["results"])

    def status(self) -> dict[str, int]:
        stats = self._request("GET", "/api/stats")
        counts = {status: stats[f"{status}_tasks"] for status in Status.values}
        return {**counts, "total": stats["total_tasks"]}

    def history(self, task_id: str) -> list[dict]:
        return self._request("GET", f"/api/tasks/{self._id(task_id)}/history")

    def cancel(self, task_id: str) -> dict:
        return self._request("POST", f"/api/tasks/{self._id(task_id)}/cancel")

    def retry(self, task_id: str) -> dict:
        return self._request("POST", f"/api/tasks/{self._id(task_id)}/retry")

    @staticmethod
    def _id(task_id: str) -> str:
        return urllib.parse.quote(str(task_id), safe="")

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Accept": "application/json", "Authorization": f"Token {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method=method)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ClientError(self._error_message(exc)) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"Cannot reach {self.base}: {reason}.") from None
        except json.JSONDecodeError:
            raise ClientError(f"{self.base} did not answer with JSON: is it a Task "
                              f"Service?") from None

    @staticmethod
    def _error_message(exc: urllib.error.HTTPError) -> str:
        try:
            body = json.loads(exc.read() or b"null")
        except (json.JSONDecodeError, OSError):
            body = None
        if 300 <= exc.code < 400:
            # Followed blindly, a redirect turns a POST into a GET (a create into a list).
            return (f"The server redirected to {exc.headers.get('Location')}: pass that "
                    f"address (e.g. its https:// form) with --address.")
        if body is None:
            return f"HTTP {exc.code} {exc.reason}."
        return _one_line(body)
