import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Drops only (quick on large tables): the owner's own index (idx_owner_created_at serves
# lookups by owner), and the history's constraint and task index (see TaskHistory.task).
DROP = """
DROP INDEX IF EXISTS tasks_owner_id_b2c75a80;
ALTER TABLE task_history DROP CONSTRAINT IF EXISTS task_history_task_id_118b5d3f_fk_tasks_id;
DROP INDEX IF EXISTS task_history_task_id_118b5d3f;
"""
RESTORE = """
CREATE INDEX tasks_owner_id_b2c75a80 ON tasks (owner_id);
CREATE INDEX task_history_task_id_118b5d3f ON task_history (task_id);
ALTER TABLE task_history ADD CONSTRAINT task_history_task_id_118b5d3f_fk_tasks_id
    FOREIGN KEY (task_id) REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("tasks", "0004_after_failure_rule"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(DROP, RESTORE)],
            state_operations=[
                migrations.AlterField(
                    model_name="task",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True, db_index=False, null=True,
                        on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                        to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name="taskhistory",
                    name="task",
                    field=models.ForeignKey(
                        db_constraint=False, db_index=False,
                        on_delete=django.db.models.deletion.CASCADE, related_name="history",
                        to="tasks.task"),
                ),
            ],
        ),
    ]
