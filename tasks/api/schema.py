"""What the OpenAPI document says beyond the views' own annotations (a drf-spectacular
postprocessing hook): task ids in paths are integers, the create request's required fields,
the typed body of every 400, and the two plain endpoints outside the API (/health,
/metrics)."""

from __future__ import annotations

REQUIRED_ON_CREATE = ["name", "type"]
# A 400 body: each field (or non_field_errors, or a bulk create's index) with its messages;
# `payload` nests by the payload's own fields.
FIELD_ERRORS = {
    "type": "object",
    "description": "Field -> messages; or `detail` alone for a body that cannot be read.",
    "properties": {"detail": {"type": "string",
                              "description": "The body is not JSON (or not UTF-8)."}},
    "additionalProperties": {"oneOf": [
        {"type": "array", "items": {"type": "string"}},
        {"$ref": "#/components/schemas/FieldErrors"},
    ]},
    "example": {"type": ["Unknown task type 'x'. Known types: run_query, send_email, "
                         "simulate."]},
}

_HEALTH = {
    "get": {
        "operationId": "health",
        "summary": "Liveness and database reachability, for load balancers and probes",
        "description": "No authentication. Exempt from the HTTPS redirect.",
        "tags": ["operations"],
        "security": [],
        "responses": {
            "200": {"description": "The database answers.", "content": {"application/json": {
                "schema": {"type": "object", "required": ["status", "database"],
                           "properties": {"status": {"type": "string", "enum": ["healthy"]},
                                          "database": {"type": "string",
                                                       "enum": ["connected"]}}}}}},
            "503": {"description": "The database does not answer.", "content": {
                "application/json": {"schema": {
                    "type": "object", "required": ["status", "database", "reason"],
                    "properties": {"status": {"type": "string", "enum": ["unhealthy"]},
                                   "database": {"type": "string", "enum": ["unreachable"]},
                                   "reason": {"type": "string"}}}}}},
        },
    },
}

_METRICS = {
    "get": {
        "operationId": "metrics",
        "summary": "Prometheus metrics (queue depth, task counts, durations, workers)",
        "description": "Closed unless TASKS_METRICS_TOKEN is set (send "
                       "`Authorization: Bearer <token>`) or TASKS_METRICS_PUBLIC opens it. "
                       "OpenMetrics when the Accept header asks for it, else the Prometheus "
                       "text format. Exempt from the HTTPS redirect.",
        "tags": ["operations"],
        "security": [{"metricsBearer": []}, {}],
        "responses": {
            "200": {"description": "The metrics.", "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}}}},
            "401": {"description": "No or a wrong bearer token."},
            "403": {"description": "Metrics are closed (no token configured)."},
            "503": {"description": "The database did not answer."},
        },
    },
}


# drf-spectacular's operation id endings, as the API's own ids read.
_VERBS = {"_retrieve": "_get", "_destroy": "_delete", "_partial_update": "_update"}


def _operation_id(path: str, method: str, default: str) -> str:
    """`queues_retrieve` reads `queues_get`; an action (`/api/queues/{name}/pause/`) is named
    by its verb alone: `queues_pause`, not `queues_pause_create`."""
    for ending, verb in _VERBS.items():
        if default.endswith(ending):
            return default.removesuffix(ending) + verb
    is_action = path.rstrip("/").rsplit("/", 1)[-1] not in ("", "{id}", "{name}") and (
        "{id}" in path or "{name}" in path)
    if method == "post" and is_action and default.endswith("_create"):
        return default.removesuffix("_create")
    return default


def postprocess(result: dict, generator, request, public) -> dict:
    for path, operations in result.get("paths", {}).items():
        thing = path.strip("/").split("/")[1].removesuffix("s") if path.startswith("/api/") \
            else "task"
        for method, operation in operations.items():
            if "operationId" in operation:
                operation["operationId"] = _operation_id(path, method, operation["operationId"])
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["schema"] = {"type": "integer", "format": "int64",
                                           "minimum": 1}
                    parameter["description"] = f"The {thing}'s id."
            bad = operation.get("responses", {}).get("400")
            if bad is not None and "content" not in bad:
                bad["content"] = {"application/json": {
                    "schema": {"$ref": "#/components/schemas/FieldErrors"}}}
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["FieldErrors"] = FIELD_ERRORS
    if "TaskCreateRequest" in schemas:
        schemas["TaskCreateRequest"]["required"] = REQUIRED_ON_CREATE
    result.setdefault("paths", {}).update({"/health": _HEALTH, "/metrics": _METRICS})
    security = result.setdefault("components", {}).setdefault("securitySchemes", {})
    security["metricsBearer"] = {"type": "http", "scheme": "bearer",
                                 "description": "TASKS_METRICS_TOKEN"}
    return result
