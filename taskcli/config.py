"""Where the console CLI finds its server: options, then the environment, then a file.

The file (TASKS_CLI_CONFIG, default ~/.config/task-service/cli.ini) is INI:

    [default]
    address = https://tasks.example.com
    token = 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

ADDRESS_VARIABLE = "TASKS_ADDRESS"
TOKEN_VARIABLE = "TASKS_TOKEN"
FILE_VARIABLE = "TASKS_CLI_CONFIG"


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get(FILE_VARIABLE):
        return Path(env[FILE_VARIABLE])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "task-service" / "cli.ini"


def from_file(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(config_path(env))
    return dict(parser["default"]) if parser.has_section("default") else {}


def token(given: str, env: Mapping[str, str] = os.environ) -> str:
    return given or env.get(TOKEN_VARIABLE, "") or from_file(env).get("token", "")


def address(given: str, env: Mapping[str, str] = os.environ) -> str:
    return given or env.get(ADDRESS_VARIABLE, "") or from_file(env).get("address", "")
