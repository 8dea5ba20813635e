"""Start real `manage.py` processes against the test database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.db import connection

from tests.support.plugins import TEST_PLUGINS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at this moment, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(*, user: str | None = None, name: str | None = None) -> str:
    """A DATABASE_URL for the test database's server: the test database itself, or
    another database `name` and role `user` on it (the password goes with its own role)."""
    s = connection.settings_dict
    own = s["USER"] or "postgres"
    user = user or own
    auth = quote(user)
    if s.get("PASSWORD") and user == own:
        auth += ":" + quote(s["PASSWORD"])
    name = name or s["NAME"]
    host = s.get("HOST") or ""
    if host.startswith("/"):
        return f"postgresql://{auth}@/{name}?host={quote(host)}"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{name}"


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url(),
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "taskservice.settings",  # a real process: the service's
        "TASKS_PLUGINS": json.dumps(TEST_PLUGINS),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(*args: str, env: dict[str, str] | None = None, log: Path | None = None,
           **popen) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT,
                                env=env or process_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, **popen)
    finally:
        if log:
            out.close()  # the child has its own copy


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message=""):
    """Poll until predicate() is truthy; `message` may be a callable, read on failure."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    if callable(message):
        message = message()
    raise AssertionError(message or f"condition not met within {timeout}s")
