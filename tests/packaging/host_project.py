"""A throw-away Django project that installs the tasks app from the wheel: its files."""

from __future__ import annotations

from pathlib import Path

SETTINGS = '''
SECRET_KEY = "host-project-test-key-not-secret-0123456789-abcdefghijklmnop"
DEBUG = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "tasks",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "channels",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "hostproject.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", **DATABASE}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
# The shop's tasks go to a queue of its own, which only the shop's workers serve.
TASKS = {"default": {"BACKEND": "tasks.djtasks.backend.TaskServiceBackend",
                     "QUEUES": ["shop"]}}
TASKS_METRICS_TOKEN = "host-metrics-token-not-secret"
'''

URLS = '''
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

urlpatterns = [
    path("", include("tasks.urls")),
    path("admin/", admin.site.urls),
    *staticfiles_urlpatterns(),
]
'''

TASKS = '''
from django.tasks import task


@task(queue_name="shop")
def add(a, b):
    return a + b
'''

MANAGE = '''
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproject.settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
'''

# Renders the admin's task list and the dashboard as a logged-in superuser, then fetches
# every stylesheet and script of the app they reference; then /health, and /metrics
# without and with the bearer token.
RENDER = '''
import os
import re
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproject.settings")
django.setup()
from django.contrib.auth.models import User
from django.test import Client

user = User.objects.create_superuser("admin", "admin@example.com", None)
client = Client()
client.force_login(user)
for url in sys.argv[1:]:
    page = client.get(url)
    html = page.content.decode()
    marks = [mark for mark in ("shop.tasks.add", "Live dashboard") if mark in html]
    print("PAGE", url, page.status_code, *marks)
    for asset in sorted(set(re.findall(r'(?:href|src)="(/static/tasks/[^"]+)"', html))):
        got = client.get(asset)
        body = b"".join(got.streaming_content) if got.streaming else got.content
        print("ASSET", url, asset, got.status_code, len(body))
anonymous = Client()
health = anonymous.get("/health")
print("HEALTH", health.status_code, health.json()["status"])
print("METRICS", anonymous.get("/metrics").status_code)
scrape = anonymous.get("/metrics",
                       headers={"Authorization": "Bearer host-metrics-token-not-secret"})
families = {line.split()[2] for line in scrape.content.decode().splitlines()
            if line.startswith("# TYPE taskservice_")}
print("METRICS-TOKEN", scrape.status_code, *sorted(families))
'''


def write(root: Path, database: dict) -> Path:
    (root / "hostproject").mkdir(parents=True)
    (root / "shop").mkdir()
    (root / "hostproject" / "__init__.py").write_text("")
    (root / "hostproject" / "settings.py").write_text(f"DATABASE = {database!r}\n{SETTINGS}")
    (root / "hostproject" / "urls.py").write_text(URLS)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "tasks.py").write_text(TASKS)
    (root / "manage.py").write_text(MANAGE)
    (root / "render.py").write_text(RENDER)
    return root
