# syntax=docker/dockerfile:1
# One image for every role: web (daphne, the default command), HTTP-only API replicas
# (gunicorn), workers (`python manage.py runworker`) and the migration job.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: dependencies in a virtualenv, static files collected ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first: this layer is reused until pyproject.toml changes.
COPY pyproject.toml README.md ./
COPY taskservice/__init__.py taskservice/__init__.py
COPY tasks/__init__.py tasks/__init__.py
COPY plugins/__init__.py plugins/__init__.py
# The version of both distributions (pyproject.toml reads it from here).
COPY taskcli/__init__.py taskcli/__init__.py
RUN pip install '.[server]' && pip uninstall -y task-service
# The code runs from /app (manage.py beside the packages; templates and static inside `tasks`).
COPY . .
# collectstatic needs settings, not a database: a throwaway key and an unreachable URL.
RUN DEBUG=0 SECRET_KEY=build-only-collectstatic-key-not-used-at-run-time-000000000 \
    DATABASE_URL=postgresql://build@127.0.0.1:1/build \
    python manage.py collectstatic --noinput -v0

# --- runtime: slim, non-root, read-only code ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBUG=0 \
    LOG_FORMAT=json \
    PORT=8000 \
    TASKS_DATA_DIR=/tmp/taskservice
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# Owned by root, run as app: the process cannot rewrite its own code or static files.
USER 10001:10001
EXPOSE 8000
# Python's urllib: the slim image has no curl. The Host header is the first of
# ALLOWED_HOSTS, so the check passes host validation; /health is exempt from the HTTPS
# redirect. Workers serve no HTTP: Compose disables this check for them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; h = (os.environ.get('ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.').replace('*', 'localhost') or 'localhost'; r = u.urlopen(u.Request('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), headers={'Host': h}), timeout=4); sys.exit(0 if r.status == 200 else 1)"]
# daphne: HTTP and websockets. PORT may be overridden at run time.
CMD ["sh", "-c", "exec daphne --bind 0.0.0.0 --port \"$PORT\" --proxy-headers taskservice.asgi:application"]
