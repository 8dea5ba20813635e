"""A `django.tasks` backend: `@task` functions from any Django project run on the engine.

    TASKS = {"default": {"BACKEND": "tasks.djtasks.backend.TaskServiceBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"MAX_RETRIES": 5, "TIMEOUT": 120}}}

`enqueue` stores a task of type `django_task` through `tasks.engine.enqueue`, so it gets
history, events, leases, retries, the admin and the API like any other task; a worker
runs it through `tasks.djtasks.plugin`. Mapping onto the engine:

- result id: our task id, as a string;
- priority: the framework's -100..100 times PRIORITY_SCALE (10), so the framework's range
  covers the engine's whole -1000..1000 and @task(priority=100) outranks every API task
  below 1000;
- `run_after` -> `run_at`; `queue_name` -> `queue` (it must be one of QUEUES);
- per-task extras (max retries, timeout in seconds, idempotency key) are fields of
  `TaskServiceTask`, this backend's `task_class`: `@task(max_retries=5, timeout=30)` or
  `my_task.using(idempotency_key="order-42").enqueue(...)`. OPTIONS MAX_RETRIES and
  TIMEOUT are the defaults; without them the engine's own defaults apply. The backoff
  between retries is the engine's (TASKS_BACKOFF_BASE / TASKS_BACKOFF_CAP of the workers).

`get_result` maps our states onto the framework's: waiting/queued/retrying -> READY, running ->
RUNNING, succeeded -> SUCCESSFUL, failed/cancelled -> FAILED, with one `TaskError` per
failed run (and one for a cancellation), `worker_ids` one per run started (so
`attempts` is our `attempts`), and `return_value` from our `result`.

Modules: `backend` (TaskServiceBackend: validate, enqueue, get_result, checks), `mapping`
(states, priorities, errors and results between the engine and the framework), `payload`
(the function path and the JSON arguments), `plugin` (the `django_task` task type the
workers run). The plugin imports neither the backend nor the engine, so the plugin
registry can load it without a loop back through the engine. This package imports
nothing on its own.
"""
