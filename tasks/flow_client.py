"""The operations of `manage.py queue` and `manage.py schedule`, against the local database
or a remote REST API, returning the API's JSON shapes (as tasks.client does for tasks)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from taskcli.remote import ClientError, RemoteClient
from tasks import engine, selectors
from tasks.client import _plain
from tasks.exceptions import TaskServiceError
from tasks.states import parse_id

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


def _schedule(schedule) -> dict:
    from tasks.api.schedules import ScheduleSerializer

    return _plain(ScheduleSerializer(schedule).data)


class LocalSchedules:
    """Schedules through tasks.engine.schedules."""

    def list(self) -> list[dict]:
        from tasks.api.schedules import ScheduleSerializer
        from tasks.models import Schedule

        return _plain(ScheduleSerializer(Schedule.objects.order_by("name"), many=True).data)

    def create(self, fields: dict[str, Any]) -> dict:
        return _schedule(_call(engine.schedules.create, **fields, actor=CLI_ACTOR))

    def get(self, schedule_id: str) -> dict:
        return _schedule(_call(engine.schedules.get, schedule_id))

    def pause(self, schedule_id: str) -> dict:
        return _schedule(_call(engine.schedules.pause, schedule_id, actor=CLI_ACTOR))

    def resume(self, schedule_id: str) -> dict:
        return _schedule(_call(engine.schedules.resume, schedule_id, actor=CLI_ACTOR))

    def run_now(self, schedule_id: str) -> dict:
        from tasks.api.serializers import TaskSerializer

        task = _call(engine.schedules.run_now, schedule_id, actor=CLI_ACTOR)
        return _plain(TaskSerializer(task).data)

    def delete(self, schedule_id: str) -> dict:
        _call(engine.schedules.delete, schedule_id, actor=CLI_ACTOR)
        return {"deleted": parse_id(schedule_id)}  # the engine accepted it: an id


class RemoteSchedules:
    """Schedules through a server's /api/schedules."""

    def __init__(self, remote: RemoteClient):
        self.remote = remote

    @staticmethod
    def _path(schedule_id: str, tail: str = "") -> str:
        return f"/api/schedules/{urllib.parse.quote(str(schedule_id), safe='')}{tail}"

    def list(self) -> list[dict]:
        return self.remote._request("GET", "/api/schedules")

    def create(self, fields: dict[str, Any]) -> dict:
        return self.remote._request("POST", "/api/schedules", body=fields)

    def get(self, schedule_id: str) -> dict:
        return self.remote._request("GET", self._path(schedule_id))

    def pause(self, schedule_id: str) -> dict:
        return self.remote._request("POST", self._path(schedule_id, "/pause"))

    def resume(self, schedule_id: str) -> dict:
        return self.remote._request("POST", self._path(schedule_id, "/resume"))

    def run_now(self, schedule_id: str) -> dict:
        return self.remote._request("POST", self._path(schedule_id, "/run-now"))

    def delete(self, schedule_id: str) -> dict:
        self.remote._request("DELETE", self._path(schedule_id))
        return {"deleted": parse_id(schedule_id)}  # the server accepted it: an id
