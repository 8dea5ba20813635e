"""Plugins used only by the tests; registered in-process by conftest and in worker
subprocesses through TASKS_PLUGINS (the same path a deployment would use)."""

from __future__ import annotations

import os
import time

from plugins.base import Plugin, Snooze


class CountRuns(Plugin):
    """Appends 'task_id attempt' to $COUNT_FILE on every run (O_APPEND: atomic lines).

    Payload: `sleep` seconds (cancellable), only on attempt `only_attempt` if given.
    """

    def run(self, payload, ctx):
        path = os.environ["COUNT_FILE"]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.task_id} {ctx.attempt}\n".encode())
        finally:
            os.close(fd)
        only = payload.get("only_attempt")
        if payload.get("sleep") and (only is None or only == ctx.attempt):
            ctx.sleep(float(payload["sleep"]))
        return {"ran": ctx.task_id}


class Block(Plugin):
    """Sleeps `seconds` ignoring cancellation: a plugin that never returns in time."""

    supports_cancel = False

    def run(self, payload, ctx):
        time.sleep(float(payload.get("seconds", 3600)))
        return "woke"


class Boom(Plugin):
    """Always raises."""

    def run(self, payload, ctx):
        raise RuntimeError(payload.get("message", "boom"))


class Produce(Plugin):
    """Returns what a careless plugin might: `bytes` characters of text, `depth` nested
    lists, or (`bad_text`) a string with a NUL and an unpaired surrogate."""

    def run(self, payload, ctx):
        if "bytes" in payload:
            return {"blob": "x" * int(payload["bytes"])}
        if "depth" in payload:
            value: list = []
            for _ in range(int(payload["depth"])):
                value = [value]
            return value
        return {"text": "a\x00b\ud800c", "ok": "fine"}


class Parents(Plugin):
    """Sleeps `sleep` seconds, then returns its parents' results and its own `value`."""

    def run(self, payload, ctx):
        ctx.sleep(float(payload.get("sleep", 0)))
        return {"value": payload.get("value"), "parents": ctx.parent_results}


class Chatty(Plugin):
    """Reports progress `calls` times over about `seconds`, then returns."""

    def run(self, payload, ctx):
        calls, seconds = int(payload.get("calls", 1000)), float(payload.get("seconds", 1))
        for i in range(1, calls + 1):
            ctx.progress(i, calls, f"step {i}")
            time.sleep(seconds / calls)
        return {"calls": calls}


class Snoozer(Plugin):
    """Snoozes `seconds` on its first attempt (raising Snooze if `raise`), then returns."""

    def run(self, payload, ctx):
        if ctx.attempt == 1:
            if payload.get("raise"):
                raise Snooze(float(payload.get("seconds", 1)))
            ctx.snooze(float(payload.get("seconds", 1)))
        return {"attempt": ctx.attempt}


TEST_PLUGINS = {
    "count": {"plugin": "tests.support.plugins.CountRuns"},
    "block": {"plugin": "tests.support.plugins.Block"},
    "boom": {"plugin": "tests.support.plugins.Boom"},
    "produce": {"plugin": "tests.support.plugins.Produce"},
    "parents": {"plugin": "tests.support.plugins.Parents"},
    "chatty": {"plugin": "tests.support.plugins.Chatty"},
    "snoozer": {"plugin": "tests.support.plugins.Snoozer"},
}
