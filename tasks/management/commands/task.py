"""manage.py task create|get|list|status|history|cancel|retry: the task lifecycle for people.

Talks to the local database, or with --address to a remote server's REST API; the output
is the same either way (table, json or yaml), and the same as the console `tasks-cli`:
the parser, the actions and the output are taskcli's.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from taskcli import actions, config
from taskcli.arguments import add_task_arguments
from taskcli.main import our_version
from taskcli.remote import ClientError, RemoteClient
from tasks import jsonsafe
from tasks.client import LocalClient


class Command(BaseCommand):
    help = "Create, inspect, cancel and retry tasks (locally or through a server's REST API)."

    def get_version(self) -> str:
        return f"task-service {our_version()}"

    def add_arguments(self, parser):
        add_task_arguments(parser, local=True)

    def handle(self, *args, **options):
        actions.configure_logging(options["log_level"])
        try:
            actions.check_text(options)
            client = self._client(options)
            self.stdout.write(actions.run(options, client, max_depth=jsonsafe.max_depth()))
        except actions.CommandFailed as exc:
            raise CommandError(str(exc)) from None

    @staticmethod
    def _client(options):
        if options["address"]:
            token = config.token(options["token"])
            if not token:
                raise actions.CommandFailed(
                    f"--address needs --token or ${config.TOKEN_VARIABLE} (create one with "
                    "`manage.py createtoken USERNAME` on the server).")
            try:
                return RemoteClient(options["address"], token)
            except ClientError as exc:
                raise actions.CommandFailed(str(exc)) from None
        if options["token"]:
            raise actions.CommandFailed("--token is only used with --address.")
        return LocalClient()
