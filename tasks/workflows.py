"""Chains and groups: thin helpers that turn a shape of tasks into workflow steps.

    from tasks.workflows import chain, group

    workflow, tasks = chain(
        {"name": "fetch", "type": "http"},
        group([{"name": "resize", "type": "img", "payload": {...}},
               {"name": "scan", "type": "av"}]),
        {"name": "publish", "type": "http"},
    ).enqueue(name="upload 42", owner=user)

A chain runs its parts one after another (each part after every task that ends the part
before); a group runs its parts side by side. Parts are task specs (the keyword arguments
of engine.enqueue), chains or groups, nested freely. `steps()` is the list of specs with
`after` naming earlier steps by position, exactly what POST /api/workflows takes;
`enqueue` stores them in one transaction (engine.enqueue_workflow) and returns the
workflow and its tasks in step order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks import engine
from tasks.exceptions import InvalidTask
from tasks.models import Origin, Task, Workflow

type Part = dict[str, Any] | Chain | Group


class _Shape:
    parts: tuple[Part, ...]

    def steps(self) -> list[dict[str, Any]]:
        """The specs in order, each with `after`: the positions of the steps it follows."""
        steps: list[dict[str, Any]] = []
        self._place(steps, [])
        return steps

    def enqueue(self, *, name: str = "", owner: Any = None, origin: str = Origin.PYTHON,
                parent_scope: int | None = None) -> tuple[Workflow, list[Task]]:
        return engine.enqueue_workflow(self.steps(), name=name, owner=owner, origin=origin,
                                       parent_scope=parent_scope)

    def _place(self, steps: list[dict], before: list[int]) -> list[int]:
        raise NotImplementedError


def _place(part: Part, steps: list[dict], before: list[int]) -> list[int]:
    """Append `part` after the steps `before`; the positions that end it."""
    if isinstance(part, _Shape):
        return part._place(steps, before)
    if not isinstance(part, dict):
        raise InvalidTask({"steps": [f"A part must be a task spec (a dict), a chain or a "
                                     f"group, got {type(part).__name__}."]})
    spec = dict(part)
    spec["after"] = sorted({*spec.get("after", ()), *before})
    if not spec["after"]:
        del spec["after"]
    steps.append(spec)
    return [len(steps) - 1]


class Chain(_Shape):
    def __init__(self, *parts: Part):
        self.parts = parts

    def _place(self, steps: list[dict], before: list[int]) -> list[int]:
        for part in self.parts:
            before = _place(part, steps, before)
        return before


class Group(_Shape):
    def __init__(self, parts: Iterable[Part]):
        self.parts = tuple(parts)

    def _place(self, steps: list[dict], before: list[int]) -> list[int]:
        ends: list[int] = []
        for part in self.parts:
            ends.extend(_place(part, steps, before))
        return ends


def chain(*parts: Part) -> Chain:
    """Parts one after another."""
    return Chain(*parts)


def group(parts: Iterable[Part]) -> Group:
    """Parts side by side; what follows a group runs after all of them."""
    return Group(parts)
