"""The REST API client: the API's own JSON, or ClientError with a one-line message."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from taskcli.errortext import flatten

logger = logging.getLogger("taskcli")

TASKS_PATH = "/api/tasks"


class ClientError(Exception):
    """An operation failed; the message is one line for people."""


def one_line(errors: Any) -> str:
    """An API error body (or a serializer's errors) as the one line people read."""
    if isinstance(errors, dict) and "detail" in errors:
        return str(errors["detail"])
    return flatten(errors) if isinstance(errors, dict) else str(errors)


def list_query(filters: dict[str, Any], page: int, page_size: int) -> str:
    """The query string of a list request, in one order for every client."""
    pairs: list[tuple[str, str]] = []
    for key, value in filters.items():
        if value in (None, "", []):
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, str(item)))
    pairs += [("page", str(page)), ("page_size", str(page_size))]
    return urllib.parse.urlencode(pairs)


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
        return self._request("POST", TASKS_PATH, body=spec)

    def get(self, task_id: str) -> dict:
        return self._request("GET", f"{TASKS_PATH}/{self._id(task_id)}")

    def list(self, filters: dict[str, Any], page: int, page_size: int) -> dict:
        return self._request("GET", f"{TASKS_PATH}?{list_query(filters, page, page_size)}")

    def status(self) -> dict:
        return self._request("GET", "/api/stats")

    def history(self, task_id: str) -> list[dict]:
        return self._request("GET", f"{TASKS_PATH}/{self._id(task_id)}/history")

    def cancel(self, task_id: str) -> dict:
        return self._request("POST", f"{TASKS_PATH}/{self._id(task_id)}/cancel")

    def retry(self, task_id: str, run_now: bool = False) -> dict:
        body = {"run_now": True} if run_now else None
        return self._request("POST", f"{TASKS_PATH}/{self._id(task_id)}/retry", body=body)

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
        logger.debug("%s %s", method, self.base + path)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                logger.debug("HTTP %s", response.status)
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
        return one_line(body)
