"""manage.py task create|get|list|status|history|cancel|retry: the task lifecycle for people.

Talks to the local database, or with --address/--token to a remote server's REST API;
the output is the same either way (table, json or yaml).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError

from tasks import jsonsafe
from tasks.client import ClientError, LocalClient, RemoteClient
from tasks.models import Status
from tasks.states import parse_id

TASK_COLUMNS = [("ID", "id"), ("NAME", "name"), ("TYPE", "type"), ("STATUS", "status"),
                ("PRIORITY", "priority"), ("QUEUE", "queue"), ("RETRIES", "retries"),
                ("CREATED", "created_at")]
# How options are spelt on the command line, where the dest differs.
OPTION_NAMES = {"name": "NAME", "task_type": "--type", "task_id": "--id", "param": "-p"}
HISTORY_COLUMNS = [("ID", "id"), ("EVENT", "event_type"), ("STATUS", "status"),
                   ("ATTEMPT", "attempt"), ("WORKER", "worker_id"), ("CREATED", "created_at"),
                   ("DETAILS", "details")]


class Command(BaseCommand):
    help = "Create, inspect, cancel and retry tasks (locally or through a server's REST API)."

    def add_arguments(self, parser):
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("-o", "--output", choices=["table", "json", "yaml"],
                            default="table", help="Output format (default: table).")
        common.add_argument("--address", default="",
                            help="A Task Service URL: use its REST API, not the local database.")
        common.add_argument("--token", default="", help="API token for --address.")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        create = sub.add_parser("create", parents=[common], help="Create a task.")
        create.add_argument("name", help="A label for people.")
        create.add_argument("--type", "-t", required=True, dest="task_type",
                            help="The task type, e.g. send_email.")
        create.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                            help="A payload field; VALUE is parsed as JSON when it can be "
                                 "(numbers, true, lists), else taken as a string. Repeatable.")
        create.add_argument("--payload-json", default=None, help="The payload as a JSON object.")
        create.add_argument("--priority", type=int, default=None)
        create.add_argument("--queue", default=None)
        create.add_argument("--run-at", default=None, help="ISO 8601 time to run at or after.")
        create.add_argument("--max-retries", type=int, default=None)
        create.add_argument("--timeout", type=int, default=None, help="Timeout in seconds.")
        create.add_argument("--idempotency-key", default=None)
        create.add_argument("--depends-on", action="append", default=[], metavar="ID[,ID...]",
                            help="Run only after these tasks succeeded (repeatable, or "
                                 "comma-separated ids).")
        create.add_argument("--on-parent-failure", choices=["fail", "run"], default=None,
                            help="When a parent fails for good or is cancelled: fail "
                                 "(default: cancelled with it) or run anyway.")

        for name, text in [("get", "Show one task."), ("history", "A task's history."),
                           ("cancel", "Cancel a task."), ("retry", "Retry a failed task.")]:
            action = sub.add_parser(name, parents=[common], help=text)
            action.add_argument("--id", required=True, dest="task_id", help="The task's id.")

        listing = sub.add_parser("list", parents=[common], help="List tasks, newest first.")
        listing.add_argument("--status", action="append", default=[],
                             help="Only these statuses (repeatable, or comma-separated).")
        listing.add_argument("--type", dest="task_type", default=None)
        listing.add_argument("--queue", default=None)
        listing.add_argument("--search", "-q", default=None, help="Search in names.")
        listing.add_argument("--page", type=int, default=1)
        listing.add_argument("--page-size", type=int, default=50, help="Up to 500.")

        sub.add_parser("status", parents=[common], help="Counts of tasks per status.")

    def handle(self, *args, **options):
        _check_text(options)
        client = self._client(options)
        action = options["action"]
        try:
            if action == "create":
                data = client.create(self._spec(options))
            elif action == "list":
                filters = {"status": options["status"], "type": options["task_type"],
                           "queue": options["queue"], "q": options["search"]}
                data = client.list(filters, options["page"], options["page_size"])
            elif action == "status":
                data = client.status()
            else:
                data = getattr(client, action)(options["task_id"])
        except ClientError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(render(action, data, options["output"]))

    @staticmethod
    def _client(options):
        if options["address"]:
            if not options["token"]:
                raise CommandError("--address needs --token (create one with "
                                   "`manage.py createtoken USERNAME` on the server).")
            try:
                return RemoteClient(options["address"], options["token"])
            except ClientError as exc:
                raise CommandError(str(exc)) from None
        if options["token"]:
            raise CommandError("--token is only used with --address.")
        return LocalClient()

    @staticmethod
    def _spec(options) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if options["payload_json"] is not None:
            _check_depth("--payload-json", options["payload_json"])
            try:
                payload = json.loads(options["payload_json"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--payload-json is not valid JSON: {exc}.") from None
            if not isinstance(payload, dict):
                raise CommandError("--payload-json must be a JSON object.")
        for item in options["param"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"-p expects KEY=VALUE, got {item!r}.")
            _check_depth(f"-p {key}", value)
            try:
                payload[key] = json.loads(value)
            except json.JSONDecodeError:
                payload[key] = value
        # Checked here, not only by the server, so that local and --address runs say the
        # same (and a --address run never sends what cannot be stored).
        if problem := jsonsafe.problem(payload, "payload"):
            raise CommandError(f"Invalid payload: {problem}.")
        spec = {"name": options["name"], "type": options["task_type"], "payload": payload,
                "priority": options["priority"], "queue": options["queue"],
                "run_at": options["run_at"], "max_retries": options["max_retries"],
                "timeout_seconds": options["timeout"],
                "idempotency_key": options["idempotency_key"],
                # Not every command that builds a spec here offers them (schedule).
                "depends_on": _ids("--depends-on", options.get("depends_on") or []) or None,
                "on_parent_failure": options.get("on_parent_failure")}
        return {k: v for k, v in spec.items() if v is not None}


def _ids(option: str, values: list[str]) -> list[int]:
    ids = []
    for value in values:
        for item in value.split(","):
            task_id = parse_id(item)
            if task_id is None:
                raise CommandError(f"{option}: {item.strip()!r} is not a task id.")
            ids.append(task_id)
    return ids


def _check_text(options: dict[str, Any]) -> None:
    """Refuse option values PostgreSQL cannot store or URLs cannot carry: NULs, and the
    unpaired surrogates Python makes of argv bytes that are not UTF-8."""
    for dest, value in options.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (problem := jsonsafe.text_problem(text)):
                option = OPTION_NAMES.get(dest, "--" + dest.replace("_", "-"))
                hint = " (bytes that are not UTF-8?)" if "surrogate" in problem else ""
                raise CommandError(f"{option}: {problem}{hint}.")


def _check_depth(option: str, text: str) -> None:
    # json.loads recurses: refuse what no payload may be before it can blow the stack.
    if jsonsafe.text_depth_exceeds(text, jsonsafe.max_depth()):
        raise CommandError(f"{option}: JSON nested too deep: a payload may nest at most "
                           f"{jsonsafe.max_depth()} levels (TASKS_MAX_JSON_DEPTH).")


# --- output ------------------------------------------------------------------------------


def render(action: str, data: Any, fmt: str) -> str:
    """The command's output for `data` (the API's JSON shape) in table, json or yaml."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    if action == "list":
        table = _table(TASK_COLUMNS, [_task_row(t) for t in data["results"]])
        pages = max(1, -(-data["count"] // data["page_size"]))
        return f"{table}\n{data['count']} task(s); page {data['page']} of {pages}"
    if action == "history":
        return _table(HISTORY_COLUMNS, [{**r, "created_at": _time(r["created_at"])}
                                        for r in data])
    if action == "status":
        rows = [{"status": s, "count": data[s]} for s in [*Status.values, "total"]]
        return _table([("STATUS", "status"), ("COUNT", "count")], rows)
    # One task: field and value, one per line.
    rows = [{"field": key, "value": _cell(value)} for key, value in data.items()]
    return _table([("FIELD", "field"), ("VALUE", "value")], rows)


def render_rows(columns: list[tuple[str, str]], data: Any, rows: list[dict], fmt: str) -> str:
    """`data` as json or yaml, or `rows` as a table of `columns` (the queue and schedule
    commands print this way)."""
    if fmt != "table":
        return render("", data, fmt)
    return _table(columns, rows)


def _task_row(task: dict) -> dict:
    return {**task, "retries": f"{task['retry_count']}/{task['max_retries']}",
            "created_at": _time(task["created_at"])}


def _time(value: str | None) -> str:
    # 2026-01-02T03:04:05.123456Z -> 2026-01-02 03:04:05
    return (value or "")[:19].replace("T", " ")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())  # one line per row


def _table(columns: list[tuple[str, str]], rows: list[dict]) -> str:
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max([len(title), *(len(r[i]) for r in cells)])
              for i, (title, _) in enumerate(columns)]
    lines = [[title for title, _ in columns], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
