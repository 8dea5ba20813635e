"""System checks for a project that installs the tasks app: what it needs from the host's
settings, each problem with a hint that says how to fix it."""

from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections

BACKEND = "tasks.djtasks.backend.TaskServiceBackend"
# One template and one static file the app ships, and a template of the admin's it overrides.
OWN_TEMPLATES = ("tasks/dashboard.html", "admin/tasks/task/change_list.html")
OVERRIDDEN_TEMPLATE = "admin/index.html"
OWN_STATIC = ("tasks/admin.css", "tasks/dashboard.js")


@register(Tags.compatibility)
def postgresql_database(app_configs, **kwargs) -> list[Error]:
    """The engine's SQL (SKIP LOCKED, LISTEN/NOTIFY, its functions) needs PostgreSQL."""
    if "default" not in connections.settings:
        return []
    vendor = connections["default"].vendor  # from ENGINE; does not connect
    if vendor == "postgresql":
        return []
    return [Error(
        f"The default database is {vendor}, but the Task Service runs on PostgreSQL only.",
        hint="Set DATABASES['default']['ENGINE'] to 'django.db.backends.postgresql' "
             "(psycopg 3) and point it at a PostgreSQL server.",
        id="tasks.E002",
    )]


@register(Tags.compatibility)
def app_order(app_configs, **kwargs) -> list[Error]:
    """Channels ships a `runworker` too; Django runs the command of the first app."""
    names = [config.name for config in apps.get_app_configs()]
    if "channels" in names and names.index("channels") < names.index("tasks"):
        return [Error(
            "'channels' comes before 'tasks' in INSTALLED_APPS: `manage.py runworker` runs "
            "Channels' worker instead of the Task Service's.",
            hint="Move 'tasks' above 'channels' in INSTALLED_APPS.",
            id="tasks.E003",
        )]
    return []


@register(Tags.compatibility)
def django_tasks_backend(app_configs, **kwargs) -> list[Warning]:
    """django.tasks' `@task` functions reach the engine only through our backend."""
    backends = {alias: (conf or {}).get("BACKEND")
                for alias, conf in (getattr(settings, "TASKS", None) or {}).items()}
    if backends.get("default") == BACKEND:
        return []
    if BACKEND in backends.values():
        return []  # the project routes some aliases to us on purpose
    current = backends.get("default") or "nothing"
    return [Warning(
        f"TASKS['default'] uses {current}, not the Task Service: `@task` functions "
        "(django.tasks) enqueued by this project do not reach the engine or its workers.",
        hint=f"Set TASKS = {{'default': {{'BACKEND': '{BACKEND}', 'QUEUES': ['default']}}}}.",
        id="tasks.W004",
    )]


@register(Tags.templates)
def templates_found(app_configs, **kwargs) -> list[Error]:
    from django.template import TemplateDoesNotExist
    from django.template.loader import get_template

    errors = []
    missing = []
    for name in OWN_TEMPLATES:
        try:
            get_template(name)
        except TemplateDoesNotExist:
            missing.append(name)
    if missing:
        errors.append(Error(
            f"The tasks app's templates are not found ({', '.join(missing)}): the dashboard "
            "and the admin's task pages cannot render.",
            hint="Use the DjangoTemplates backend with APP_DIRS = True (or the app "
                 "directories loader) in TEMPLATES.",
            id="tasks.E005",
        ))
        return errors
    own = Path(apps.get_app_config("tasks").path) / "templates"
    origin = Path(get_template(OVERRIDDEN_TEMPLATE).origin.name)
    if own not in origin.parents:
        errors.append(Error(
            f"{OVERRIDDEN_TEMPLATE} comes from {origin}, not from the tasks app: the admin "
            "index loses its Task Service section and the dashboard link.",
            hint="List 'tasks' above 'django.contrib.admin' in INSTALLED_APPS.",
            id="tasks.E006",
        ))
    return errors


@register(Tags.staticfiles)
def static_found(app_configs, **kwargs) -> list[Error]:
    if not apps.is_installed("django.contrib.staticfiles"):
        return [Error(
            "'django.contrib.staticfiles' is not installed: the dashboard and the admin's "
            "task pages lose their CSS and JavaScript.",
            hint="Add 'django.contrib.staticfiles' to INSTALLED_APPS.",
            id="tasks.E007",
        )]
    from django.contrib.staticfiles import finders

    missing = [name for name in OWN_STATIC if not finders.find(name)]
    if missing:
        return [Error(
            f"The tasks app's static files are not found ({', '.join(missing)}).",
            hint="Keep 'django.contrib.staticfiles.finders.AppDirectoriesFinder' in "
                 "STATICFILES_FINDERS.",
            id="tasks.E007",
        )]
    return []


@register()
def schedules_setting(app_configs, **kwargs) -> list[Error]:
    """TASKS_SCHEDULES entries are validated as the API validates a schedule; the leader
    skips an invalid one, so say so before it starts."""
    from tasks.engine.schedule_settings import problems

    errors = []
    for name, fields in problems(getattr(settings, "TASKS_SCHEDULES", {})).items():
        where = f"TASKS_SCHEDULES[{name!r}] is not a valid schedule" if name \
            else "TASKS_SCHEDULES is not valid"
        said = "; ".join(f"{field}: {' '.join(map(str, messages))}"
                         if isinstance(messages, list) else f"{field}: {messages}"
                         for field, messages in fields.items())
        errors.append(Error(
            f"{where} ({said}); the scheduler skips it.",
            hint="Give each entry the fields POST /api/schedules takes, keyed by the "
                 "schedule's name: {'nightly': {'type': 'send_email', 'payload': {...}, "
                 "'cron': '0 3 * * *', 'timezone': 'Europe/Paris'}} or 'interval_seconds' "
                 "instead of 'cron'.",
            id="tasks.E008",
        ))
    return errors
