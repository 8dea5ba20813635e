"""Tasks with dependencies, and workflows: a graph stored in one transaction.

Parents that exist already are locked (queries.sql: lock_parents) and marked
`has_dependents`, so a parent ending at the same moment either ended before (and is seen
as ended here) or waits for this transaction and then sees its new children. Every new task
gets its id first (reserve_task_ids, as a batch copied in does), so edges can name tasks of
the same request; then one statement (insert_graph) stores the tasks, `waiting` or
`queued`, their edges, their history rows and their events. A parent that does not exist
(or that the submitter may not see) is an InvalidTask naming the field, and nothing is
written.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from tasks.engine.spec import Prepared, Submitter, new_task
from tasks.engine.sql import run
from tasks.exceptions import InvalidTask
from tasks.models import Status, Task, Workflow
from tasks.states import GIVEN_UP


def _error(errors: dict, index: int, single: bool, field: str, message: str) -> None:
    target = errors if single else errors.setdefault(str(index), {})
    target.setdefault(field, []).append(message)


def insert_graph(prepared: list[Prepared], who: Submitter, *, parent_scope: int | None = None,
                 workflow_id: int | None = None, single: bool = False) -> list[Task]:
    """Store `prepared` (parents by id in depends_on, by earlier position in `after`) in
    one transaction; the tasks in the same order, `waiting` while a parent has not ended
    as they need. `single`: errors are field -> messages (one task), else index -> fields.
    """
    with transaction.atomic():
        wanted = sorted({pid for p in prepared for pid in p.depends_on})
        parents: dict[int, str] = {}
        if wanted:
            for pid, status, owner_id in run("lock_parents", {"ids": wanted}):
                if parent_scope is None or owner_id == parent_scope:
                    parents[pid] = status
        errors: dict[str, Any] = {}
        for index, p in enumerate(prepared):
            for pid in p.depends_on:
                status = parents.get(pid)
                if status is None:
                    _error(errors, index, single, "depends_on", f"Task {pid} does not exist.")
                elif status in GIVEN_UP and p.on_parent_failure == "fail":
                    _error(errors, index, single, "depends_on",
                           f"Task {pid} is {status}: this task would be cancelled at once "
                           "(retry that task first, or use on_parent_failure 'run').")
        if errors:
            raise InvalidTask(errors)  # the atomic block undoes lock_parents' marks
        # Its now() is the transaction's, which insert_graph stamps the tasks with anyway.
        ((_now, ids),) = run("reserve_task_ids", {"n": len(prepared)})
        referenced = {i for p in prepared for i in p.after}
        statuses, children, edge_parents = [], [], []
        for index, p in enumerate(prepared):
            unmet = bool(p.after) or any(
                parents[pid] != Status.SUCCEEDED
                and not (p.on_parent_failure == "run" and parents[pid] in GIVEN_UP)
                for pid in p.depends_on)
            statuses.append(Status.WAITING if unmet else Status.QUEUED)
            for parent in (*p.depends_on, *(ids[i] for i in p.after)):
                children.append(ids[index])
                edge_parents.append(parent)
        rows = run("insert_graph", {
            "ids": ids, "names": [p.name for p in prepared],
            "types": [p.type for p in prepared],
            "payloads": [p.payload_json for p in prepared],
            "priorities": [p.priority for p in prepared],
            "queues": [p.queue for p in prepared],
            "run_ats": [p.run_at for p in prepared],
            "max_retries": [p.max_retries for p in prepared],
            "timeouts": [p.timeout_seconds for p in prepared],
            "statuses": [str(s) for s in statuses],
            "has_dependents": [i in referenced for i in range(len(prepared))],
            "on_parent_failures": [p.on_parent_failure for p in prepared],
            "owner_id": who.owner_id, "origin": who.origin, "workflow_id": workflow_id,
            "edge_children": children, "edge_parents": edge_parents,
        })
    stored = {task_id: (created_at, run_at) for task_id, created_at, run_at in rows}
    tasks = []
    for index, p in enumerate(prepared):
        created_at, run_at = stored[ids[index]]
        task = new_task(ids[index], p, created_at, run_at, who)
        task.status = statuses[index]
        task.has_dependents = index in referenced
        task.workflow_id = workflow_id
        task.parent_ids = sorted({*p.depends_on, *(ids[i] for i in p.after)})
        tasks.append(task)
    return tasks


def insert_workflow(prepared: list[Prepared], who: Submitter, *, name: str = "",
                    parent_scope: int | None = None) -> tuple[Workflow, list[Task]]:
    """A workflow row and its tasks (insert_graph), in one transaction."""
    with transaction.atomic():
        ((workflow_id, created_at),) = run("insert_workflow",
                                           {"name": name, "owner_id": who.owner_id})
        tasks = insert_graph(prepared, who, parent_scope=parent_scope,
                             workflow_id=workflow_id)
    workflow = Workflow(id=workflow_id, name=name, owner_id=who.owner_id,
                        created_at=created_at)
    return workflow, tasks
