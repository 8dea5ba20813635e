"""System checks for a host project's settings: each misconfiguration is reported with a
hint, and the service's own settings pass."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core import checks as django_checks
from django.test import override_settings

from plugins import registry
from tasks import checks
from tests.support import processes
from tests.support.plugins import TEST_PLUGINS


@pytest.fixture(autouse=True)
def _test_plugins_kept():
    """Overriding INSTALLED_APPS runs the apps' ready() again, which reloads the plugin
    registry from settings alone: put the test plugins back for the tests that follow."""
    yield
    registry.load({**settings.TASKS_ENGINE.get("PLUGINS", {}), **TEST_PLUGINS})


def ids(messages) -> list[str]:
    assert all(message.hint for message in messages)
    return [message.id for message in messages]


def test_the_services_own_settings_pass():
    own = {"tasks.E002", "tasks.E003", "tasks.W004", "tasks.E005", "tasks.E006", "tasks.E007",
           "tasks.E008"}
    assert not own & {message.id for message in django_checks.run_checks()}


def test_a_database_other_than_postgresql_is_an_error(tmp_path):
    (tmp_path / "sqlite_settings.py").write_text(
        "from tests.settings import *\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(tmp_path / 'db.sqlite3')!r}}}}}\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sqlite_settings",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(processes.ROOT)])}
    env.pop("TASKS_QUERY_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "django", "check"], cwd=processes.ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "tasks.E002" in result.stderr
    assert "The default database is sqlite, but the Task Service runs on PostgreSQL only." \
        in result.stderr
    assert "HINT: Set DATABASES['default']['ENGINE'] to 'django.db.backends.postgresql'" \
        in result.stderr


def test_channels_before_tasks_is_an_error():
    apps_list = list(settings.INSTALLED_APPS)
    apps_list.remove("channels")
    apps_list.insert(0, "channels")
    assert checks.app_order(None) == []
    with override_settings(INSTALLED_APPS=apps_list):
        messages = checks.app_order(None)
    assert ids(messages) == ["tasks.E003"]
    assert "runworker" in messages[0].msg


@pytest.mark.parametrize("tasks_setting", [
    {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}},
    {},
])
def test_django_tasks_without_our_backend_is_a_warning(tasks_setting):
    assert checks.django_tasks_backend(None) == []
    with override_settings(TASKS=tasks_setting):
        messages = checks.django_tasks_backend(None)
    assert ids(messages) == ["tasks.W004"]
    assert checks.BACKEND in messages[0].hint


def test_templates_not_found_is_an_error():
    no_app_dirs = [{**settings.TEMPLATES[0], "APP_DIRS": False}]
    with override_settings(TEMPLATES=no_app_dirs):
        messages = checks.templates_found(None)
    assert ids(messages) == ["tasks.E005"]


def test_admin_above_tasks_shadows_the_admin_overrides():
    apps_list = list(settings.INSTALLED_APPS)
    apps_list.remove("django.contrib.admin")
    apps_list.insert(0, "django.contrib.admin")
    assert checks.templates_found(None) == []
    with override_settings(INSTALLED_APPS=apps_list):
        messages = checks.templates_found(None)
    assert ids(messages) == ["tasks.E006"]
    assert "django/contrib/admin/templates/admin/index.html" in messages[0].msg


def test_static_files_not_found_is_an_error():
    assert checks.static_found(None) == []
    finders = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    with override_settings(STATICFILES_FINDERS=finders):
        messages = checks.static_found(None)
    assert ids(messages) == ["tasks.E007"]
    assert "tasks/admin.css" in messages[0].msg


def test_invalid_schedules_in_settings_are_errors_naming_the_entry_and_field():
    good = {"nightly": {"type": "count", "cron": "0 3 * * *", "timezone": "Europe/Paris"}}
    with override_settings(TASKS_SCHEDULES=good):
        assert checks.schedules_setting(None) == []
    bad = {**good, "hourly": {"type": "count", "cron": "0 * * *"},
           "often": {"type": "no_such_type", "interval_seconds": 60, "colour": "red"}}
    with override_settings(TASKS_SCHEDULES=bad):
        messages = checks.schedules_setting(None)
        registered = {m.id for m in django_checks.run_checks()}
    assert ids(messages) == ["tasks.E008", "tasks.E008"]
    assert "tasks.E008" in registered
    hourly, often = (m.msg for m in messages)
    assert hourly.startswith("TASKS_SCHEDULES['hourly'] is not a valid schedule (cron: ")
    assert "colour: Unknown field." in often
    assert "'interval_seconds'" in messages[0].hint
    with override_settings(TASKS_SCHEDULES=["nightly"]):
        (message,) = checks.schedules_setting(None)
    assert message.msg.startswith("TASKS_SCHEDULES is not valid (non_field_errors: ")
