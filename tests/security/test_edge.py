"""Request bodies are bounded at the edge: real daphne and gunicorn processes, raw sockets.

Each refusal is checked by sending the headers and only part of the body: the answer can
only come promptly if the server decided without reading (or waiting for) the rest.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from rest_framework.authtoken.models import Token

from taskservice import edge
from tests.support import processes

PAYLOAD_LIMIT = 1024
# settings.py keeps the body limit at least 2 x the payload limit + 64 KiB.
BODY_LIMIT = 2 * PAYLOAD_LIMIT + 64 * 1024
SMALL_LIMITS = {"TASKS_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT),
                "TASKS_API_MAX_BODY_BYTES": "1024"}
PROMPT = 5.0  # seconds; the servers would otherwise wait for the body until they time out

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]



class Server:
    def __init__(self, argv: list[str], port: int, log: Path):
        self.port, self.log = port, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=processes.ROOT,
                                         env=processes.process_env(**SMALL_LIMITS),
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

        def up() -> bool:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                return send(self.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Connection: close\r\n\r\n")[0] == 200
            except OSError:
                return False

        processes.wait_until(up, timeout=30, interval=0.2,
                             message=lambda: f"server did not start:\n{log.read_text()}")

    def stop(self) -> None:
        processes.stop(self.proc, signal.SIGTERM, timeout=15)


# One process of each for the module: each test makes its own user and token.
@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker, tmp_path_factory):
    port = processes.free_port()
    with django_db_blocker.unblock():
        server = Server([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                         "taskservice.asgi:application"], port,
                        tmp_path_factory.mktemp("daphne") / "daphne.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, django_db_blocker, tmp_path_factory):
    port = processes.free_port()
    with django_db_blocker.unblock():
        server = Server([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w",
                         "1", "--timeout", "60", "taskservice.wsgi:application"], port,
                        tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    yield server
    server.stop()


@pytest.fixture(params=["daphne", "gunicorn"])
def server(request) -> Server:
    return request.getfixturevalue(request.param)


@pytest.fixture
def token(django_user_model) -> str:
    user = django_user_model.objects.create_superuser("edge", "edge@example.com", "pw-1234567")
    return Token.objects.create(user=user).key


def send(port: int, data: bytes, *, chunks: list[bytes] = (),
         timeout: float = PROMPT) -> tuple[int, dict[str, str], bytes, float]:
    """Send `data` (and `chunks`), then read one response; returns (status, headers, body,
    seconds until the response was complete). The connection is left half-sent."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            for piece in chunks:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: read the answer
        received = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            received += part
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                headers = _headers(head)
                if len(body) >= int(headers.get("content-length", -1)) >= 0:
                    break
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, _headers(head), body, time.monotonic() - started


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}


def post_head(path: str, *, length: int | None, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def assert_too_large(status: int, body: bytes, elapsed: float) -> None:
    assert status == 413, body
    data = json.loads(body)
    assert data["limit"] == BODY_LIMIT and data["setting"] == "TASKS_API_MAX_BODY_BYTES"
    assert "TASKS_API_MAX_BODY_BYTES" in data["detail"]
    assert elapsed < PROMPT


# --- real servers ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/tasks", "/admin/login/", "/health"])
def test_an_oversized_content_length_is_refused_unread(server, token, path):
    # A gigabyte declared, ten bytes sent: the answer comes from the headers alone.
    head = post_head(path, length=10**9, Authorization=f"Token {token}")
    status, headers, body, elapsed = send(server.port, head + b'{"name": ')
    assert_too_large(status, body, elapsed)
    assert headers["content-type"] == "application/json"


def test_a_refusal_is_the_only_answer_to_expect_100_continue(daphne, token):
    head = post_head("/api/tasks", length=10**9, Authorization=f"Token {token}",
                     Expect="100-continue")
    with socket.create_connection(("127.0.0.1", daphne.port), timeout=PROMPT) as sock:
        sock.sendall(head)
        received = b""
        while part := sock.recv(65536):
            received += part
    assert received.startswith(b"HTTP/1.1 413 ")
    assert received.endswith(b'"setting": "TASKS_API_MAX_BODY_BYTES"}')  # nothing after it


def unfinished_chunks(total: int) -> list[bytes]:
    piece = b" " * 8192
    return [chunk(piece)] * (total // len(piece) + 1)


def test_a_chunked_body_is_cut_off_once_past_the_limit(daphne, token):
    # daphne buffers a chunked body until its last chunk: past the limit, and never
    # finished, only a refusal that counts as the bytes arrive can answer.
    head = post_head("/api/tasks", length=None, Authorization=f"Token {token}")
    status, _, body, elapsed = send(daphne.port, head, chunks=unfinished_chunks(BODY_LIMIT))
    assert_too_large(status, body, elapsed)


def test_a_chunked_body_within_the_limit_passes_the_edge(daphne, token):
    payload = json.dumps({"name": "chunked", "type": "noop"}).encode()
    head = post_head("/api/tasks", length=None, Authorization=f"Token {token}")
    status, _, body, _ = send(daphne.port, head, chunks=[chunk(payload[:10]),
                                                        chunk(payload[10:]), b"0\r\n\r\n"])
    # It reached the API, which reads only bodies that declare their length.
    assert status == 400, body
    assert set(json.loads(body)) == {"name", "type"}


def test_wsgi_never_waits_for_a_chunked_body(gunicorn, token):
    # Django reads Content-Length bytes only: the unfinished body is not read at all.
    head = post_head("/api/tasks", length=None, Authorization=f"Token {token}")
    status, _, body, elapsed = send(gunicorn.port, head,
                                    chunks=unfinished_chunks(BODY_LIMIT // 2))
    assert status == 400 and elapsed < PROMPT, body


@pytest.mark.parametrize("credentials", [{}, {"Cookie": "csrftoken=abc; theme=dark"}])
def test_an_anonymous_api_body_gets_its_401_unread(server, credentials):
    head = post_head("/api/tasks", length=BODY_LIMIT - 10, **credentials)
    status, headers, body, elapsed = send(server.port, head + b'{"name": "x"')
    assert status == 401 and elapsed < PROMPT, body
    assert json.loads(body) == {"detail": edge.UNAUTHENTICATED}
    assert headers["www-authenticate"] == "Token"


def test_a_wrong_token_is_refused_before_the_body_is_read(gunicorn):
    # WSGI: credentials are present, so the edge lets it through, and nothing before DRF's
    # authentication reads the body (else the server would wait for the rest of it).
    # (daphne buffers a body within the limit before any of Django runs.)
    head = post_head("/api/tasks", length=BODY_LIMIT - 10, Authorization="Token nope")
    status, _, body, elapsed = send(gunicorn.port, head + b'{"name": "x"')
    assert status == 401 and elapsed < PROMPT, body
    assert json.loads(body)["detail"] == "Invalid token."


def test_an_admin_form_post_without_the_csrf_cookie_is_refused_unread(gunicorn):
    # WSGI only: daphne buffers any body within the limit before Django sees the request.
    head = post_head("/admin/login/", length=BODY_LIMIT - 10).replace(
        b"application/json", b"application/x-www-form-urlencoded")
    status, _, body, elapsed = send(gunicorn.port, head + b"username=x")
    assert status == 403 and elapsed < PROMPT, body


def test_a_complete_api_post_still_works(server, token):
    payload = json.dumps({"name": "edge ok", "type": "noop"}).encode()
    head = post_head("/api/tasks", length=len(payload), Authorization=f"Token {token}")
    status, _, body, _ = send(server.port, head + payload)
    assert status == 201, body


# --- the ASGI wrapper itself, around the real Django app, under any ASGI server --------


def run_asgi(scope_headers: list[tuple[bytes, bytes]], body_chunks, path="/api/tasks"):
    """Drive taskservice.asgi's HTTP app; returns (status, body, receive() calls)."""
    from taskservice.asgi import application

    calls = 0
    sent: list[dict] = []

    finished = False

    async def receive():
        nonlocal calls, finished
        if finished:  # the client waits for the response
            await asyncio.Event().wait()
        calls += 1
        data = next(body_chunks, None)
        finished = data is None
        return {"type": "http.request", "body": data or b"", "more_body": not finished}

    async def send_message(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "headers": [(b"host", b"testserver"), *scope_headers],
             "client": ("127.0.0.1", 1234), "server": ("testserver", 80)}
    asyncio.run(application(scope, receive, send_message))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, calls


def endless(size: int = 16384):
    while True:
        yield b" " * size


def test_asgi_wrapper_refuses_by_content_length_without_receiving(settings):
    status, body, calls = run_asgi([(b"content-length", b"999999999"),
                                    (b"authorization", b"Token x")], endless())
    assert status == 413 and calls == 0
    assert json.loads(body)["setting"] == "TASKS_API_MAX_BODY_BYTES"


def test_asgi_wrapper_stops_receiving_once_past_the_limit(settings):
    settings.TASKS_API_MAX_BODY_BYTES = limit = 100_000
    status, body, calls = run_asgi([(b"transfer-encoding", b"chunked"),
                                    (b"authorization", b"Token x")], endless())
    assert status == 413, body
    assert calls == limit // 16384 + 1  # the message that passed the limit, and no more


def test_asgi_wrapper_answers_anonymous_api_bodies_without_receiving():
    status, body, calls = run_asgi([(b"content-length", b"100")], endless())
    assert status == 401 and calls == 0
    status, body, calls = run_asgi([(b"content-length", b"100"),
                                    (b"cookie", b"sessionid=abc")], iter([b"{}" * 50]))
    assert status == 401 and calls > 0  # a session cookie: Django decides, having read it


# --- the WSGI middleware's reader for bodies of unknown length -----------------------------


def test_wsgi_input_of_a_chunked_body_is_counted(rf, settings):
    settings.TASKS_API_MAX_BODY_BYTES = 100
    seen = {}

    def view(request):
        reader = request.environ["wsgi.input"]
        seen["first"] = reader.read(60)
        with pytest.raises(RequestDataTooBig, match="TASKS_API_MAX_BODY_BYTES"):
            reader.read(60)
        return HttpResponse("ok")

    request = rf.post("/upload", data=b"x" * 500, content_type="application/octet-stream",
                      HTTP_TRANSFER_ENCODING="chunked")
    del request.META["CONTENT_LENGTH"]
    assert edge.BodyLimitMiddleware(view)(request).status_code == 200
    assert seen["first"] == b"x" * 60
