"""Request bodies bounded at the edge, before anything is buffered.

One rule, three places it is enforced:
- `BodyLimit`, an ASGI wrapper around the HTTP app: it answers from the headers alone
  when it can, and counts bytes as they stream for chunked or unknown-length bodies.
- `taskservice.daphne_edge`: daphne's Twisted layer buffers a whole body before the ASGI
  app is even called, so the same rule runs there too, as the headers arrive.
- `BodyLimitMiddleware` for WSGI (gunicorn), first in MIDDLEWARE.

The rule: a declared or counted body over TASKS_API_MAX_BODY_BYTES gets a 413; a body sent
to /api/ with neither an Authorization header nor a session cookie gets its 401 unread,
since DRF would refuse it after reading it anyway (unless anonymous access is on).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"
UNAUTHENTICATED = "Authentication credentials were not provided."

Refusal = tuple[int, dict, dict[str, str]]  # status, JSON body, extra headers


def too_large(size: int | None = None) -> Refusal:
    limit = settings.TASKS_API_MAX_BODY_BYTES
    told = f"{size} bytes; the limit is" if size is not None else "over the limit of"
    detail = f"Request body too large: {told} {limit} bytes (TASKS_API_MAX_BODY_BYTES)."
    return 413, {"detail": detail, "limit": limit, "setting": "TASKS_API_MAX_BODY_BYTES"}, {}


def unauthenticated() -> Refusal:
    return 401, {"detail": UNAUTHENTICATED}, {"WWW-Authenticate": "Token"}


def refusal(path: str, headers: dict[str, str], length: int | None,
            chunked: bool) -> Refusal | None:
    """What to answer from the request line and headers alone, or None to go on.

    `headers` has lower-case names; `length` is the declared Content-Length, if any.
    """
    if length is not None and length > settings.TASKS_API_MAX_BODY_BYTES:
        return too_large(length)
    has_body = chunked or (length or 0) > 0
    if (has_body and path.startswith(API_PREFIX)
            and not settings.TASKS_API_ALLOW_ANONYMOUS
            and "authorization" not in headers
            and not _has_session_cookie(headers.get("cookie", ""))):
        return unauthenticated()
    return None


def _has_session_cookie(cookie_header: str) -> bool:
    name = settings.SESSION_COOKIE_NAME
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return True
    return False


def parse_length(raw: str | None) -> int | None:
    """Content-Length as an int; None when absent. ValueError when malformed."""
    if raw is None or raw == "":
        return None
    value = int(raw.strip())
    if value < 0:
        raise ValueError(raw)
    return value


def encode(refused: Refusal) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    status, body, extra = refused
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(data)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in extra.items())]
    return status, data, headers


# --- ASGI -------------------------------------------------------------------------------

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodyLimit:
    """ASGI wrapper: refuse by headers before calling the app, then count streamed bytes."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _asgi_headers(scope.get("headers", ()))
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = parse_length(headers.get("content-length"))
        except ValueError:
            return await _respond(send, (400, {"detail": "Malformed Content-Length."}, {}))
        refused = refusal(scope.get("path", ""), headers, length, chunked)
        if refused is not None:
            return await _respond(send, refused)

        limit = settings.TASKS_API_MAX_BODY_BYTES
        received = 0
        exceeded = started = False

        async def counting_receive() -> dict:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # To the app the client is gone: it drops what it buffered and returns
                    # (Django closes its body file), and nothing more is received.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
        if exceeded and not started:
            await _respond(send, too_large())


def _asgi_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin1").lower()
        text = value.decode("latin1")
        headers[key] = f"{headers[key]}; {text}" if key == "cookie" and key in headers else text
    return headers


async def _respond(send: Send, refused: Refusal) -> None:
    status, body, headers = encode(refused)
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --- WSGI -------------------------------------------------------------------------------


class CountingReader:
    """wsgi.input for a body of unknown length: raises once more than `limit` bytes came."""

    def __init__(self, stream, limit: int):
        self._stream, self._limit, self._count = stream, limit, 0

    def _counted(self, data: bytes) -> bytes:
        self._count += len(data)
        if self._count > self._limit:
            raise RequestDataTooBig(too_large()[1]["detail"])
        return data

    def read(self, size: int = -1, /) -> bytes:
        return self._counted(self._stream.read(size))

    def readline(self, size: int = -1, /) -> bytes:
        return self._counted(self._stream.readline(size))


class BodyLimitMiddleware:
    """WSGI side of the rule, first in MIDDLEWARE: nothing has read the body yet."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        environ = getattr(request, "environ", None)
        if environ is None:  # ASGI: BodyLimit (and daphne's edge) already ran
            return self.get_response(request)
        headers = {"cookie": request.META.get("HTTP_COOKIE", "")}
        if "HTTP_AUTHORIZATION" in request.META:
            headers["authorization"] = request.META["HTTP_AUTHORIZATION"]
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = parse_length(request.META.get("CONTENT_LENGTH"))
        except ValueError:
            return _json_response((400, {"detail": "Malformed Content-Length."}, {}))
        refused = refusal(request.path, headers, length, chunked)
        if refused is not None:
            return _json_response(refused)
        if chunked and length is None:
            # Django reads Content-Length bytes only, and DRF only bodies that declare one,
            # so a chunked body goes unread; anything that reads the raw input is bounded.
            environ["wsgi.input"] = CountingReader(environ["wsgi.input"],
                                                   settings.TASKS_API_MAX_BODY_BYTES)
        return self.get_response(request)


def _json_response(refused: Refusal) -> HttpResponse:
    # Outside CommonMiddleware, so the length is set here (else the server chunks it).
    status, body, extra = refused
    response = JsonResponse(body, status=status, headers=extra)
    response["Content-Length"] = str(len(response.content))
    return response
