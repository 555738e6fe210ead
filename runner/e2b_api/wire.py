"""ASGI plumbing for the E2B-compatible API: the request, capped bodies, JSON and E2B-shaped
error answers, and chunked streams that notice a client going away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class StreamCut(Exception):
    """Raised to make an ASGI server drop a streaming response's connection (see Request.stream_cut)."""


class HttpError(Exception):
    """Answer `status` with `body` (a JSON payload, or text when `text` is set), then stop."""

    def __init__(self, status: int, body: Any, *, text: bool = False, retry_after_s: int = 1) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.text = text
        self.retry_after_s = retry_after_s  # sent with a 429


def api_error(status: int, message: str) -> HttpError:
    """E2B's control-plane error: {"code": status, "message": ...}."""
    return HttpError(status, {"code": status, "message": message})


def rpc_error(status: int, code: str, message: str) -> HttpError:
    """A Connect RPC error (envd): {"code": "not_found", "message": ...}."""
    return HttpError(status, {"code": code, "message": message})


def text_error(status: int, message: str) -> HttpError:
    """The code interpreter's errors are plain text (FastAPI's PlainTextResponse)."""
    return HttpError(status, message, text=True)


class Request:
    """One HTTP request: method, path, query, headers (lower-cased), and its body read on demand."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, max_body_bytes: int) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.max_body_bytes = max_body_bytes
        self._body: bytes | None = None
        self.disconnected = False
        self.started = False
        self.streaming = False  # a chunked response is open (stream_start, not yet stream_end)

    async def body(self) -> bytes:
        """The whole body; 413 (E2B's shape) past `max_body_bytes`, without reading the rest."""
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise api_error(413, f"request body is larger than {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise api_error(413, f"request body is larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def json(self, *, error: Callable[[int, str], HttpError] = api_error) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); `error(400, ...)` when it isn't one."""
        raw = await self.body()
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise error(400, f"malformed JSON body: {exc}") from None
        if not isinstance(value, dict):
            raise error(400, "the JSON body must be an object")
        return value

    # --- answers ---------------------------------------------------------------------------------

    async def respond(self, status: int, body: bytes, content_type: str = "application/json",
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.started = True
        await self.send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                        *(headers or [])],
        })
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, payload: Any) -> None:
        await self.respond(status, json.dumps(payload).encode())

    async def respond_empty(self, status: int = 204) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await self.send({"type": "http.response.body", "body": b""})

    async def respond_error(self, error: HttpError) -> None:
        if error.text:
            await self.respond(error.status, str(error.body).encode(), "text/plain; charset=utf-8")
        else:
            headers = [(b"retry-after", str(error.retry_after_s).encode())] if error.status == 429 else None
            await self.respond(error.status, json.dumps(error.body).encode(), headers=headers)

    async def stream_start(self, content_type: str) -> None:
        self.started = self.streaming = True
        await self.send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type.encode())]})

    async def stream_write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def stream_end(self, last: bytes = b"") -> None:
        self.streaming = False
        await self.send({"type": "http.response.body", "body": last, "more_body": False})

    async def stream_cut(self) -> None:
        """Close the connection under an open stream without its end (no last chunk), as E2B's
        edge does when the sandbox behind it dies: the SDK then reads a protocol error, asks
        whether the sandbox still runs, and raises "the sandbox was killed ...". Under Daphne
        `send` is `partial(server.handle_reply, protocol)`: the protocol's transport is closed
        once what was written is flushed. Any other server gets an exception after the start,
        on which an ASGI server drops the connection."""
        self.streaming = False
        args = getattr(self.send, "args", ())
        transport = getattr(args[0], "transport", None) if args else None
        if transport is not None and hasattr(transport, "loseConnection"):
            transport.loseConnection()
            return
        raise StreamCut("the stream was cut: the sandbox behind it was killed")

    def disconnect_watch(self) -> asyncio.Future[None]:
        """A future that resolves when the client goes away (call after the body is read)."""

        async def watch() -> None:
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    return

        return asyncio.ensure_future(watch())
