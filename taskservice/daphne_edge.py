"""The edge's body rule inside daphne, where it must run to mean anything.

daphne's request (Twisted's `http.Request`) buffers the whole body, to memory or a temp
file, and only then calls the ASGI app: an ASGI wrapper alone sees a 1 GB body after it
was read. This request class applies `taskservice.edge.refusal` when the headers are
complete (Twisted's `gotLength`), counts the bytes of a chunked body as they arrive, and
answers and closes the connection at once, keeping nothing.

It reads the request line from Twisted's channel (`_command`, `_path`): Twisted keeps it
there until the body is complete, and offers it nowhere else at this point.
"""

from __future__ import annotations

from io import RawIOBase
from urllib.parse import unquote

from daphne import http_protocol
from django.conf import settings
from twisted.web import http

from taskservice import edge

_REASONS = {400: b"Bad Request", 401: b"Unauthorized", 413: b"Content Too Large"}


class _Discard(RawIOBase):
    """Stands in for the body file of a refused request."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


class BoundedWebRequest(http_protocol.WebRequest):
    _refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        if not isinstance(self.channel, http.HTTPChannel):  # HTTP/2: BodyLimit still applies
            super().gotLength(length)
            return
        headers = {name.decode("latin1").lower(): b", ".join(values).decode("latin1")
                   for name, values in self.requestHeaders.getAllRawHeaders()}
        chunked = length is None and "chunked" in headers.get("transfer-encoding", "").lower()
        raw_path = getattr(self.channel, "_path", b"/").split(b"?", 1)[0]
        path = unquote(raw_path.decode("latin1"))
        refused = edge.refusal(path, headers, length, chunked)
        if refused is not None:
            self._refuse(refused)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self._refused:
            return
        self._received += len(data)
        if self._received > settings.TASKS_API_MAX_BODY_BYTES:
            self._refuse(edge.too_large())
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version) -> None:  # noqa: N802
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self, refused: edge.Refusal) -> None:
        self._refused = True
        # Twisted answers `Expect: 100-continue` right after gotLength: not to this one.
        self.requestHeaders.removeHeader(b"Expect")
        old, self.content = getattr(self, "content", None), _Discard()
        if old is not None and old is not self.content:
            old.close()
        status, body, headers = edge.encode(refused)
        head = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
                *(name + b": " + value for name, value in headers),
                b"Connection: close", b"", b""]
        self.channel.transport.write(b"\r\n".join(head) + body)
        self.channel.loseConnection()


def install() -> None:
    """Make daphne build BoundedWebRequest for every HTTP request (idempotent)."""
    http_protocol.WebRequest = BoundedWebRequest
