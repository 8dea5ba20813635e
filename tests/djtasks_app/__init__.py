"""An example third-party app: plain `django.tasks` @task functions, no Task Service code.

Workers import `tests.djtasks_app.tasks` by module path (PYTHONPATH is the repo root).
With $DJTASKS_DIR set, runs and the framework's signals are recorded there as lines of
text, so a test can see what happened inside a worker process.
"""
