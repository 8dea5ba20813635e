"""manage.py queue list|pause|resume|limit: steer queues, locally or through --address."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from taskcli import actions
from taskcli.output import render_rows
from taskcli.remote import ClientError, RemoteClient
from tasks.flow_client import LocalQueues, RemoteQueues
from tasks.management.commands.task import Command as TaskCommand
from tasks.management.options import output_and_address

QUEUE_COLUMNS = [("QUEUE", "name"), ("DUE", "due"), ("DEFERRED", "deferred"),
                 ("RUNNING", "running"), ("OLDEST DUE (S)", "oldest_due_age"),
                 ("PAUSED", "paused"), ("CONCURRENCY", "concurrency_limit"),
                 ("RATE/S", "rate_limit")]


def _limit(text: str) -> float | None:
    """A limit from the command line: a number, or `none` to remove it."""
    if text.lower() in ("none", "null", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    return int(value) if value.is_integer() else value


class Command(BaseCommand):
    help = "List, pause, resume and limit queues (locally or through a server's REST API)."

    def add_arguments(self, parser):
        common = output_and_address()
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", parents=[common], help="Every queue with depth and limits.")
        for name, text in [("pause", "Stop claiming from a queue (its tasks wait)."),
                           ("resume", "Claim from a paused queue again.")]:
            sub.add_parser(name, parents=[common], help=text).add_argument("name")
        limit = sub.add_parser("limit", parents=[common],
                               help="Set a queue's cluster-wide limits ('none' removes one).")
        limit.add_argument("name")
        limit.add_argument("--concurrency", type=_limit, default=argparse.SUPPRESS,
                           dest="concurrency_limit", metavar="N",
                           help="Most tasks of the queue running at once, or none.")
        limit.add_argument("--rate", type=_limit, default=argparse.SUPPRESS,
                           dest="rate_limit", metavar="PER_SECOND",
                           help="Most task starts per second, or none.")

    def handle(self, *args, **options):
        action = options["action"]
        try:
            client = self._client(options)
            if action == "list":
                data = client.list()
            elif action == "limit":
                limits = {k: options[k] for k in ("concurrency_limit", "rate_limit")
                          if k in options}
                if not limits:
                    raise CommandError("limit needs --concurrency, --rate or both.")
                data = client.limit(options["name"], limits)
            else:
                data = getattr(client, action)(options["name"])
        except (ClientError, actions.CommandFailed) as exc:
            raise CommandError(str(exc)) from None
        rows = data if isinstance(data, list) else [data]
        self.stdout.write(render_rows(QUEUE_COLUMNS, data, rows, options["output"]))

    @staticmethod
    def _client(options):
        client = TaskCommand._client(options)
        return RemoteQueues(client) if isinstance(client, RemoteClient) else LocalQueues()
