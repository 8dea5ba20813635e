import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Indexes that every claim and completion paid for a rare read go, or become partial;
    # built and dropped without locking out writes.
    atomic = False

    dependencies = [
        ('tasks', '0010_settle_by_the_ending_parent'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        RemoveIndexConcurrently(model_name='task', name='idx_type_status'),
        RemoveIndexConcurrently(model_name='task', name='idx_priority_id'),
        RemoveIndexConcurrently(model_name='task', name='idx_queue_id'),
        RemoveIndexConcurrently(model_name='task', name='idx_started_id'),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(condition=models.Q(('failed_parent__isnull', False)),
                               fields=['failed_parent'], name='idx_failed_parent'),
        ),
        migrations.AlterField(
            model_name='task',
            name='failed_parent',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True,
                                    on_delete=django.db.models.deletion.DO_NOTHING,
                                    related_name='+', to='tasks.task'),
        ),
        RemoveIndexConcurrently(model_name='taskhistory', name='idx_history_event_id'),
        AddIndexConcurrently(
            model_name='taskhistory',
            index=models.Index(
                condition=models.Q(('event_type__in', ('task_queued', 'task_started',
                                                       'task_succeeded')), _negated=True),
                fields=['event_type', 'id'], name='idx_history_event_id'),
        ),
    ]
