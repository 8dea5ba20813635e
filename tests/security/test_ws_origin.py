"""The websocket Origin must match the connection's own scheme, host and port, or be one of
CSRF_TRUSTED_ORIGINS: through the real ASGI application with WebsocketCommunicator."""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from tasks.live.consumers import CLOSE_UNAUTHENTICATED
from tasks.live.relay import relay
from taskservice.asgi import application
from taskservice.ws_origin import OriginValidator, parse_origin

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/ws/tasks/dashboard/"


@pytest.fixture(autouse=True)
def _hosts(settings):
    settings.ALLOWED_HOSTS = ["tasks.example.com", "testserver"]
    settings.CSRF_TRUSTED_ORIGINS = []
    yield
    relay.shutdown()


def handshake(headers: dict[bytes, bytes], scheme: str | None = None) -> bool:
    """True when the origin check let the connection through to the consumer.

    An anonymous client is accepted by the consumer only to be told why it is closed
    (4401); the origin check instead refuses the handshake itself.
    """
    comm = WebsocketCommunicator(application, DASHBOARD, headers=list(headers.items()))
    if scheme:
        comm.scope["scheme"] = scheme

    async def scenario() -> bool:
        connected, _ = await comm.connect(timeout=5)
        if connected:
            error = await comm.receive_json_from(timeout=5)
            assert error["code"] == CLOSE_UNAUTHENTICATED
            await comm.disconnect()
        return connected

    return asyncio.run(scenario())


def test_the_same_origin_passes():
    assert handshake({b"host": b"tasks.example.com", b"origin": b"http://tasks.example.com"})
    assert handshake({b"host": b"tasks.example.com:8000",
                      b"origin": b"http://tasks.example.com:8000"})
    assert handshake({b"host": b"tasks.example.com", b"origin": b"https://tasks.example.com"},
                     scheme="wss")


@pytest.mark.parametrize(("host", "origin", "scheme"), [
    (b"tasks.example.com", b"http://tasks.example.com:8080", None),  # another port
    (b"tasks.example.com:8000", b"http://tasks.example.com", None),
    (b"tasks.example.com", b"https://tasks.example.com", None),  # another scheme
    (b"tasks.example.com", b"http://tasks.example.com", "wss"),
    (b"tasks.example.com", b"http://evil.example", None),  # another host
    (b"evil.example", b"http://evil.example", None),  # a Host not in ALLOWED_HOSTS
    (b"tasks.example.com", b"null", None),
    (b"tasks.example.com", b"http://tasks.example.com/path", None),
    (b"tasks.example.com", b"", None),
])
def test_any_other_origin_is_refused(host, origin, scheme):
    headers = {b"host": host}
    if origin:
        headers[b"origin"] = origin
    assert not handshake(headers, scheme=scheme)


def test_a_missing_origin_or_host_is_refused():
    assert not handshake({b"host": b"tasks.example.com"})
    assert not handshake({b"origin": b"http://tasks.example.com"})


def test_csrf_trusted_origins_pass_with_their_scheme_and_port(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://tasks.example.com", "https://*.example.org:8443"]
    host = {b"host": b"tasks.example.com"}
    assert handshake({**host, b"origin": b"https://tasks.example.com"})  # plain ws to us
    assert handshake({**host, b"origin": b"https://admin.example.org:8443"})
    assert not handshake({**host, b"origin": b"https://admin.example.org"})
    assert not handshake({**host, b"origin": b"http://admin.example.org:8443"})
    assert not handshake({**host, b"origin": b"https://tasks.example.com:444"})


def test_the_proxy_header_says_the_connection_was_https(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    base = {b"host": b"tasks.example.com", b"origin": b"https://tasks.example.com"}
    assert handshake({**base, b"x-forwarded-proto": b"https"})
    assert not handshake(base)
    assert not handshake({**base, b"x-forwarded-proto": b"http"})


def test_origins_are_parsed_strictly():
    assert parse_origin("HTTPS://Tasks.Example.com") == ("https", "tasks.example.com", 443)
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    for bad in ("", "null", "ftp://x", "http://", "http://a:99999", "http://u@a", "http://a/?q"):
        assert parse_origin(bad) is None, bad


def test_the_validator_serves_websockets_only():
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(OriginValidator(application)({"type": "http"}, None, None))
