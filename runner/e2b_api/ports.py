"""A sandbox's own ports through Sandpit (E2B's `get_host(port)`): one HTTP/1.1 request relayed to
whatever listens on that port on the sandbox's loopback, and its response streamed back.

Reached as `<port>-<sandbox id>.<domain>` (the host `get_host` gives when API_SANDBOX_DOMAIN is
set) or with `E2b-Sandbox-Port`/`E2b-Sandbox-Id` headers, and authenticated as every sandbox
route is: by the sandbox's traffic token (`E2B-Traffic-Access-Token`), which is not passed on.
Only the local backend has it (`open_port`). Nothing listening: E2B's 502 "port is not open".
WebSocket upgrades are not relayed.
"""

from __future__ import annotations

import asyncio

import h11

from runner.e2b_api.wire import HttpError, Request, api_error
from runner.sandboxes.base import PortClosed, Sandbox

HEAD_TIMEOUT_S = 60.0  # for the response's status and headers
READ_IDLE_S = 300.0  # between two chunks of its body
# Ours (routing, tokens) and hop-by-hop headers: not passed on.
DROPPED = {"e2b-traffic-access-token", "x-access-token", "e2b-sandbox-id", "e2b-sandbox-port", "connection",
           "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "content-length"}


def port_of(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 65535 else None


async def relay(request: Request, handle: Sandbox, sandbox_id: str, port: int) -> None:
    """Relay `request` to `port` in the sandbox behind `handle`; its answer goes to the client."""
    open_port = getattr(handle, "open_port", None)  # beyond the Protocol: the local backend has it
    if open_port is None:
        raise api_error(501, "reaching a sandbox's ports (get_host) is not supported by this Sandpit's sandbox backend")
    if request.headers.get("upgrade"):
        raise api_error(501, "WebSocket and other upgrades to a sandbox's port are not supported by Sandpit")
    body = await request.body()
    try:
        reader, writer = await open_port(port)
    except PortClosed:
        raise HttpError(502, {"code": 502, "message": "The sandbox is running but port is not open",
                              "sandboxId": sandbox_id, "port": port}) from None
    try:
        await _exchange(request, body, reader, writer, port)
    finally:
        writer.close()


async def _exchange(request: Request, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    port: int) -> None:
    conn = h11.Connection(h11.CLIENT)
    query = request.scope.get("query_string", b"")
    target = request.scope.get("raw_path") or request.path.encode()
    headers = [(k, v) for k, v in request.headers.items() if k not in DROPPED and k != "host"]
    headers = [("host", f"localhost:{port}"), *headers, ("content-length", str(len(body))), ("connection", "close")]
    writer.write(conn.send(h11.Request(method=request.method, target=target + (b"?" + query if query else b""),
                                       headers=headers)))
    if body:
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
    try:
        async with asyncio.timeout(HEAD_TIMEOUT_S):
            event = await _next(conn, reader)
            while isinstance(event, h11.InformationalResponse):
                event = await _next(conn, reader)
    except (TimeoutError, h11.ProtocolError, ConnectionError) as exc:
        raise api_error(502, f"the server on port {port} in the sandbox gave no valid HTTP response: {exc or 'timed out'}") from None
    if not isinstance(event, h11.Response):
        raise api_error(502, f"the server on port {port} in the sandbox gave no valid HTTP response")
    kept = [(k, v) for k, v in event.headers if k.decode("latin-1").lower() not in DROPPED]
    request.started = request.streaming = True
    await request.send({"type": "http.response.start", "status": event.status_code, "headers": kept})
    try:
        while True:
            async with asyncio.timeout(READ_IDLE_S):
                event = await _next(conn, reader)
            if isinstance(event, h11.Data):
                await request.stream_write(bytes(event.data))
            else:
                break  # EndOfMessage, or the connection closed
    except (TimeoutError, h11.ProtocolError, ConnectionError):
        pass  # a cut body: end it where it stopped
    await request.stream_end()


async def _next(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        if event is h11.PAUSED:
            return h11.ConnectionClosed()
        return event
