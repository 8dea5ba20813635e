"""The read side of dependencies and workflows: a task's parents and children, a
workflow and its steps, as a user may see them (tasks.selectors scopes the tasks)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks import authz, states
from tasks.exceptions import WorkflowNotFound
from tasks.models import Task, TaskDependency, Workflow
from tasks.selectors import ALL, tasks


def parent_ids(task_ids: Iterable[int]) -> dict[int, list[int]]:
    """{task id: its parents' ids, ascending} for those of `task_ids` that have parents."""
    found: dict[int, list[int]] = {}
    rows = (TaskDependency.objects.filter(child_id__in=list(task_ids))
            .order_by("child_id", "parent_id").values_list("child_id", "parent_id"))
    for child, parent in rows:
        found.setdefault(child, []).append(parent)
    return found


def dependencies(task: Task, user: Any = ALL) -> dict[str, list[Task]]:
    """A task's parents and children that `user` may see, by id."""
    parents = TaskDependency.objects.filter(child_id=task.pk).values("parent_id")
    children = TaskDependency.objects.filter(parent_id=task.pk).values("child_id")
    return {"parents": list(tasks(user).filter(pk__in=parents).order_by("id")),
            "children": list(tasks(user).filter(pk__in=children).order_by("id"))}


def workflow(value: Any, user: Any = ALL) -> Workflow:
    """The workflow with that id, or WorkflowNotFound (also when `user` may not see it)."""
    pk = states.parse_id(value)
    found = Workflow.objects.filter(pk=pk).first() if pk is not None else None
    if found is None or (user is not ALL and not authz.can_see(user, found)):
        raise WorkflowNotFound(value)
    return found


def workflow_steps(found: Workflow) -> list[Task]:
    """A workflow's tasks in step order, each with `parent_ids` (its parents' ids)."""
    steps = list(Task.objects.filter(workflow_id=found.pk).order_by("id"))
    parents = parent_ids(t.pk for t in steps)
    for step in steps:
        step.parent_ids = parents.get(step.pk, [])
    return steps
