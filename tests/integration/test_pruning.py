"""Pruning tasks that belong together: dependencies and workflows are kept whole until
every task of theirs may go, then go together; and the plan of the pruner's window."""

from __future__ import annotations

import re

import psycopg
import pytest
from django.db import connection

from tasks import engine
from tasks.engine.sql import QUERIES
from tasks.listener import connect_kwargs
from tasks.maintenance.pruner import Pruner, PrunerConfig
from tasks.models import Task, TaskDependency, TaskHistory, Workflow
from tasks.states import Status
from tests.integration.conftest import WORKER, outcome, run_fail, run_ok, spec, sql

pytestmark = pytest.mark.django_db

HOUR, DAY = 3600, 86400


def age(*tasks: Task, by: str = "2 hours") -> None:
    """As if the tasks had finished `by` earlier (set-up: the test's clock stands still)."""
    sql("UPDATE tasks SET finished_at = finished_at - %s::interval WHERE id = ANY(%s)",
        [by, [t.pk for t in tasks]])


def status(task: Task) -> str:
    return Task.objects.get(pk=task.pk).status


def remaining() -> set[int]:
    return set(Task.objects.values_list("pk", flat=True))


def pruner(**retention: float) -> Pruner:
    """A pruner that keeps its place between runs, as the maintainer's does."""
    return Pruner(PrunerConfig(interval=1, batch_size=100, rest=0, retention=retention))


def test_a_parent_stays_while_its_child_waits_on_another_parent():
    a, b, c = engine.enqueue_many([spec("a"), spec("b"), spec("c", after=[0, 1])])
    run_ok(a.pk, {"from": "a"})
    age(a)
    p = pruner(succeeded=HOUR)
    assert p.run_once() == 0 and remaining() == {a.pk, b.pk, c.pk}
    run_ok(b.pk, {"from": "b"})
    assert engine.parent_results(c.pk) == {a.pk: {"from": "a"}, b.pk: {"from": "b"}}
    run_ok(c.pk)
    age(a, b, c)
    # The walk went on past `a`; the child's parents go with it now that all may go.
    assert p.run_once() == 3 and remaining() == set()
    assert not TaskDependency.objects.exists() and not TaskHistory.objects.exists()


def test_a_parent_stays_while_a_failed_child_may_still_be_retried():
    a, c = engine.enqueue_many([spec("a"), spec("c", after=[0], max_retries=0)])
    run_ok(a.pk, {"from": "a"})
    run_fail(c.pk)
    age(a, c)
    p = pruner(succeeded=HOUR, failed=30 * DAY)
    assert p.run_once() == 0  # `a` is past its retention, but its child is not
    engine.retry(c.pk)
    assert engine.parent_results(c.pk) == {a.pk: {"from": "a"}}
    run_fail(c.pk, "boom again")
    age(a, c, by="31 days")
    assert p.run_once() == 2 and remaining() == set()
    assert p.last.tasks == {"succeeded": 1, "failed": 1}


def test_a_parent_stays_while_its_child_is_kept_by_the_failure_of_another_parent():
    q, p, c = engine.enqueue_many([spec("q"), spec("p", max_retries=0),
                                   spec("c", after=[0, 1])])
    run_ok(q.pk, {"from": "q"})
    run_fail(p.pk)
    assert status(c) == Status.CANCELLED
    age(q, p, c)
    prune = pruner(succeeded=HOUR, failed=30 * DAY, cancelled=HOUR)
    # Everything but the failure is past its retention: the failure keeps the child it
    # cancelled (a retry brings it back) and the child keeps both its parents.
    assert prune.run_once() == 0 and remaining() == {q.pk, p.pk, c.pk}
    engine.retry(p.pk)
    run_ok(p.pk, {"from": "p"})
    assert engine.parent_results(c.pk) == {q.pk: {"from": "q"}, p.pk: {"from": "p"}}


def test_a_succeeded_child_does_not_keep_its_parent():
    a, c = engine.enqueue_many([spec("a"), spec("c", after=[0])])
    run_ok(a.pk)
    run_ok(c.pk)
    age(a)
    assert pruner(succeeded=HOUR).run_once() == 1 and remaining() == {c.pk}


def test_a_chain_is_pruned_from_its_old_end_while_its_newest_task_runs():
    t1, t2, t3 = engine.enqueue_many([spec("t1"), spec("t2", after=[0]),
                                      spec("t3", after=[1])])
    run_ok(t1.pk)
    run_ok(t2.pk)
    (running,) = engine.claim(worker_id=WORKER, limit=10)
    assert running.id == t3.pk
    age(t1, t2)
    p = pruner(succeeded=HOUR)
    assert p.run_once() == 1 and remaining() == {t2.pk, t3.pk}  # t3 still needs t2
    engine.complete(worker_id=WORKER, outcomes=[outcome(running)])
    age(t2, t3)
    assert p.run_once() == 2 and remaining() == set()


def test_tasks_a_failure_cancelled_stay_until_it_goes_so_that_its_retry_brings_them_back():
    workflow, (root, middle, leaf) = engine.enqueue_workflow(
        [spec("root", max_retries=0), spec("middle", after=[0]), spec("leaf", after=[1])],
        name="chain")
    run_fail(root.pk)
    assert [status(middle), status(leaf)] == [Status.CANCELLED] * 2
    age(root, middle, leaf)
    p = pruner(failed=30 * DAY, cancelled=HOUR)
    assert p.run_once() == 0  # cancelled past their retention, but their root is kept
    engine.retry(root.pk)
    assert [status(middle), status(leaf)] == [Status.WAITING] * 2
    run_fail(root.pk, "boom again")
    age(root, middle, leaf, by="31 days")
    assert p.run_once() == 3 and remaining() == set()
    assert p.last.tasks == {"failed": 1, "cancelled": 2} and p.last.workflows == 1
    assert not Workflow.objects.filter(pk=workflow.pk).exists()


def test_a_failure_goes_with_the_tasks_it_cancelled_when_they_pass_their_retention_last():
    root, middle, leaf = engine.enqueue_many(
        [spec("root", max_retries=0), spec("middle", after=[0]), spec("leaf", after=[1])])
    run_fail(root.pk)
    age(root, middle, leaf)
    p = pruner(failed=HOUR, cancelled=30 * DAY)
    assert p.run_once() == 0  # the root is past its retention, the tasks it cancelled not
    age(root, middle, leaf, by="31 days")
    assert p.run_once() == 3 and remaining() == set()


def test_a_workflow_goes_with_its_last_task():
    workflow, (first, second) = engine.enqueue_workflow([spec("first"), spec("second")])
    other, (alone,) = engine.enqueue_workflow([spec("alone")])
    run_ok(first.pk)
    age(first)
    p = pruner(succeeded=HOUR)
    assert p.run_once() == 1 and p.last.workflows == 0
    assert set(Workflow.objects.values_list("pk", flat=True)) == {workflow.pk, other.pk}
    run_ok(second.pk)
    age(second)
    assert p.run_once() == 1 and p.last.workflows == 1
    assert list(Workflow.objects.values_list("pk", flat=True)) == [other.pk]
    assert remaining() == {alone.pk}


def test_a_running_parent_is_not_locked_with_its_cancelled_child():
    parent, child = engine.enqueue_many([spec("parent"), spec("child", after=[0])])
    (running,) = engine.claim(worker_id=WORKER, limit=10)
    engine.cancel(child.pk)  # a person cancels the waiting child
    age(child)
    window = engine.lock_prunable(status=Status.CANCELLED, age=HOUR, limit=10)
    assert window.ids == [child.pk]  # its parent is running: not held up by the pruner
    batch = engine.prune_locked(window.ids, status=Status.CANCELLED,
                                retention={Status.CANCELLED: HOUR})
    assert batch.tasks == {"cancelled": 1} and remaining() == {parent.pk}
    assert engine.complete(worker_id=WORKER, outcomes=[outcome(running)]) == {parent.pk}


@pytest.mark.django_db(transaction=True)
def test_a_parent_stays_while_someone_holds_its_child():
    a, c = engine.enqueue_many([spec("a"), spec("c", after=[0])])
    run_ok(a.pk)
    run_ok(c.pk)
    age(a, c)
    with psycopg.connect(**connect_kwargs()) as other:  # e.g. a person retrying the child
        other.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", [c.pk])
        assert pruner(succeeded=HOUR).run_once() == 0
        other.rollback()
    assert remaining() == {a.pk, c.pk}
    assert pruner(succeeded=HOUR).run_once() == 2


def test_prunetasks_counts_a_parent_kept_for_its_child_as_kept():
    a, _c = engine.enqueue_many([spec("a"), spec("c", after=[0])])
    run_ok(a.pk)
    age(a)
    assert pruner(succeeded=HOUR).count().tasks == {"succeeded": 0}


# --- the plan --------------------------------------------------------------------------


def _plans(name: str, params: dict) -> list[str]:
    """EXPLAIN of a named statement planned for these values, and its generic plan (the
    one a prepared statement may switch to, planned without them)."""
    names: list[str] = []

    def positional(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", positional, QUERIES[name]).replace("%%", "%")
    plans = []
    with connection.cursor() as cursor:
        cursor.execute(f"PREPARE plan_check AS {text}")
        args = ", ".join(["%s"] * len(names))
        for mode in ("force_custom_plan", "force_generic_plan"):
            cursor.execute(f"SET LOCAL plan_cache_mode = {mode}")
            cursor.execute(f"EXPLAIN EXECUTE plan_check({args})", [params[n] for n in names])
            plans.append("\n".join(r[0] for r in cursor.fetchall()))
        cursor.execute("DEALLOCATE plan_check")
    return plans


def test_the_window_is_an_index_scan_of_idx_finished_at_with_a_bounded_cost():
    # 200,000 tasks over 40 days, mostly finished, then statistics as in production.
    sql("""INSERT INTO tasks (name, type, status, payload, priority, queue, run_at,
                              retry_count, max_retries, timeout_seconds, attempts, last_error,
                              created_at, updated_at, finished_at)
           SELECT 'n', 'count', CASE WHEN g %% 10 = 0 THEN 'failed' WHEN g > 190000
                                     THEN 'queued' ELSE 'succeeded' END,
                  '{}', 0, 'default', now(), 0, 3, 300, 1, '', f, f,
                  CASE WHEN g > 190000 AND g %% 10 <> 0 THEN NULL ELSE f END
           FROM generate_series(1, 200000) g,
                LATERAL (SELECT now() - interval '40 days' * (1 - g / 200000.0) AS f) s""")
    sql("ANALYZE tasks")
    sql("ANALYZE task_dependencies")
    params = {"status": "succeeded", "age": 7.0 * DAY, "limit": 2000,
              "after_at": "1970-01-01T00:00:00Z", "after_id": 0}
    for plan in _plans("lock_prunable", params):
        assert "Index Scan using idx_finished_at on tasks" in plan, plan
        assert "Seq Scan on tasks" not in plan, plan
        total = float(re.search(r"cost=[\d.]+\.\.([\d.]+)", plan).group(1))
        # Far below jit_above_cost (100,000): a JIT compilation would cost more than the
        # statement, and would say the planner expects to read much of the table.
        assert total < 20_000, plan
