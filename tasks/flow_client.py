"""The operations of `manage.py queue` and `manage.py schedule`, against the local database
or a remote REST API, returning the API's JSON shapes (as tasks.client does for tasks)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tasks import engine, selectors
from tasks.client import ClientError, RemoteClient, _plain
from tasks.exceptions import TaskServiceError

CLI_ACTOR = "the command line"


def _call(func, *args, **kwargs) -> Any:
    try:
        return func(*args, **kwargs)
    except TaskServiceError as exc:
        raise ClientError(str(exc)) from None


class LocalQueues:
    """Queues through tasks.engine and tasks.selectors."""

    def list(self) -> list[dict]:
        return _plain(selectors.queues())

    def _one(self, name: str) -> dict:
        found = selectors.queue(name)
        if found is None:  # pragma: no cover - a verb just made its row
            raise ClientError(f"No queue {name!r}.")
        return _plain(found)

    def pause(self, name: str) -> dict:
        _call(engine.pause_queue, name, actor=CLI_ACTOR)
        return self._one(name)

    def resume(self, name: str) -> dict:
        _call(engine.resume_queue, name, actor=CLI_ACTOR)
        return self._one(name)

    def limit(self, name: str, limits: dict[str, Any]) -> dict:
        _call(engine.set_queue_limits, name, **limits, actor=CLI_ACTOR)
        return self._one(name)


class RemoteQueues:
    """Queues through a server's /api/queues."""

    def __init__(self, remote: RemoteClient):
        self.remote = remote

    @staticmethod
    def _path(name: str, tail: str = "") -> str:
        return f"/api/queues/{urllib.parse.quote(name, safe='')}{tail}"

    def list(self) -> list[dict]:
        return self.remote._request("GET", "/api/queues")

    def pause(self, name: str) -> dict:
        return self.remote._request("POST", self._path(name, "/pause"))

    def resume(self, name: str) -> dict:
        return self.remote._request("POST", self._path(name, "/resume"))

    def limit(self, name: str, limits: dict[str, Any]) -> dict:
        return self.remote._request("PATCH", self._path(name), body=limits)
