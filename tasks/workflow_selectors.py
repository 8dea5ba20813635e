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


def dependencies(task: Task, user: Any = ALL, limit: int | None = None) -> dict[str, Any]:
    """A task's parents and children that `user` may see, by id (the first `limit` of
    each, when given), and how many there are: `parents_total`, `children_total`."""
    found: dict[str, Any] = {}
    for side, ids in (
            ("parents", TaskDependency.objects.filter(child_id=task.pk).values("parent_id")),
            ("children", TaskDependency.objects.filter(parent_id=task.pk).values("child_id"))):
        visible = tasks(user).filter(pk__in=ids).order_by("id")
        rows = list(visible if limit is None else visible[:limit + 1])
        over = limit is not None and len(rows) > limit
        found[side] = rows[:limit] if over else rows
        found[f"{side}_total"] = visible.count() if over else len(rows)
    return found


def workflow(value: Any, user: Any = ALL) -> Workflow:
    """The workflow with that id, or WorkflowNotFound (also when `user` may not see it)."""
    pk = states.parse_id(value)
    found = Workflow.objects.filter(pk=pk).first() if pk is not None else None
    if found is None or (user is not ALL and not authz.can_see(user, found)):
        raise WorkflowNotFound(value)
    return found


def workflow_steps(found: Workflow, limit: int | None = None) -> list[Task]:
    """A workflow's tasks in step order (the first `limit`, when given), each with
    `parent_ids` (its parents' ids)."""
    steps = Task.objects.filter(workflow_id=found.pk).order_by("id")
    steps = list(steps if limit is None else steps[:limit])
    parents = parent_ids(t.pk for t in steps)
    for step in steps:
        step.parent_ids = parents.get(step.pk, [])
    return steps


def workflow_size(found: Workflow) -> int:
    """How many tasks a workflow has (its tasks' workflow index)."""
    return Task.objects.filter(workflow_id=found.pk).count()
