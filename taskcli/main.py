"""`tasks-cli`: the task commands against a server's REST API, with no Django project.

    tasks-cli task list --status failed          # or: tasks-cli list ...
    TASKS_ADDRESS=https://tasks.example.com TASKS_TOKEN=... tasks-cli task status

Same actions, options, output and exit codes as `manage.py task ... --address`: an error
prints `CommandError: <one line>` on stderr and exits 1; a usage error exits 2.
"""

from __future__ import annotations

import argparse
import sys

from taskcli import __version__, actions, config
from taskcli.arguments import add_task_arguments
from taskcli.remote import ClientError, RemoteClient


def our_version() -> str:
    return __version__


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tasks-cli",
        description="Create, inspect, cancel and retry tasks through a Task Service's REST "
                    "API. The address and token come from --address/--token, "
                    f"${config.ADDRESS_VARIABLE}/${config.TOKEN_VARIABLE}, or "
                    f"{config.config_path()} ([default] address=..., token=...).",
        epilog="Example: tasks-cli task list --status failed -o json")
    top.add_argument("--version", action="version",
                     version=f"tasks-cli {our_version()}",
                     help="Print this client's version (the Task Service's) and exit.")
    add_task_arguments(top, local=False)
    return top


def remote_client(options: dict) -> RemoteClient:
    address = config.address(options["address"])
    token = config.token(options["token"])
    if not address:
        raise actions.CommandFailed(
            f"No server address: pass --address, set ${config.ADDRESS_VARIABLE}, or put "
            f"address= in {config.config_path()}.")
    if not token:
        raise actions.CommandFailed(
            f"--address needs a token: set ${config.TOKEN_VARIABLE} (or pass --token); "
            "create one with `manage.py createtoken USERNAME` on the server.")
    try:
        return RemoteClient(address, token)
    except ClientError as exc:
        raise actions.CommandFailed(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["task"]:
        argv = argv[1:]  # `tasks-cli task list` as in the seed's `task-cli task list`
    options = vars(parser().parse_args(argv))
    actions.configure_logging(options["log_level"])
    try:
        actions.check_text(options)
        output = actions.run(options, remote_client(options))
    except actions.CommandFailed as exc:
        print(f"CommandError: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
