"""An unhandled error under /api/ is a JSON 500 without details, and is logged.

The failing views exist only in this module, which serves as the URLconf of its tests
(with the service's own URLs and handler500 behind them).
"""

from __future__ import annotations

import logging

import pytest
from django.test import Client
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from taskservice import urls as service_urls

SECRET = "connection string postgres://admin:hunter2@db"


class FailingApiView(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError(SECRET)


def failing_plain_view(request):
    raise RuntimeError(SECRET)


class FailingMiddleware:
    """Fails for one path, before any view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.endswith("/middleware-fails"):
            raise RuntimeError(SECRET)
        return self.get_response(request)


urlpatterns = [
    path("api/test-fails", FailingApiView.as_view()),
    path("api/test-plain-fails", failing_plain_view),
    path("elsewhere-fails", failing_plain_view),
    *service_urls.urlpatterns,
]
handler500 = service_urls.handler500

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def assert_json_500(response) -> None:
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Internal server error"}
    assert b"hunter2" not in response.content and b"Traceback" not in response.content


def test_an_error_in_an_api_view_is_a_json_500_and_is_logged(client, caplog):
    with caplog.at_level(logging.ERROR):
        assert_json_500(client.get("/api/test-fails"))
    logged = [r for r in caplog.records if r.name == "tasks.api.exceptions"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert logged[0].exc_info[0] is RuntimeError and "/api/test-fails" in logged[0].getMessage()


def test_an_error_in_a_plain_view_under_api_is_a_json_500(client, caplog):
    with caplog.at_level(logging.ERROR):
        assert_json_500(client.get("/api/test-plain-fails"))
    assert any(r.name == "django.request" and r.exc_info for r in caplog.records)


def test_an_error_in_middleware_for_an_api_path_is_a_json_500(client, settings, caplog):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.FailingMiddleware"]
    with caplog.at_level(logging.ERROR):
        assert_json_500(Client(raise_request_exception=False).get("/api/middleware-fails"))
    assert any(r.name == "django.request" and r.exc_info for r in caplog.records)


def test_errors_elsewhere_keep_the_html_page(client):
    response = client.get("/elsewhere-fails")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert b"hunter2" not in response.content


def test_handled_api_errors_keep_their_status(client):
    assert client.get("/api/tasks").status_code == 401
    assert client.get("/api/no-such-thing").status_code in (401, 404)
