"""Options shared by the commands that work locally or through a server's REST API."""

from __future__ import annotations

import argparse


def output_and_address() -> argparse.ArgumentParser:
    """A parent parser: -o/--output, --address and --token (the token and the address also
    come from TASKS_TOKEN and TASKS_ADDRESS, as for `manage.py task`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=["table", "json", "yaml"],
                        default="table", help="Output format (default: table).")
    common.add_argument("--address", default="",
                        help="A Task Service URL: use its REST API, not the local database.")
    common.add_argument("--token", default="", help="API token for --address.")
    return common
