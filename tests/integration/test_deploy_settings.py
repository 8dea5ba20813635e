"""Production settings, run for real: `check --deploy`, refusals, JSON logs, and a
daphne process in production mode serving collected static files, probes and metrics."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from taskservice.logging import JsonFormatter
from tests.support import processes
from tests.support.processes import ROOT, free_port, wait_until

SECRET = "Zq4-" + "production-secret-key-for-tests-only-" + "x7Kp9mW2vB8nR3tY"
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": SECRET,
    "ALLOWED_HOSTS": "tasks.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://tasks.example.com",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    # Django 6.1's deploy check rejects the console mail backend (the development default).
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_PORT": "587",
    "EMAIL_USE_TLS": "1",
}


def production_env(**extra: str) -> dict[str, str]:
    return processes.process_env(**{**PRODUCTION, **extra})


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


SHOW_SETTINGS = """
import json
from django.conf import settings as s
print(json.dumps({
    "ssl_redirect": s.SECURE_SSL_REDIRECT, "session_secure": s.SESSION_COOKIE_SECURE,
    "csrf_secure": s.CSRF_COOKIE_SECURE, "hsts": s.SECURE_HSTS_SECONDS,
    "hsts_sub": s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "hsts_preload": s.SECURE_HSTS_PRELOAD,
    "proxy": list(getattr(s, "SECURE_PROXY_SSL_HEADER", None) or []),
    "hosts": s.ALLOWED_HOSTS, "static": s.STORAGES["staticfiles"]["BACKEND"],
    "middleware": s.MIDDLEWARE[:4], "formatter": s.LOGGING["handlers"]["console"]["formatter"],
    "csp": s.SECURE_CSP["default-src"], "metrics_public": s.TASKS_METRICS_PUBLIC,
}))
"""


def show_settings(**extra: str) -> dict:
    result = manage("shell", "-c", SHOW_SETTINGS, env=production_env(**extra))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_check_deploy_is_clean_with_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


@pytest.mark.django_db
def test_check_deploy_flags_insecure_overrides():
    # The check is real: turning a protection off is reported.
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    env=production_env(SESSION_COOKIE_SECURE="0", SECURE_HSTS_SECONDS="0"))
    assert result.returncode != 0
    assert "security.W012" in result.stderr and "security.W004" in result.stderr


@pytest.mark.django_db
def test_production_defaults_are_secure():
    values = show_settings(POD_IP="10.1.2.3")
    assert values["ssl_redirect"] and values["session_secure"] and values["csrf_secure"]
    assert values["hsts"] == 31536000 and values["hsts_sub"] and values["hsts_preload"]
    assert values["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["hosts"] == ["tasks.example.com", "10.1.2.3"]
    assert values["static"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert values["middleware"] == ["taskservice.edge.BodyLimitMiddleware",
                                    "django.middleware.security.SecurityMiddleware",
                                    "whitenoise.middleware.WhiteNoiseMiddleware",
                                    "django.middleware.csp.ContentSecurityPolicyMiddleware"]
    assert values["formatter"] == "json"
    assert values["csp"] == ["'self'"] and values["metrics_public"] is False

    relaxed = show_settings(SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="60",
                            SECURE_PROXY_SSL_HEADER="", LOG_FORMAT="plain")
    assert relaxed["ssl_redirect"] is False and relaxed["hsts"] == 60
    assert relaxed["proxy"] == [] and relaxed["formatter"] == "plain"


@pytest.mark.django_db
def test_check_deploy_warns_when_metrics_are_opened():
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    env=production_env(TASKS_METRICS_PUBLIC="1"))
    assert result.returncode != 0
    assert "tasks_api.W002" in result.stderr and "TASKS_METRICS_PUBLIC" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(("extra", "message"), [
    ({"TASKS_METRICS_PUBLIC": "1", "TASKS_METRICS_TOKEN": "t"},
     "TASKS_METRICS_PUBLIC and TASKS_METRICS_TOKEN are both set"),
    ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
    ({"LOG_FORMAT": "yaml"}, "LOG_FORMAT must be 'json' or 'plain', got 'yaml'"),
    ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS must be an integer"),
    ({"SECURE_SSL_REDIRECT": "maybe"}, "SECURE_SSL_REDIRECT must be a boolean"),
])
def test_bad_production_environment_refuses_to_start(extra, message):
    env = production_env(**extra)
    if not extra.get("SECRET_KEY", True):
        del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


@pytest.mark.django_db
def test_logs_are_json_lines_on_stdout():
    code = ("import logging; logging.getLogger('tasks.deploytest').warning("
            "'task %s done', 7, extra={'action': 'complete', 'task_id': 7, 'worker': 'w1'})")
    result = manage("shell", "-c", code, env=production_env())
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if "deploytest" in ln]
    record = json.loads(line)
    assert record["message"] == "task 7 done" and record["level"] == "WARNING"
    assert record["logger"] == "tasks.deploytest"
    assert (record["action"], record["task_id"], record["worker"]) == ("complete", 7, "w1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])

    plain = manage("shell", "-c", code, env=production_env(LOG_FORMAT="plain"))
    (line,) = [ln for ln in plain.stdout.splitlines() if "deploytest" in ln]
    assert line.endswith("WARNING tasks.deploytest task 7 done")


def test_json_formatter_keeps_tracebacks_and_odd_extras_on_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed: %s", ("ü",), sys.exc_info(),
            extra={"task_ids": [1, 2], "obj": object()})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "failed: ü" and data["task_ids"] == [1, 2]
    assert data["obj"].startswith("<object object")
    assert "ValueError: bad\nthing" in data["exc_info"]


# --- a production web process ----------------------------------------------------------



def healthcheck_code() -> str:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("HEALTHCHECK"))
    return json.loads(line[line.index("CMD") + 3:])[2]


def fetch(url: str, host: str = "tasks.example.com", **headers: str):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Host": host, **headers})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """collectstatic as the Dockerfile runs it: DEBUG=0, no database reachable."""
    root = tmp_path_factory.mktemp("staticfiles")
    env = production_env(STATIC_ROOT=str(root),
                         DATABASE_URL="postgresql://build@127.0.0.1:1/build")
    result = manage("collectstatic", "--noinput", "-v0", env=env)
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.django_db(transaction=True)
def test_production_daphne_serves_health_metrics_and_static(collected, tmp_path):
    port = free_port()
    log = tmp_path / "daphne.log"
    env = production_env(STATIC_ROOT=str(collected), PORT=str(port),
                         ALLOWED_HOSTS=".example.com", TASKS_METRICS_TOKEN="scrape-token")
    out = open(log, "wb")  # noqa: SIM115 - closed below; the child keeps its own copy
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "--bind", "127.0.0.1", "--port", str(port),
         "--proxy-headers", "taskservice.asgi:application"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            assert proc.poll() is None, log.read_text()
            try:
                return fetch(f"{base}/health")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=30, message="daphne did not answer /health")

        # The image's HEALTHCHECK, as Docker would run it inside the container.
        check = subprocess.run([sys.executable, "-c", healthcheck_code()], env=env,
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr

        # Plain HTTP for probes and scrapes; everything else is sent to HTTPS.
        status, headers, body = fetch(f"{base}/metrics", Authorization="Bearer scrape-token")
        assert status == 200 and b"taskservice_queue_depth" in body
        assert fetch(f"{base}/metrics")[0] == 401
        status, headers, _ = fetch(f"{base}/admin/login/")
        assert status == 301
        assert headers["Location"] == "https://tasks.example.com/admin/login/"
        # Behind the TLS proxy: no redirect, HSTS on.
        status, headers, _ = fetch(f"{base}/admin/login/", **{"X-Forwarded-Proto": "https"})
        assert status == 200
        assert headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains; preload")
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert fetch(f"{base}/health", host="evil.invalid")[0] == 400

        # WhiteNoise serves the collected, hashed files with a far-future cache header.
        manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
        hashed = manifest["admin/css/base.css"]
        status, headers, body = fetch(f"{base}/static/{hashed}", **{
            "Accept-Encoding": "gzip", "X-Forwarded-Proto": "https"})
        assert status == 200 and body
        assert "immutable" in headers["Cache-Control"]
        assert headers.get("Content-Encoding") == "gzip"
        missing = fetch(f"{base}/static/admin/css/missing.css", **{"X-Forwarded-Proto": "https"})
        assert missing[0] == 404
    finally:
        processes.stop(proc, signal.SIGTERM, timeout=15)


@pytest.mark.django_db(transaction=True)
def test_production_daphne_pools_its_database_connections(collected, tmp_path):
    """Under ASGI each request's sync code runs in a thread Django does not keep: with
    connections kept per thread (DB_CONN_MAX_AGE, as Compose and the chart set it) every
    request left one open until PostgreSQL refused more. The process pools them instead."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    port = free_port()
    log = tmp_path / "daphne.log"
    env = production_env(STATIC_ROOT=str(collected), ALLOWED_HOSTS=".example.com",
                         DB_CONN_MAX_AGE="60", DB_POOL_MAX_SIZE="4",
                         TASKS_API_ALLOW_ANONYMOUS="1", TASKS_API_THROTTLE_ANON="100000/min")
    out = open(log, "wb")  # noqa: SIM115 - closed below; the child keeps its own copy
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "--bind", "127.0.0.1", "--port", str(port),
         "taskservice.asgi:application"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    base = f"http://127.0.0.1:{port}"

    def backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()")
            return cursor.fetchone()[0]

    def get_stats(_):
        return fetch(f"{base}/api/stats", **{"X-Forwarded-Proto": "https"})[0]

    try:
        wait_until(lambda: proc.poll() is None and _answers(base), timeout=30,
                   message=lambda: log.read_text())
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get_stats, range(200)))
        assert set(statuses) == {200}, (statuses, log.read_text()[-2000:])
        # The pool (4) and the live view's one listening connection, not one per request.
        assert backends() <= 5
    finally:
        processes.stop(proc, signal.SIGTERM, timeout=15)


def _answers(base: str) -> bool:
    try:
        return fetch(f"{base}/health")[0] == 200
    except OSError:
        return False


POOLED = """
import sys
sys.argv = ARGV
import django
django.setup()
from django.conf import settings
print("pool" in settings.DATABASES["default"].get("OPTIONS", {}))
"""


@pytest.mark.parametrize(("argv", "extra", "pooled"), [
    (["/usr/local/bin/daphne", "taskservice.asgi:application"], {}, True),
    (["/venv/lib/daphne/__main__.py", "taskservice.asgi:application"], {}, True),
    (["/usr/local/bin/daphne", "taskservice.asgi:application"], {"DB_POOL": "0"}, False),
    (["/usr/local/bin/gunicorn", "taskservice.wsgi:application"], {}, False),
    (["/usr/local/bin/gunicorn", "taskservice.wsgi:application"], {"DB_POOL": "1"}, True),
    # A worker's threads each keep their connection: never a pool, whatever is asked.
    (["manage.py", "runworker"], {"DB_POOL": "1"}, False),
])
def test_who_pools_database_connections(argv, extra, pooled):
    env = production_env(**extra)
    result = subprocess.run([sys.executable, "-c", POOLED.replace("ARGV", repr(argv))], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(pooled)
