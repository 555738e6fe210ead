"""HTTP plumbing shared by the server's routes: bodies, JSON and E2B-shaped error answers,
chunked streams, noticing a client that went away, and cutting a stream on purpose."""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from tests.e2b_server.state import E2BState, Fault

if TYPE_CHECKING:
    from tests.e2b_server.server import E2BServer

log = logging.getLogger("tests.e2b_server")


class HandlerBase(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "E2BServer"
    stream_broken = False
    _body: bytes | None = None

    def setup(self) -> None:
        super().setup()
        # Streams are many small writes: without this, Nagle plus delayed ACKs add ~40 ms per run.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def state(self) -> E2BState:
        return self.server.state

    def body(self) -> bytes:
        """The request body, read once (dispatch reads it up front so that a keep-alive
        connection never carries an unread body into the next request)."""
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def json_body(self) -> Any:
        raw = self.body()
        return json.loads(raw) if raw else {}

    def send_bytes(self, status: int, data: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), headers=headers)

    def send_empty(self, status: int = 204) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def api_error(self, status: int, message: str) -> None:
        headers = {"Retry-After": "0"} if status == 429 else None
        self.send_json(status, {"code": status, "message": message}, headers=headers)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def client_gone(self) -> bool:
        """Whether the client closed its end (the SDK closes the request to stop a run)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def drop_connection(self) -> None:
        """Close the socket without finishing the response: a stream cut mid-run."""
        self.stream_broken = self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def apply_fault(self, where: str, path: str) -> Fault | None:
        """Serve a status/delay fault if one is armed; returns a "drop" fault for the caller."""
        fault = self.state.take_fault(where, path)
        if fault is None:
            return None
        if fault.action == "delay":
            time.sleep(fault.delay_s)
            return None
        if fault.action == "status":
            self.api_error(fault.status, {401: "Invalid API key", 429: "Rate limit exceeded"}.get(fault.status, "Internal server error"))
            return fault
        return fault  # "drop": the caller decides when
