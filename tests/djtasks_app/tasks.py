"""@task functions used by the django.tasks backend tests."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from django.dispatch import receiver
from django.tasks import task
from django.tasks.signals import task_finished, task_started


class DjTaskError(Exception):
    """What `fails` and `flaky` raise: a non-builtin class, so its module path shows."""


def _record(name: str, line: str) -> int:
    """Append a line to $DJTASKS_DIR/<name> (O_APPEND: atomic); returns the line count."""
    folder = os.environ.get("DJTASKS_DIR")
    if not folder:
        return 0
    path = Path(folder) / name
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)
    return len(path.read_text().splitlines())


@task
def add(a: int, b: int) -> int:
    return a + b


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def fails(message: str) -> None:
    raise DjTaskError(message)


@task
def flaky(key: str, failures: int) -> str:
    """Fails its first `failures` runs (counted in $DJTASKS_DIR/<key>), then succeeds."""
    runs = _record(key, "run")
    if runs <= failures:
        raise DjTaskError(f"run {runs} of {key} fails on purpose")
    return f"ok after {runs} runs"


@task
def record(label: str) -> str:
    """Appends `label` to $DJTASKS_DIR/order: the order in which tasks ran."""
    _record("order", label)
    return label


@task(takes_context=True)
def with_context(context, label: str) -> dict:
    result = context.task_result
    return {"label": label, "id": result.id, "attempt": context.attempt,
            "worker_ids": result.worker_ids, "status": result.status}


@task(takes_context=True)
def slow(context, seconds: float) -> dict:
    """Sleeps, waking early when cancelled if the backend's context can tell."""
    _record("slow", context.task_result.id)
    if hasattr(context, "sleep"):  # TaskServiceBackend's context; other backends lack it
        return {"cancelled": context.sleep(seconds)}
    time.sleep(seconds)
    return {"cancelled": False}


def plain(x: int) -> int:
    return x


# Decorated, but the module attribute `plain` is still the bare function, so a worker
# importing "tests.djtasks_app.tasks.plain" would not find this task: enqueue refuses it.
plain_task = task(plain)


@receiver(task_started)
def _on_started(sender, task_result, **kwargs):
    _record("signals", f"started {task_result.id} {task_result.status} {sender.__name__}")


@receiver(task_finished)
def _on_finished(sender, task_result, **kwargs):
    errors = ",".join(e.exception_class_path for e in task_result.errors)
    _record("signals", f"finished {task_result.id} {task_result.status} {errors}")
