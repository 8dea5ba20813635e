"""The task command's parser: one definition for `manage.py task` and `tasks-cli`.

Every option has help text with an example. The spellings of the seed's `task-cli` are
accepted too: `-i` for --id, `--parameter` for -p, `s`/`stat` for status, `l`/`ls` for
list, `--pageNumber`/`--pageCount` for --page/--page-size, and a `--log-level`.
"""

from __future__ import annotations

import argparse

from taskcli.output import FORMATS

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# How options are spelt on the command line, where the dest differs (for error messages).
OPTION_NAMES = {"name": "NAME", "task_type": "--type", "task_id": "--id", "param": "-p"}
ALIASES = {"status": ["s", "stat"], "list": ["l", "ls"]}


def _common(*, local: bool) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=FORMATS, default="table",
                        help="Output format: table for people, or json / yaml exactly as "
                             "the REST API answers (default: table). Example: -o json")
    where = ("A Task Service URL: use its REST API instead of the local database"
             if local else "The Task Service URL (default: $TASKS_ADDRESS, then the config "
                           "file)")
    common.add_argument("--address", default="",
                        help=f"{where}. Example: --address https://tasks.example.com")
    common.add_argument("--token", default="",
                        help="API token for the address (default: $TASKS_TOKEN, then the "
                             "config file; prefer those: a command line is visible in `ps` "
                             "and shell history). Example: --token 9944b0...")
    common.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default="error",
                        help="How much the client logs to stderr; debug shows each HTTP "
                             "request (default: error). Example: --log-level debug")
    return common


def add_task_arguments(parser: argparse.ArgumentParser, *, local: bool) -> None:
    """The actions and their options on `parser`; `local`: the local database is the
    default (manage.py), else an address is required (tasks-cli)."""
    common = _common(local=local)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str, example: str):
        one = sub.add_parser(name, parents=[common], help=text, description=text,
                             aliases=ALIASES.get(name, []), epilog=f"Example: {example}")
        one.set_defaults(task_action=name)  # the name, whichever alias was typed
        return one

    create = action("create", "Create a task.",
                    'task create "Send newsletter" --type send_email -p to=ann@example.com')
    create.add_argument("name", help='A label for people. Example: "Send newsletter"')
    create.add_argument("--type", "-t", required=True, dest="task_type",
                        help="The task type (a plugin). Example: --type send_email")
    create.add_argument("-p", "--param", "--parameter", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="A payload field; VALUE is parsed as JSON when it can be "
                             "(numbers, true, lists), else taken as a string. Repeatable. "
                             "Example: -p to=ann@example.com -p retries=3")
    create.add_argument("--payload-json", default=None,
                        help='The whole payload as a JSON object (-p fields are added to '
                             'it). Example: --payload-json \'{"duration": 2}\'')
    create.add_argument("--priority", type=int, default=None,
                        help="Higher runs first, -1000 to 1000 (default 0). Example: "
                             "--priority 10")
    create.add_argument("--queue", default=None,
                        help="The queue, for routing to workers (default 'default'). "
                             "Example: --queue emails")
    create.add_argument("--run-at", default=None,
                        help="Run at or after this ISO 8601 time. Example: "
                             "--run-at 2026-01-02T03:04:05Z")
    create.add_argument("--max-retries", type=int, default=None,
                        help="Retries after a failed run (default from the server). "
                             "Example: --max-retries 5")
    create.add_argument("--timeout", type=int, default=None,
                        help="Seconds a run may take (default from the server). "
                             "Example: --timeout 60")
    create.add_argument("--idempotency-key", default=None,
                        help="A second create with the same key returns the first task. "
                             "Example: --idempotency-key order-42")
    create.add_argument("--depends-on", action="append", default=[], metavar="ID[,ID...]",
                        help="Run only after these tasks succeeded (repeatable, or "
                             "comma-separated ids). Example: --depends-on 41,42")
    create.add_argument("--on-parent-failure", choices=["fail", "run"], default=None,
                        help="When a parent fails for good or is cancelled: fail (default: "
                             "cancelled with it) or run anyway. Example: "
                             "--on-parent-failure run")

    for name, text in [("get", "Show one task."), ("history", "A task's history."),
                       ("cancel", "Cancel a task."), ("retry", "Retry a failed or "
                                                               "cancelled task.")]:
        one = action(name, text, f"task {name} --id 42")
        one.add_argument("--id", "-i", required=True, dest="task_id",
                         help="The task's id. Example: --id 42")
        if name == "retry":
            one.add_argument("--run-now", action="store_true",
                             help="Run at once even if the task was scheduled for later "
                                  "(default: keep a future run_at). Example: --run-now")

    listing = action("list", "List tasks, newest first.",
                     "task list --status failed,cancelled --page 2")
    listing.add_argument("--status", action="append", default=[],
                         help="Only these statuses (repeatable, or comma-separated). "
                              "Example: --status failed,cancelled")
    listing.add_argument("--type", dest="task_type", default=None,
                         help="Only this task type. Example: --type send_email")
    listing.add_argument("--queue", default=None,
                         help="Only this queue. Example: --queue emails")
    listing.add_argument("--search", "-q", default=None,
                         help="Name contains this (or the exact id). Example: -q newsletter")
    listing.add_argument("--page", "-n", "--pageNumber", type=int, default=1,
                         help="Page number; past the last page lists nothing (default 1). "
                              "Example: --page 2")
    listing.add_argument("--page-size", "-c", "--pageCount", type=int, default=50,
                         help="Tasks per page, up to 500 (default 50). Example: "
                              "--page-size 20")

    action("status", "Counts of tasks per status (the API's /api/stats).", "task status")
