"""The after-failure rule as one SQL function, called by every statement that ends a run in
error (a worker's failed run, a lost worker's rescued run), so the rule exists once."""

from django.db import migrations

CREATE = """
CREATE FUNCTION task_status_after_failure(cancel_requested_at timestamptz, retry_count int,
                                          max_retries int)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                WHEN retry_count < max_retries THEN 'retrying'
                ELSE 'failed' END
$$
"""

DROP = "DROP FUNCTION task_status_after_failure(timestamptz, int, int)"


class Migration(migrations.Migration):
    dependencies = [("tasks", "0003_history_error_columns")]

    operations = [migrations.RunSQL(CREATE, DROP)]
