"""What a `django_task` payload names: a module-level @task function and JSON arguments."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.tasks.base import Task
from django.tasks.exceptions import InvalidTask
from django.utils.json import normalize_json
from django.utils.module_loading import import_string


class ModuleUnavailable(ValueError):
    """The module of a @task path does not import in this process (missing, or its own
    imports fail): another project's workers may have it."""


def load_task(path: str, *, loaded_only: bool = False) -> Task:
    """The framework Task object at dotted `path`; ValueError naming the problem.

    `loaded_only` refuses modules this process has not imported, so a payload from the
    API cannot make the service import (and run the top level of) an arbitrary module.
    """
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"{path!r} is not a dotted path to a @task function.")
    module = path.rpartition(".")[0]
    if loaded_only and module not in sys.modules:
        raise ValueError(f"Module {module!r} is not loaded in this process: enqueue "
                         "django_task tasks with the @task's .enqueue() from code that "
                         "imports it.")
    try:
        obj = import_string(path)
    except ImportError as exc:
        if isinstance(exc.__cause__, AttributeError):  # the module lacks the name
            raise ValueError(f"Cannot import {path!r}: {exc}") from None
        raise ModuleUnavailable(f"Cannot import {path!r}: {exc}") from exc
    if not isinstance(obj, Task):
        raise ValueError(
            f"{path!r} is a {type(obj).__name__}, not a django.tasks Task: decorate the "
            "module-level function with @task and keep the decorated object under its name."
        )
    return obj


def json_arguments(args: Any, kwargs: Any) -> tuple[list, dict]:
    """args/kwargs as they will come back from the database, or InvalidTask naming the
    first argument that does not survive a JSON round trip."""
    checked: list = []
    for label, value in [*((f"args[{i}]", v) for i, v in enumerate(args)),
                         *((f"kwargs[{k!r}]", v) for k, v in dict(kwargs).items())]:
        try:
            normal = normalize_json(value)
            text = json.dumps(normal, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidTask(
                f"Task argument {label} is not JSON-serialisable: {exc}."
            ) from None
        if json.loads(text) != normal:
            # e.g. {1: "a"} comes back as {"1": "a"}: the task would see other values.
            raise InvalidTask(
                f"Task argument {label} does not survive a JSON round trip "
                f"(mapping keys must be strings): {value!r}."
            )
        checked.append(normal)
    return checked[: len(args)], dict(zip(dict(kwargs), checked[len(args):], strict=True))
