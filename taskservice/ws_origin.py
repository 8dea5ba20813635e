"""Websocket Origin check by scheme, host and port.

A browser sends `Origin` with every websocket handshake; a page on another site cannot
forge it. The connection is accepted when the Origin is this request's own origin
(the scheme of the connection, the Host header, and its port) or is listed in
CSRF_TRUSTED_ORIGINS (the same list, with the same `*.` wildcard, that Django uses for
form posts). Channels' AllowedHostsOriginValidator compared the host only, so
http://tasks.example.com:8080 passed for wss://tasks.example.com.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower().rstrip("."), port or DEFAULT_PORTS.get(scheme, 0)


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header value; None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return _origin(parts.scheme, parts.hostname, port)


def _is_secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        meta_name, expected = proxy
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = headers.get(name, b"").decode("latin1").split(",")[0].strip()
        return value == expected
    return False


def own_origin(scope: dict, headers: dict[bytes, bytes]) -> tuple[str, str, int] | None:
    """The origin the handshake was made to, if its Host is one of ALLOWED_HOSTS."""
    host_header = headers.get(b"host", b"").decode("latin1")
    domain, port = split_domain_port(host_header)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if _is_secure(scope, headers) else "http"
    return _origin(scheme, domain.strip("[]"), int(port) if port else None)


def trusted(origin: tuple[str, str, int]) -> bool:
    """Whether CSRF_TRUSTED_ORIGINS lists the origin (`https://*.example.com` included)."""
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        parts = urlsplit(entry)
        try:
            wanted_port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
        except ValueError:
            continue
        pattern = (parts.hostname or "").removeprefix("*")
        if (parts.scheme == scheme and wanted_port == port and pattern
                and is_same_domain(host, pattern)):
            return True
    return False


class OriginValidator:
    """ASGI middleware for websocket connections; refuses with Channels' denier."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("OriginValidator serves websocket connections only")
        if self.allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    @staticmethod
    def allowed(scope: dict) -> bool:
        headers = dict(scope.get("headers", ()))
        raw = headers.get(b"origin")
        origin = parse_origin(raw.decode("latin1")) if raw else None
        if origin is None:
            return False
        return origin == own_origin(scope, headers) or trusted(origin)
