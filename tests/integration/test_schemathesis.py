"""Property-based API testing: schemathesis generates requests from the OpenAPI schema.

No input may produce a 500, and every response must match the schema (status code,
content type, body). Examples are bounded so the whole run stays short.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import TaskFactory, UserFactory
from tests.support import users
from tests.support.users import grant

pytestmark = pytest.mark.django_db

SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
SCHEMA.app = get_wsgi_application()
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
KNOWN_BODIES = [
    {"name": "n", "type": "noop"},
    {"name": "s", "type": "simulate", "payload": {"duration": 0.1}, "priority": 3},
    [{"name": "a", "type": "noop"}, {"name": "b", "type": "noop", "idempotency_key": "k"}],
    {"name": "e", "type": "send_email", "payload": {"to": "x@example.com"}},
]


SCHEDULE_BODIES = [
    {"name": "every", "type": "noop", "interval_seconds": 30},
    {"name": "cron", "type": "simulate", "cron": "*/5 * * * *", "timezone": "Asia/Tokyo",
     "payload": {"duration": 0.1}, "missed_ticks": "skip"},
]


@pytest.fixture
def fuzz(request):
    """A user's token and ids of tasks in several states; keeps the test's database
    connection open across WSGI calls."""
    ids = [TaskFactory().pk, TaskFactory(failed=True).pk, TaskFactory(succeeded=True).pk]
    # The WSGI handler closes the database connection after each request, which would
    # end the test's transaction; Django's own test client disconnects it the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        user = grant(UserFactory(username="fuzzer"), *users.OPERATOR, *users.QUEUES,
                     *users.SCHEDULES)
        if "/api/schedules/" in request.node.name:
            from tasks import engine

            ids = [engine.schedules.create(name="fuzzed", type="noop", cron="* * * * *").pk]
        yield Token.objects.create(user=user).key, ids
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_the_schema_covers_every_operation():
    assert set(OPERATIONS) == {
        "GET /api/stats/", "GET /api/tasks/", "POST /api/tasks/", "GET /api/tasks/{id}/",
        "POST /api/tasks/{id}/cancel/", "GET /api/tasks/{id}/history/",
        "POST /api/tasks/{id}/retry/", "GET /api/queues/", "GET /api/queues/{name}/",
        "PATCH /api/queues/{name}/", "POST /api/queues/{name}/pause/",
        "POST /api/queues/{name}/resume/", "GET /api/schedules/", "POST /api/schedules/",
        "GET /api/schedules/{id}/", "PATCH /api/schedules/{id}/", "DELETE /api/schedules/{id}/",
        "POST /api/schedules/{id}/pause/", "POST /api/schedules/{id}/resume/",
        "POST /api/schedules/{id}/run-now/",
    }


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_input_causes_a_server_error_and_responses_match_the_schema(label, fuzz):
    token, task_ids = fuzz
    operation = OPERATIONS[label]

    statuses: list[int] = []
    # Valid requests and requests that break the schema (wrong types, missing fields...),
    # plus requests aimed at existing tasks and at task types that exist, so generated
    # input reaches the code behind the 404s and the type check too.
    strategies = [operation.as_strategy(GenerationMode.POSITIVE),
                  operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{id}" in operation.path:
        strategies += [operation.as_strategy(path_parameters={"id": i}) for i in task_ids]
    if "{name}" in operation.path:
        strategies.append(operation.as_strategy(path_parameters={"name": "default"}))
    if label == "PATCH /api/queues/{name}/":
        strategies += [operation.as_strategy(path_parameters={"name": "default"}, body=body)
                       for body in ({"concurrency_limit": 2}, {"rate_limit": None})]
    if label == "POST /api/tasks/":
        strategies += [operation.as_strategy(body=body) for body in KNOWN_BODIES]
    if label in ("POST /api/schedules/", "PATCH /api/schedules/{id}/"):
        strategies += [operation.as_strategy(body=body, **(
            {"path_parameters": {"id": task_ids[0]}} if "{id}" in label else {}))
            for body in SCHEDULE_BODIES]
    cases = st.one_of(strategies)

    @given(case=cases)
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call(headers={"Authorization": f"Token {token}"})
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    check()
    # The generated input reached the success path too, not only the error answers.
    assert any(code < 300 for code in statuses), sorted(statuses)
