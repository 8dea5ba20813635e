"""From parsed options to a client call and its output, for both task commands."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from taskcli import jsonsafe
from taskcli.arguments import OPTION_NAMES
from taskcli.output import OutputError, render
from taskcli.remote import ClientError

MAX_PAGE_SIZE = 500  # the API's cap (tasks.api.pagination.TaskPagination.max_page_size)


class CommandFailed(Exception):
    """The command cannot do what was asked; one line for people."""


def configure_logging(level: str) -> None:
    logger = logging.getLogger("taskcli")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def run(options: dict[str, Any], client, *,
        max_depth: int = jsonsafe.DEFAULT_MAX_DEPTH) -> str:
    """Do the action of `options` through `client`; its output. Raises CommandFailed.
    `max_depth`: how deep a payload may nest (a project's TASKS_MAX_JSON_DEPTH)."""
    check_text(options)
    action = options["task_action"]
    try:
        if action == "create":
            data = client.create(spec(options, max_depth=max_depth))
        elif action == "list":
            filters = {"status": options["status"], "type": options["task_type"],
                       "queue": options["queue"], "q": options["search"]}
            data = client.list(filters, options["page"], check_page(options))
        elif action == "status":
            data = client.status()
        elif action == "retry":
            data = client.retry(options["task_id"], run_now=options["run_now"])
        else:
            data = getattr(client, action)(options["task_id"])
        return render(action, data, options["output"])
    except (ClientError, OutputError) as exc:
        raise CommandFailed(str(exc)) from None


def check_page(options: dict[str, Any]) -> int:
    if options["page"] < 1:
        raise CommandFailed("--page must be at least 1.")
    if options["page_size"] < 1:
        raise CommandFailed("--page-size must be at least 1.")
    return min(options["page_size"], MAX_PAGE_SIZE)


def spec(options: dict[str, Any], *,
         max_depth: int = jsonsafe.DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """The create request's body from the options."""
    payload: dict[str, Any] = {}
    if options["payload_json"] is not None:
        _check_depth("--payload-json", options["payload_json"], max_depth)
        try:
            payload = json.loads(options["payload_json"])
        except json.JSONDecodeError as exc:
            raise CommandFailed(f"--payload-json is not valid JSON: {exc}.") from None
        if not isinstance(payload, dict):
            raise CommandFailed("--payload-json must be a JSON object.")
    for item in options["param"]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandFailed(f"-p expects KEY=VALUE, got {item!r}.")
        _check_depth(f"-p {key}", value, max_depth)
        try:
            payload[key] = json.loads(value)
        except json.JSONDecodeError:
            payload[key] = value
    # Checked here, not only by the server, so that local and remote runs say the same
    # (and a remote run never sends what cannot be stored).
    if problem := jsonsafe.problem(payload, "payload", max_depth):
        raise CommandFailed(f"Invalid payload: {problem}.")
    body = {"name": options["name"], "type": options["task_type"], "payload": payload,
            "priority": options["priority"], "queue": options["queue"],
            "run_at": options["run_at"], "max_retries": options["max_retries"],
            "timeout_seconds": options["timeout"],
            "idempotency_key": options["idempotency_key"],
            # Not options of `schedule create`, which builds its payload the same way.
            "depends_on": _ids("--depends-on", options.get("depends_on") or []) or None,
            "on_parent_failure": options.get("on_parent_failure")}
    return {k: v for k, v in body.items() if v is not None}


def _ids(option: str, values: list[str]) -> list[int]:
    ids = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item.isdigit() or int(item) < 1:
                raise CommandFailed(f"{option}: {item!r} is not a task id.")
            ids.append(int(item))
    return ids


def check_text(options: dict[str, Any]) -> None:
    """Refuse option values PostgreSQL cannot store or URLs cannot carry: NULs, and the
    unpaired surrogates Python makes of argv bytes that are not UTF-8."""
    for dest, value in options.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (problem := jsonsafe.text_problem(text)):
                option = OPTION_NAMES.get(dest, "--" + dest.replace("_", "-"))
                hint = " (bytes that are not UTF-8?)" if "surrogate" in problem else ""
                raise CommandFailed(f"{option}: {problem}{hint}.")


def _check_depth(option: str, text: str, max_depth: int) -> None:
    # json.loads recurses: refuse what no payload may be before it can blow the stack.
    if jsonsafe.text_depth_exceeds(text, max_depth):
        raise CommandFailed(f"{option}: JSON nested too deep: a payload may nest at most "
                            f"{max_depth} levels (TASKS_MAX_JSON_DEPTH).")
