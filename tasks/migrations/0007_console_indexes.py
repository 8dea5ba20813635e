import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built without locking out writes: the tasks table may hold millions of rows.
    atomic = False

    dependencies = [
        ('tasks', '0005_schedules_queues'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='task',
            index=django.contrib.postgres.indexes.GinIndex(fields=['payload'], name='idx_payload_path', opclasses=['jsonb_path_ops']),
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['finished_at'], name='idx_finished_at'),
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(condition=models.Q(('started_at__isnull', False)), fields=['started_at'], name='idx_started_at'),
        ),
        migrations.AlterField(
            model_name='taskhistory',
            name='event_type',
            field=models.CharField(choices=[('task_queued', 'Task Queued'), ('task_started', 'Task Started'), ('task_succeeded', 'Task Succeeded'), ('retry_scheduled', 'Retry Scheduled'), ('task_failed', 'Task Failed'), ('cancel_requested', 'Cancel Requested'), ('task_cancelled', 'Task Cancelled'), ('lease_expired', 'Lease Expired'), ('task_requeued', 'Task Requeued'), ('task_released', 'Task Released'), ('task_run_now', 'Task Run Now')], max_length=32),
        ),
        AddIndexConcurrently(
            model_name='taskhistory',
            index=models.Index(fields=['event_type', 'id'], name='idx_history_event_id'),
        ),
    ]
