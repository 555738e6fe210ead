"""Sandpit's server entry point: Daphne, with a request class that bounds what a request body costs.

`python -m project.serve [daphne's options] project.asgi:application` takes Daphne's own command line
(bin/serve, the README's systemd unit and the tests start it so). It changes how a request body
is received and handed on (`BoundedRequest`, `StreamedBodyQueue`):
- Twisted's `http.Request.requestReceived` parses every form or multipart POST body into memory
  (`request.args`) before Daphne hands the request on; a 100 MiB anonymous POST cost 1.1 GiB. This is
  a known Twisted limitation (https://github.com/twisted/twisted/issues/4519 and /issues/5511).
  Daphne never reads `request.args` and Django parses the body itself (uploads stream to temporary
  files), so that parsing is skipped for every request.
- Daphne would also queue the whole body for the application at once (its size again in memory);
  here the application's input queue (`StreamedBodyQueue`) reads it from Twisted's file one chunk
  per `receive()`, as the application asks for it.
- A body over its cap is refused with 413 as it arrives: by Content-Length before any of it is read,
  and a chunked one once its running count passes the cap. A request with no credential (no session
  cookie, no `X-API-Key`, no `X-Access-Token`) has the small HTTP_ANONYMOUS_BODY_MAX_BYTES; others
  HTTP_BODY_MAX_BYTES, the largest upload. A forged credential only reaches the larger cap.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import partial
from io import BytesIO
from typing import IO, Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from django.conf import settings
from twisted.web import http
from twisted.web.http_headers import Headers

log = logging.getLogger(__name__)

CREDENTIAL_HEADERS = (b"x-api-key", b"x-access-token")
BODY_CHUNK_BYTES = 64 * 1024


def body_max_bytes(headers: Headers) -> int:
    """The largest body a request with these headers may send."""
    if any(headers.hasHeader(name) for name in CREDENTIAL_HEADERS):
        return int(settings.HTTP_BODY_MAX_BYTES)
    cookie_name = settings.SESSION_COOKIE_NAME.encode("latin-1")
    for line in headers.getRawHeaders(b"cookie") or []:
        for pair in line.split(b";"):
            if pair.strip().partition(b"=")[0] == cookie_name:
                return int(settings.HTTP_BODY_MAX_BYTES)
    return int(settings.HTTP_ANONYMOUS_BODY_MAX_BYTES)


class BoundedRequest(WebRequest):
    """Daphne's request without Twisted's body parsing, and with a body cap (see the module)."""

    _body_max_bytes = 0
    _body_bytes = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        self._body_max_bytes = body_max_bytes(self.requestHeaders)
        if length is not None and length > self._body_max_bytes:
            self._refuse()
        super().gotLength(0 if self._refused else length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self._body_max_bytes:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Twisted's, minus its form and multipart parsing (twisted#4519, twisted#5511)."""
        if self._refused:
            return
        self.args: dict[bytes, list[bytes]] = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = self.uri.split(b"?", 1)[0]
        # Daphne queues an empty body; StreamedBodyQueue hands out this file's instead.
        self.body_size_bytes = self.content.seek(0, 2)
        self.content.seek(0, 0)
        self.body_file: IO[bytes] | None = self.content
        self.content = BytesIO()
        self.process()

    def finish(self) -> None:
        super().finish()
        self._close_body()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self._close_body()

    def _close_body(self) -> None:
        body_file, self.body_file = getattr(self, "body_file", None), None
        if body_file is not None:
            body_file.close()

    def _refuse(self) -> None:
        """413 and close, before the rest of the body is read (no 100 Continue is sent)."""
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")
        log.info("413 for %s: its body is over %d bytes", self.channel.transport.getPeer(), self._body_max_bytes)
        body = b"Request body too large: the limit is %d bytes.\n" % self._body_max_bytes
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.channel.loseConnection()


class StreamedBodyQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An HTTP application's input queue: Daphne's (empty) body message is replaced by the request's
    body, read from its file BODY_CHUNK_BYTES per `get()`; other messages pass as they are."""

    def __init__(self, request: BoundedRequest) -> None:
        super().__init__()
        self._request: BoundedRequest | None = request
        self._streaming = False

    async def get(self) -> dict[str, Any]:
        if self._request is not None and not self._streaming:
            message: dict[str, Any] = await super().get()
            if message.get("type") != "http.request":
                return message
            self._streaming = True
        if self._request is None:
            return await super().get()
        body_file = self._request.body_file
        if body_file is None or body_file.closed:  # the response is over, or the client gone
            chunk, more = b"", False
        else:
            chunk = body_file.read(BODY_CHUNK_BYTES)
            more = body_file.tell() < self._request.body_size_bytes
        if not more:
            self._request = None
        return {"type": "http.request", "body": chunk, "more_body": more}


class BoundedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr: Any) -> http.HTTPChannel:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        return protocol


class SandpitServer(Server):
    """Daphne's server, serving HTTP with `BoundedHTTPFactory` and `StreamedBodyQueue`."""

    # Daphne's `run()` builds its HTTPFactory inline; this swaps it for ours as it is assigned.
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, BoundedHTTPFactory) else BoundedHTTPFactory(self)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> asyncio.Queue | None:  # type: ignore[type-arg]
        """Daphne's, with a StreamedBodyQueue for an HTTP request."""
        assert "application_instance" not in self.connections[protocol]
        input_queue: asyncio.Queue = StreamedBodyQueue(protocol) if isinstance(protocol, BoundedRequest) else asyncio.Queue()  # type: ignore[type-arg]
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol))
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(application_instance, loop=asyncio.get_event_loop())
        return input_queue


class SandpitCommandLineInterface(CommandLineInterface):
    server_class = SandpitServer


def main(argv: list[str] | None = None) -> None:
    SandpitCommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
