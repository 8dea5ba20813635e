"""Workflows: the `waiting` status, dependencies between tasks, workflows, progress.

The rules that settle a finished parent's children are SQL functions, called by every
statement that ends a task (queries.sql), so they exist once:
- task_settle_dependents(parents): waiting children of parents that ended are cancelled
  (`dependency_failed`, naming the parent) when a parent failed for good or was cancelled,
  transitively, or queued (`dependencies_met`) once every parent succeeded; a child with
  on_parent_failure = 'run' is queued once every parent finished, however it ended.
- task_rewait_dependents(parents): children cancelled by a parent's failure wait again
  (`task_waiting`) when a person retries it, transitively.
Both are VOLATILE plpgsql: each of their statements reads a fresh snapshot taken after the
children are locked, so two parents of one child that end at once in two transactions
cannot both miss the other (the second to lock the child sees the first committed), and a
child enqueued while its parent ends is seen (the enqueue locks the parent first).
"""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.conf import settings
from django.db import migrations, models


# Deleting a task (delete_finished, the pruner: plain SQL) deletes its edges.
CASCADE_EDGES = """
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'task_dependencies'::regclass AND contype = 'f' LOOP
        EXECUTE 'ALTER TABLE task_dependencies DROP CONSTRAINT ' || quote_ident(c.conname);
    END LOOP;
END $$;
ALTER TABLE task_dependencies
    ADD CONSTRAINT task_dependencies_child_fk FOREIGN KEY (child_id) REFERENCES tasks (id)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT task_dependencies_parent_fk FOREIGN KEY (parent_id) REFERENCES tasks (id)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""

FUNCTIONS = """
CREATE FUNCTION task_settle_dependents(parent_ids bigint[]) RETURNS integer
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

CREATE FUNCTION task_rewait_dependents(parent_ids bigint[]) RETURNS integer
LANGUAGE plpgsql STRICT VOLATILE AS $$
DECLARE
    frontier bigint[] := parent_ids;
    children bigint[];
    back bigint[];
    total integer := 0;
BEGIN
    WHILE cardinality(frontier) > 0 LOOP
        SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO children FROM (
            SELECT t.id FROM tasks t
            WHERE t.id IN (SELECT child_id FROM task_dependencies
                           WHERE parent_id = ANY(frontier))
              AND t.status = 'cancelled' AND t.failed_parent_id IS NOT NULL
            ORDER BY t.id
            FOR UPDATE) locked;
        EXIT WHEN cardinality(children) = 0;
        -- Back to waiting unless another parent still failed or was cancelled.
        WITH upd AS (
            UPDATE tasks t
            SET status = 'waiting', finished_at = NULL, failed_parent_id = NULL,
                last_error = '', cancel_requested_at = NULL, updated_at = now()
            WHERE t.id = ANY(children) AND t.status = 'cancelled'
              AND NOT EXISTS (
                  SELECT 1 FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
                  WHERE d.child_id = t.id AND p.status IN ('failed', 'cancelled'))
            RETURNING t.id, t.attempts
        ), hist AS (
            INSERT INTO task_history (task_id, status, event_type, attempt, worker_id,
                                      details, created_at)
            SELECT id, 'waiting', 'task_waiting', attempts, '',
                   'waiting again: a parent was retried', now()
            FROM upd
        )
        SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO back FROM upd;
        IF cardinality(back) > 0 THEN
            PERFORM pg_notify('taskservice', json_build_object(
                'event', 'task_waiting', 'count', cardinality(back),
                'ids', to_json(back[1:100]))::text);
        END IF;
        total := total + cardinality(back);
        frontier := back;
    END LOOP;
    RETURN total;
END
$$;
"""

DROP_FUNCTIONS = """
DROP FUNCTION task_settle_dependents(bigint[]);
DROP FUNCTION task_rewait_dependents(bigint[]);
"""


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0007_console_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='task',
            name='failed_parent',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='tasks.task'),
        ),
        migrations.AddField(
            model_name='task',
            name='has_dependents',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='task',
            name='on_parent_failure',
            field=models.CharField(db_default='fail', default='fail', max_length=8),
        ),
        migrations.AddField(
            model_name='task',
            name='progress',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='task',
            name='status',
            field=models.CharField(choices=[('waiting', 'Waiting'), ('queued', 'Queued'), ('running', 'Running'), ('retrying', 'Retrying'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16),
        ),
        migrations.AlterField(
            model_name='taskhistory',
            name='event_type',
            field=models.CharField(choices=[('task_queued', 'Task Queued'), ('task_started', 'Task Started'), ('task_succeeded', 'Task Succeeded'), ('retry_scheduled', 'Retry Scheduled'), ('task_failed', 'Task Failed'), ('cancel_requested', 'Cancel Requested'), ('task_cancelled', 'Task Cancelled'), ('lease_expired', 'Lease Expired'), ('task_requeued', 'Task Requeued'), ('task_released', 'Task Released'), ('task_waiting', 'Task Waiting'), ('dependencies_met', 'Dependencies Met'), ('dependency_failed', 'Dependency Failed'), ('task_snoozed', 'Task Snoozed'), ('task_run_now', 'Task Run Now')], max_length=32),
        ),
        migrations.AlterField(
            model_name='taskhistory',
            name='status',
            field=models.CharField(choices=[('waiting', 'Waiting'), ('queued', 'Queued'), ('running', 'Running'), ('retrying', 'Retrying'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], max_length=16),
        ),
        migrations.CreateModel(
            name='TaskDependency',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('child', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tasks.task')),
                ('parent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tasks.task')),
            ],
            options={
                'db_table': 'task_dependencies',
            },
        ),
        migrations.CreateModel(
            name='Workflow',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('name', models.CharField(blank=True, default='', max_length=255)),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ('owner', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'task_workflows',
                'ordering': ['-id'],
            },
        ),
        migrations.AddField(
            model_name='task',
            name='workflow',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='tasks', to='tasks.workflow'),
        ),
        migrations.AddIndex(
            model_name='task',
            index=models.Index(condition=models.Q(('workflow__isnull', False)), fields=['workflow'], name='idx_workflow'),
        ),
        migrations.AddConstraint(
            model_name='taskdependency',
            constraint=models.UniqueConstraint(fields=('child', 'parent'), name='uniq_dependency'),
        ),
        migrations.RunSQL(CASCADE_EDGES, migrations.RunSQL.noop),
        migrations.RunSQL(FUNCTIONS, DROP_FUNCTIONS),
    ]
