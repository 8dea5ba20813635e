"""manage.py schedule list|create|get|pause|resume|run-now|delete: recurring tasks, locally
or through a server's REST API (--address), printed as a table, json or yaml."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from taskcli import actions
from taskcli.output import render, render_rows
from taskcli.remote import ClientError, RemoteClient
from tasks import jsonsafe
from tasks.flow_client import LocalSchedules, RemoteSchedules
from tasks.management.commands.task import Command as TaskCommand
from tasks.management.options import output_and_address

SCHEDULE_COLUMNS = [("ID", "id"), ("NAME", "name"), ("TYPE", "type"), ("WHEN", "when"),
                    ("ENABLED", "enabled"), ("NEXT RUN", "next_run_at"),
                    ("LAST TASK", "last_task_id"), ("LAST STATUS", "last_task_status")]


def _row(schedule: dict) -> dict:
    when = (f"{schedule['cron']} ({schedule['timezone']})" if schedule["cron"]
            else f"every {schedule['interval_seconds']}s")
    return {**schedule, "when": when,
            "next_run_at": (schedule["next_run_at"] or "")[:19].replace("T", " ")}


class Command(BaseCommand):
    help = "Create, list, pause, resume, run and delete schedules of recurring tasks."

    def add_arguments(self, parser):
        common = output_and_address()
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", parents=[common], help="Every schedule, with its next run.")
        create = sub.add_parser("create", parents=[common], help="Create a schedule.")
        create.add_argument("name", help="Unique; also the name of the tasks it enqueues.")
        create.add_argument("--type", "-t", required=True, dest="task_type")
        create.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                            help="A payload field (JSON when it parses). Repeatable.")
        create.add_argument("--payload-json", default=None, help="The payload as JSON.")
        when = create.add_mutually_exclusive_group(required=True)
        when.add_argument("--cron", help="A cron expression, e.g. '0 3 * * *'.")
        when.add_argument("--interval", type=int, dest="interval_seconds",
                          help="Seconds between ticks.")
        create.add_argument("--timezone", default=None, help="For --cron (default UTC).")
        create.add_argument("--queue", default=None)
        create.add_argument("--priority", type=int, default=None)
        create.add_argument("--max-retries", type=int, default=None)
        create.add_argument("--timeout", type=int, default=None, dest="timeout_seconds")
        create.add_argument("--missed-ticks", choices=["catch_up_once", "skip"], default=None)
        create.add_argument("--disabled", action="store_true", help="Create it paused.")
        for name, text in [("get", "Show one schedule."), ("pause", "Stop its ticks."),
                           ("resume", "Start its ticks again."),
                           ("run-now", "Enqueue its task now."),
                           ("delete", "Delete it (its tasks stay).")]:
            sub.add_parser(name, parents=[common], help=text).add_argument("id")

    def handle(self, *args, **options):
        action = options["action"]
        try:
            actions.check_text(options)
            client = self._client(options)
            if action == "list":
                data = client.list()
            elif action == "create":
                data = client.create(self._fields(options))
            else:
                data = getattr(client, action.replace("-", "_"))(options["id"])
        except (ClientError, actions.CommandFailed) as exc:
            raise CommandError(str(exc)) from None
        if action == "run-now" or action == "delete":
            self.stdout.write(render("get", data, options["output"]))
            return
        rows = [_row(s) for s in (data if isinstance(data, list) else [data])]
        self.stdout.write(render_rows(SCHEDULE_COLUMNS, data, rows, options["output"]))

    @staticmethod
    def _fields(options) -> dict[str, Any]:
        payload = actions.spec({**options, "priority": None, "queue": None, "run_at": None,
                                "max_retries": None, "timeout": None,
                                "idempotency_key": None},
                               max_depth=jsonsafe.max_depth())["payload"]
        fields = {"name": options["name"], "type": options["task_type"], "payload": payload,
                  "cron": options["cron"], "interval_seconds": options["interval_seconds"],
                  "timezone": options["timezone"], "queue": options["queue"],
                  "priority": options["priority"], "max_retries": options["max_retries"],
                  "timeout_seconds": options["timeout_seconds"],
                  "missed_ticks": options["missed_ticks"]}
        if options["disabled"]:
            fields["enabled"] = False
        return {k: v for k, v in fields.items() if v is not None}

    @staticmethod
    def _client(options):
        client = TaskCommand._client(options)
        return RemoteSchedules(client) if isinstance(client, RemoteClient) else LocalSchedules()
