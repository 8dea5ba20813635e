"""Content Security Policy on every page, and no page that needs more than it allows.

The browser's own verdict is in tests/acceptance/test_csp_browser.py; here every rendered
page is checked for scripts and styles the policy would block.
"""

from __future__ import annotations

import re

import pytest

from tasks import engine

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)([^>]*)>", re.IGNORECASE)
INLINE_STYLE = re.compile(rb"<style([^>]*)>", re.IGNORECASE)
HANDLER_ATTR = re.compile(rb"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (d.split() for d in header.split("; "))}


def nonce_of(response) -> str | None:
    for value in policy(response).get("script-src", []):
        if value.startswith("'nonce-"):
            return value[len("'nonce-"):-1]
    return None


def assert_allowed_by_policy(response) -> None:
    """Every inline script or style carries this response's nonce (JSON data blocks are
    not run); no inline event handlers."""
    nonce = nonce_of(response)
    body = response.content
    for attrs in INLINE_SCRIPT.findall(body) + INLINE_STYLE.findall(body):
        if b'type="application/json"' in attrs:
            continue
        assert nonce and f'nonce="{nonce}"'.encode() in attrs, attrs
    assert not HANDLER_ATTR.search(body), HANDLER_ATTR.search(body)


def test_the_policy_is_closed_by_default(client):
    rules = policy(client.get("/admin/login/"))
    assert rules["default-src"] == ["'self'"]
    assert rules["script-src"][0] == "'self'"
    assert all(v.startswith("'nonce-") for v in rules["script-src"][1:])  # where one is used
    assert rules["object-src"] == ["'none'"] and rules["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in str(rules) and "'unsafe-eval'" not in str(rules)


def test_api_answers_carry_the_policy_too(client):
    assert policy(client.get("/api/tasks"))["default-src"] == ["'self'"]


def test_admin_pages_dashboard_and_api_docs_fit_the_policy(admin_client):
    task = engine.enqueue(name="csp", type="noop")
    pages = ["/admin/", "/admin/tasks/task/", f"/admin/tasks/task/{task.pk}/change/",
             "/admin/tasks/task/add/", "/admin/dashboard/", "/api/docs/"]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert_allowed_by_policy(response)


def test_swagger_ui_runs_its_inline_script_by_nonce(admin_client):
    response = admin_client.get("/api/docs/")
    nonce = nonce_of(response)
    assert nonce and f"'nonce-{nonce}'" in policy(response)["style-src"]
    assert f'<script nonce="{nonce}">'.encode() in response.content
    assert nonce != nonce_of(admin_client.get("/api/docs/"))  # a new one per response
