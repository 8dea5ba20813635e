"""Task Service settings. Every environment variable is read here and nowhere else."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from tasks.conf import EngineSettings
from taskservice import embedded
from taskservice.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_values,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("TASKS_DATA_DIR", str(BASE_DIR / ".data")))

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or DEBUG=1 for local "
            "development."
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if DEBUG:
    ALLOWED_HOSTS += ["127.0.0.1", "localhost", "[::1]"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# A worker process never serves HTTP: daphne's app would load Twisted (~25 MB of RSS), and
# the admin's discovery of every admin module (the console's pages and forms) a few more.
IS_WORKER = sys.argv[1:2] == ["runworker"]

INSTALLED_APPS = [
    # daphne first: its runserver serves websockets. tasks before channels: both ship a
    # `runworker` command and Django takes the first app's.
    *([] if IS_WORKER else ["daphne"]),
    "tasks",
    "django.contrib.admin.apps.SimpleAdminConfig" if IS_WORKER else "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # GinIndex on the task payload
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "channels",
]
# Development helpers (shell_plus, ...) from the `server` extra, when it is installed.
if importlib.util.find_spec("django_extensions") and not IS_WORKER:
    INSTALLED_APPS.append("django_extensions")

MIDDLEWARE = [
    # First: refuses oversized and anonymous API bodies before anything reads them (WSGI).
    "taskservice.edge.BodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tasks.middleware.RejectUnstorableQueryMiddleware",
]

ROOT_URLCONF = "taskservice.urls"
WSGI_APPLICATION = "taskservice.wsgi.application"
ASGI_APPLICATION = "taskservice.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL, or the embedded PostgreSQL, which starts on first connection
# (taskservice/embedded_backend): loading these settings starts nothing.
_database_url = env_str("DATABASE_URL")
_EMBEDDED_ENGINE = "taskservice.embedded_backend"
if _database_url:
    DATABASES = {"default": parse_database_url(_database_url)}
else:
    DATABASES = {"default": {"ENGINE": _EMBEDDED_ENGINE, **embedded.settings(DATA_DIR)}}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 0, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A process-wide connection pool (psycopg_pool) instead of a connection per thread. An ASGI
# server runs each request's sync code in a thread Django does not keep, so a connection
# kept per thread (DB_CONN_MAX_AGE) would be one left open per request until PostgreSQL
# refuses more: daphne pools by default. Never a worker, whose threads each keep theirs.
IS_DAPHNE = "daphne" in (Path(sys.argv[0]).name, Path(sys.argv[0]).parent.name)
if env_bool("DB_POOL", IS_DAPHNE) and not IS_WORKER:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": env_int("DB_POOL_MAX_SIZE", 10, minimum=1), "timeout": 10}

# run_query: off unless TASKS_QUERY_DATABASE_URL names a database of its own, whose role
# reads only what the operator granted (the embedded default provisions one). `runworker`
# and `check --deploy` verify that role (plugins/query_checks.py).
_query_database_url = env_str("TASKS_QUERY_DATABASE_URL")
if not _query_database_url and not _database_url:
    DATABASES["query"] = {"ENGINE": _EMBEDDED_ENGINE, **embedded.settings(DATA_DIR, query=True)}
TASKS_QUERY_DATABASE = "query" if "query" in DATABASES or _query_database_url else ""
if _query_database_url:
    try:
        DATABASES["query"] = parse_database_url(_query_database_url)
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"TASKS_QUERY_DATABASE_URL: {exc}") from None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Console mail is for development; production sends through SMTP unless told otherwise.
_mail_backend = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
                        if DEBUG else "django.core.mail.backends.smtp.EmailBackend")
_mail_options = {}
if _mail_backend.endswith("smtp.EmailBackend"):
    _mail_options = {
        "host": env_str("EMAIL_HOST", "localhost"),
        "port": env_int("EMAIL_PORT", 25, minimum=1),
        "username": env_str("EMAIL_HOST_USER"),
        "password": env_str("EMAIL_HOST_PASSWORD"),
        "use_tls": env_bool("EMAIL_USE_TLS", False),
    }
MAILERS = {"default": {"BACKEND": _mail_backend, "OPTIONS": _mail_options}}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "tasks@localhost")

# The engine (tasks.conf.EngineSettings holds every default and checks every value; a bad
# one is a system-check error): each variable below that is set.
TASKS_ENGINE = env_values({
    "CONCURRENCY": ("TASKS_WORKER_CONCURRENCY", int),
    "POLL_INTERVAL": ("TASKS_POLL_INTERVAL", float),
    "LEASE_SECONDS": ("TASKS_LEASE_SECONDS", float),
    "HEARTBEAT_INTERVAL": ("TASKS_HEARTBEAT_INTERVAL", float),
    "WORKER_LISTEN": ("TASKS_WORKER_LISTEN", bool),
    "SHUTDOWN_GRACE": ("TASKS_SHUTDOWN_GRACE", float),
    "DB_PREPARE": ("TASKS_DB_PREPARE", bool),
    "WORKER_ASYNC_COMMIT": ("TASKS_WORKER_ASYNC_COMMIT", bool),
    "DEFAULT_TIMEOUT": ("TASKS_DEFAULT_TIMEOUT", int),
    "DEFAULT_MAX_RETRIES": ("TASKS_DEFAULT_MAX_RETRIES", int),
    "BACKOFF_BASE": ("TASKS_BACKOFF_BASE", float),
    "BACKOFF_CAP": ("TASKS_BACKOFF_CAP", float),
    "MAX_PAYLOAD_BYTES": ("TASKS_MAX_PAYLOAD_BYTES", int),
    "PLUGINS": ("TASKS_PLUGINS", dict),
    "MAINTAINER_ELECTION_INTERVAL": ("TASKS_MAINTAINER_ELECTION_INTERVAL", float),
    "RESCUE_INTERVAL": ("TASKS_RESCUE_INTERVAL", float),
    "REAP_INTERVAL": ("TASKS_REAP_INTERVAL", float),
    "PRUNE_INTERVAL": ("TASKS_PRUNE_INTERVAL", float),
    "SCHEDULE_INTERVAL": ("TASKS_SCHEDULE_INTERVAL", float),
    "PRUNE_BATCH_SIZE": ("TASKS_PRUNE_BATCH_SIZE", int),
    "RETENTION_SUCCEEDED": ("TASKS_RETENTION_SUCCEEDED", float),
    "RETENTION_FAILED": ("TASKS_RETENTION_FAILED", float),
    "RETENTION_CANCELLED": ("TASKS_RETENTION_CANCELLED", float),
})
# Bounded input (tasks/jsonsafe.py): how deep a payload may nest (json.dumps and the admin
# recurse; keep it far below Python's ~1000), and the largest plugin result stored whole.
TASKS_MAX_JSON_DEPTH = env_int("TASKS_MAX_JSON_DEPTH", 32, minimum=2)
if TASKS_MAX_JSON_DEPTH > 200:
    raise ImproperlyConfigured(f"TASKS_MAX_JSON_DEPTH must be at most 200, got "
                               f"{TASKS_MAX_JSON_DEPTH}")
TASKS_MAX_RESULT_BYTES = env_int("TASKS_MAX_RESULT_BYTES", 64 * 1024, minimum=1024)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "tasks": {"level": LOG_LEVEL, "propagate": True},
        "plugins": {"level": LOG_LEVEL, "propagate": True},
        # Django's default config gives "django" a console handler of its own under
        # DEBUG; through the root handler only, each line is printed once.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

# --- REST API ---
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar", "tasks.api"]
# Anonymous API access is an operator's explicit choice; `check --deploy` warns about it.
TASKS_API_ALLOW_ANONYMOUS = env_bool("TASKS_API_ALLOW_ANONYMOUS", False)
# The largest request body; kept well above one task's payload limit so an oversized
# payload meets the queue's own error (naming TASKS_MAX_PAYLOAD_BYTES), and bigger bodies
# get a 413 naming this limit.
TASKS_API_MAX_BODY_BYTES = max(
    env_int("TASKS_API_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024),
    2 * TASKS_ENGINE.get("MAX_PAYLOAD_BYTES", EngineSettings.MAX_PAYLOAD_BYTES) + 64 * 1024,
)
DATA_UPLOAD_MAX_MEMORY_SIZE = TASKS_API_MAX_BODY_BYTES
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tasks.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tasks.api.permissions.ApiAccess"],
    "DEFAULT_PARSER_CLASSES": ["tasks.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "tasks.api.pagination.TaskPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tasks.api.exceptions.exception_handler",
    # Per process (the default local-memory cache): requests per client over a period,
    # e.g. "6000/min"; "off" lifts a limit.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("TASKS_API_THROTTLE_ANON", "60/min"),
        "user": env_rate("TASKS_API_THROTTLE_USER", "6000/min"),
    },
}

# Admin log-in: django-axes locks a username from an address after repeated failures.
INSTALLED_APPS.insert(INSTALLED_APPS.index("django.contrib.auth") + 1, "axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("TASKS_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(
    minutes=env_float("TASKS_LOGIN_COOLOFF_MINUTES", 15.0, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env_int("TASKS_PROXY_COUNT", 0, minimum=0) or None
SPECTACULAR_SETTINGS = {
    "TITLE": "Task Service API",
    "DESCRIPTION": "Submit, watch and steer tasks. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["tasks.api.permissions.ApiAccess"],
    # Swagger UI from the sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Integer task ids, the create request's required fields, /health and /metrics.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "tasks.api.schema.postprocess"],
}

# --- HTTPS, static files, metrics, CSP, logs ---
# Secure by default when DEBUG is off.
_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _SECURE)
# Probes and Prometheus talk plain HTTP to the pod, inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^health/?$", r"^metrics/?$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _SECURE)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _SECURE)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _SECURE)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _SECURE)
SECURE_CONTENT_TYPE_NOSNIFF = env_bool("SECURE_CONTENT_TYPE_NOSNIFF", True)
# Behind a TLS-terminating proxy: the header it sets, e.g. X-Forwarded-Proto (value https).
# Only set it when the proxy overwrites that header, or clients could claim HTTPS.
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER").strip()
if _proxy_header:
    _name, _, _value = _proxy_header.partition(":")
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip() or "https"
    )
# Kubernetes probes and scrapes use the pod's IP as Host; the chart passes it (downward API).
_pod_ip = env_str("POD_IP").strip()
if _pod_ip:
    ALLOWED_HOSTS.append(_pod_ip)

# Static files: collected at image build, served by WhiteNoise from every web process.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(STATIC_ROOT)))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names need collectstatic first: production does it at build; development
    # and tests serve straight from the app folders instead.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# /metrics: closed unless a token is set (then `Authorization: Bearer <token>`) or the
# operator opens it explicitly; `check --deploy` warns about an open endpoint.
TASKS_METRICS_TOKEN = env_str("TASKS_METRICS_TOKEN")
TASKS_METRICS_PUBLIC = env_bool("TASKS_METRICS_PUBLIC", False)
if TASKS_METRICS_PUBLIC and TASKS_METRICS_TOKEN:
    raise ImproperlyConfigured(
        "TASKS_METRICS_PUBLIC and TASKS_METRICS_TOKEN are both set: /metrics is either open "
        "to all or behind the token; unset one of them."
    )

# Content Security Policy (django.middleware.csp): only this origin's scripts, styles and
# connections (websockets included); an inline <script> or <style> runs only with the
# request's nonce ({{ csp_nonce }} in templates).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],  # Swagger UI draws its icons as data: SVGs
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
TEMPLATES[0]["OPTIONS"]["context_processors"].append("django.template.context_processors.csp")

# Logs: JSON lines on stdout in production, plain text for people at a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json").strip().lower()
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', got {LOG_FORMAT!r}")
LOGGING["formatters"]["json"] = {"()": "taskservice.logging.JsonFormatter"}
LOGGING["handlers"]["console"].update(formatter=LOG_FORMAT, stream="ext://sys.stdout")

# --- django.tasks ---
# `@task` functions (django.tasks) enqueue into the engine; see tasks/djtasks/.
TASKS = {
    "default": {
        "BACKEND": "tasks.djtasks.backend.TaskServiceBackend",
        "QUEUES": env_list("TASKS_DJANGO_QUEUES", ["default"]),
        "OPTIONS": {},  # MAX_RETRIES / TIMEOUT; the engine's defaults apply without them
    }
}
