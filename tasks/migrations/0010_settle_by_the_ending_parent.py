"""A waiting child is cancelled by the parent that just failed or was cancelled, not by one
that had ended before.

task_settle_dependents (migration 0006) runs for the parents a statement ends (its
frontier). It used to cancel a waiting child whenever any of its parents had failed or was
cancelled; a child waits with such a parent only when a person retried it directly
(retry_tasks: it waits for its parents instead of running before them), and then it should
wait until that parent is retried and succeeds, not be cancelled when another parent ends.
So a child is cancelled only for a parent of the frontier. Nothing else changes: a parent
that fails cancels its waiting children (the enqueue refuses a failed parent, so every
other waiting child has none), and the release rule still needs every parent succeeded.
"""

from django.db import migrations

SETTLE = """
CREATE OR REPLACE FUNCTION task_settle_dependents(parent_ids bigint[]) RETURNS integer
LANGUAGE plpgsql STRICT VOLATILE AS $$
DECLARE
    frontier bigint[] := parent_ids;
    children bigint[];
    cancelled bigint[];
    released bigint[];
    settled integer := 0;
BEGIN
    WHILE cardinality(frontier) > 0 LOOP
        SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO children FROM (
            SELECT t.id FROM tasks t
            WHERE t.id IN (SELECT child_id FROM task_dependencies
                           WHERE parent_id = ANY(frontier))
              AND t.status = 'waiting'
            ORDER BY t.id
            FOR UPDATE) locked;
        EXIT WHEN cardinality(children) = 0;
        -- A fresh snapshot from here on: every parent that ended before the lock is seen.
        WITH doomed AS (
            SELECT DISTINCT ON (c.id) c.id, p.id AS parent_id, p.status AS parent_status
            FROM tasks c
            JOIN task_dependencies d ON d.child_id = c.id
            JOIN tasks p ON p.id = d.parent_id
            WHERE c.id = ANY(children) AND c.status = 'waiting'
              AND c.on_parent_failure = 'fail' AND p.status IN ('failed', 'cancelled')
              @ENDING_PARENT@
            ORDER BY c.id, p.id
        ), upd AS (
            UPDATE tasks t
            SET status = 'cancelled', finished_at = now(), updated_at = now(),
                failed_parent_id = doomed.parent_id,
                last_error = 'parent task ' || doomed.parent_id || ' '
                             || doomed.parent_status
            FROM doomed WHERE t.id = doomed.id
            RETURNING t.id, t.attempts, t.last_error
        ), hist AS (
            INSERT INTO task_history (task_id, status, event_type, attempt, worker_id,
                                      details, created_at)
            SELECT id, 'cancelled', 'dependency_failed', attempts, '', last_error, now()
            FROM upd
        )
        SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO cancelled FROM upd;

        WITH ready AS (
            SELECT c.id FROM tasks c
            WHERE c.id = ANY(children) AND c.status = 'waiting'
              AND NOT EXISTS (
                  SELECT 1 FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
                  WHERE d.child_id = c.id AND p.status <> 'succeeded'
                    AND NOT (c.on_parent_failure = 'run'
                             AND p.status IN ('failed', 'cancelled')))
        ), upd AS (
            UPDATE tasks t SET status = 'queued', updated_at = now()
            FROM ready WHERE t.id = ready.id
            RETURNING t.id, t.attempts
        ), hist AS (
            INSERT INTO task_history (task_id, status, event_type, attempt, worker_id,
                                      details, created_at)
            SELECT id, 'queued', 'dependencies_met', attempts, '', 'every parent has ended',
                   now()
            FROM upd
        )
        SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO released FROM upd;

        IF cardinality(cancelled) > 0 THEN
            PERFORM pg_notify('taskservice', json_build_object(
                'event', 'dependency_failed', 'count', cardinality(cancelled),
                'ids', to_json(cancelled[1:100]))::text);
        END IF;
        IF cardinality(released) > 0 THEN
            PERFORM pg_notify('taskservice', json_build_object(
                'event', 'dependencies_met', 'count', cardinality(released),
                'ids', to_json(released[1:100]))::text);
        END IF;
        settled := settled + cardinality(cancelled) + cardinality(released);
        -- The children just cancelled end too: their own children are next.
        frontier := cancelled;
    END LOOP;
    RETURN settled;
END
$$;
"""

FORWARD = SETTLE.replace("@ENDING_PARENT@", "AND p.id = ANY(frontier)")
BACKWARD = SETTLE.replace("@ENDING_PARENT@", "")


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0009_console_sort_indexes'),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
