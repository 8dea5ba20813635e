"""PostgreSQL LISTEN on the task event channel, outside Django's connection handling.

The worker uses it to wake when work arrives and to hear cancellations; the websocket
relay uses it to push events to the dashboard. A NOTIFY is sent in the same transaction
as the change it describes, so an event always means a committed change.

It sits below the worker, the maintainer and the live view (tasks/live/relay.py), beside
the engine: the worker must not import a wing to listen.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import psycopg
from django.db import connections

from tasks.engine.events import CHANNEL

logger = logging.getLogger(__name__)


def connect_kwargs(alias: str = "default") -> dict:
    """psycopg.connect() keyword arguments for a Django database alias."""
    wrapper = connections[alias]
    # A backend that finds its server on first use (the embedded default) fills HOST now.
    getattr(wrapper, "locate_server", lambda: None)()
    s = wrapper.settings_dict
    kwargs = {
        "dbname": s["NAME"],
        "user": s.get("USER") or None,
        "password": s.get("PASSWORD") or None,
        "host": s.get("HOST") or None,
        "port": s.get("PORT") or None,
        **{k: v for k, v in (s.get("OPTIONS") or {}).items() if isinstance(v, (str, int))},
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def parse(payload: str) -> dict | None:
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class Listener(threading.Thread):
    """Calls `on_event(event_dict)` for each NOTIFY; reconnects with backoff.

    `on_connect()` is called each time LISTEN is in place (the first time included):
    events sent before that were not heard. `on_reconnect()` only after a reconnect,
    because events sent while the connection was down are lost: the caller should
    re-read the state it cares about.
    """

    def __init__(self, on_event: Callable[[dict], None], *,
                 on_connect: Callable[[], None] | None = None,
                 on_reconnect: Callable[[], None] | None = None,
                 channel: str = CHANNEL, alias: str = "default", name: str = "listener"):
        super().__init__(name=name, daemon=True)
        self.on_event = on_event
        self.on_connect = on_connect
        self.on_reconnect = on_reconnect
        self.channel = channel
        self.kwargs = connect_kwargs(alias)
        self.stop_event = threading.Event()
        self.connected = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        delay = 0.2
        first = True
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(autocommit=True, connect_timeout=5, **self.kwargs) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.connected.set()
                    delay = 0.2
                    if self.on_connect:
                        self.on_connect()
                    if not first and self.on_reconnect:
                        self.on_reconnect()
                    first = False
                    while not self.stop_event.is_set():
                        for note in conn.notifies(timeout=0.5):
                            event = parse(note.payload)
                            if event is not None:
                                self.on_event(event)
                            if self.stop_event.is_set():
                                break
            except psycopg.Error as exc:
                self.connected.clear()
                if self.stop_event.is_set():
                    break
                logger.warning("event listener lost its connection (%s); retrying in %.1fs",
                               exc.__class__.__name__, delay, extra={"action": "listen_retry"})
                self.stop_event.wait(delay)
                delay = min(delay * 2, 10.0)
        self.connected.clear()

