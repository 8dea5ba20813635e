import django.db.models.deletion
from django.db import migrations, models

# Each edge column had two foreign keys: the ON DELETE CASCADE one that deleting a task
# (delete_finished, the pruner: plain SQL) relies on, and Django's own, which 0006 meant to
# replace but Django adds after a migration's SQL has run. Django's go; deleting a task or
# adding an edge checks one key per column. The cascade keys stay as they are (nothing is
# revalidated, so no write waits).
DROP_DUPLICATES = """
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'task_dependencies'::regclass AND contype = 'f'
               AND confdeltype <> 'c' LOOP
        EXECUTE 'ALTER TABLE task_dependencies DROP CONSTRAINT ' || quote_ident(c.conname);
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0011_fewer_task_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(DROP_DUPLICATES, migrations.RunSQL.noop)],
            state_operations=[
                migrations.AlterField(
                    model_name='taskdependency',
                    name='child',
                    field=models.ForeignKey(db_constraint=False, db_index=False,
                                            on_delete=django.db.models.deletion.CASCADE,
                                            related_name='+', to='tasks.task'),
                ),
                migrations.AlterField(
                    model_name='taskdependency',
                    name='parent',
                    field=models.ForeignKey(db_constraint=False,
                                            on_delete=django.db.models.deletion.CASCADE,
                                            related_name='+', to='tasks.task'),
                ),
            ],
        ),
    ]
