from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # The task list's sorts, each a (column, id) index; built without locking out writes.
    atomic = False

    dependencies = [
        ('tasks', '0008_worker_types'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name='task',
            name='idx_status_created_at',
        ),
        RemoveIndexConcurrently(
            model_name='task',
            name='idx_started_at',
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(fields=['status', 'id'], name='idx_status_id'),
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(fields=['priority', 'id'], name='idx_priority_id'),
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(fields=['queue', 'id'], name='idx_queue_id'),
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(models.OrderBy(models.F('started_at'), nulls_first=True), models.F('id'), name='idx_started_id'),
        ),
    ]
