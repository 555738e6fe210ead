"""envd's directory watches: Filesystem/WatchDir (a Connect server stream, the async SDK) and
CreateWatcher / GetWatcherEvents / RemoveWatcher (polled, the sync SDK).

A watch is the sandbox backend's (`handle.watch(path, recursive=)`, inotify on the local
backend, bounded per sandbox); a polled watcher is kept here by a random id, with the sandbox it
belongs to (an id from another sandbox is not found), until RemoveWatcher or the sandbox's end.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import secrets
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from runner.e2b_api.wire import HttpError, Request, rpc_error
from runner.sandboxes.base import Sandbox

END_STREAM = 0x02
# A missing or unreadable Keepalive-Ping-Interval: envd's default.
KEEPALIVE_DEFAULT_S = 50.0

# `describe(path)`: the EntryInfo of a sandbox path, or None when it is gone.
Describe = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass
class Watcher:
    sandbox_id: str
    watch: Any  # the backend's watch (runner.sandboxes.local.watch.Watch)
    path: str  # the watched folder, absolute
    include_entry: bool


_watchers: dict[str, Watcher] = {}


def _envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


async def _start(handle: Sandbox, path: str, recursive: bool, is_dir: Callable[[str], Awaitable[bool]]) -> Any:
    """The backend's new watch on `path` (a folder), or the Connect error envd gives."""
    start = getattr(handle, "watch", None)  # beyond the Protocol: the local backend has it
    if start is None:
        raise rpc_error(501, "unimplemented", "this sandbox backend can't watch folders")
    if not await is_dir(path):
        raise rpc_error(400, "invalid_argument", f"path {path[:300]} is not a directory")
    try:
        return await start(path, recursive=recursive)
    except FileNotFoundError:
        raise rpc_error(404, "not_found", f"path {path[:300]} not found") from None
    except ValueError as exc:
        status, code = (429, "resource_exhausted") if "SANDBOX_WATCHERS_MAX" in str(exc) else (400, "invalid_argument")
        raise rpc_error(status, code, str(exc)) from None
    except OSError as exc:
        raise rpc_error(500, "internal", f"the watch could not be set: {exc.strerror or exc}") from None


async def _events(watcher: Watcher, batch: list[tuple[str, str]], describe: Describe) -> list[dict[str, Any]]:
    """envd's FilesystemEvent messages for a batch of (type, name)."""
    out = []
    for kind, name in batch:
        event: dict[str, Any] = {"name": name, "type": f"EVENT_TYPE_{kind.upper()}"}
        if watcher.include_entry:
            found = await describe(posixpath.normpath(posixpath.join(watcher.path, name)))
            if found is not None:
                event["entry"] = found
        out.append(event)
    return out


def _overflow(exc: Exception) -> HttpError:
    return rpc_error(429, "resource_exhausted", str(exc))


async def watch_dir(request: Request, handle: Sandbox, sandbox_id: str, message: dict[str, Any], path: str,
                    is_dir: Callable[[str], Awaitable[bool]], describe: Describe) -> None:
    """Filesystem/WatchDir: a start event, then the folder's events as they come, keepalives
    while none do; ends at the client's deadline (deadline_exceeded), on a bound
    (resource_exhausted) or with the sandbox (unavailable). The client going away ends the watch."""
    watch = await _start(handle, path, bool(message.get("recursive")), is_dir)
    watcher = Watcher(sandbox_id, watch, path, bool(message.get("includeEntry")))
    timeout_ms = request.headers.get("connect-timeout-ms", "")
    deadline = asyncio.get_running_loop().time() + int(timeout_ms) / 1000 if timeout_ms.isdigit() and int(timeout_ms) > 0 else None
    try:
        keepalive_s = max(float(request.headers.get("keepalive-ping-interval", "")), 1.0)
    except ValueError:
        keepalive_s = KEEPALIVE_DEFAULT_S
    gone = request.disconnect_watch()
    try:
        await request.stream_start("application/connect+json")
        await request.stream_write(_envelope({"start": {}}))
        while True:
            wait_s = keepalive_s if deadline is None else min(keepalive_s, deadline - asyncio.get_running_loop().time())
            if wait_s <= 0:
                await request.stream_end(_envelope({"error": {"code": "deadline_exceeded", "message": "the watch reached its timeout"}}, END_STREAM))
                return
            got = asyncio.ensure_future(watch.wait())
            done, _ = await asyncio.wait({got, gone}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                got.cancel()
                return
            if got not in done:
                got.cancel()
                await request.stream_write(_envelope({"keepalive": {}}))
                continue
            try:
                batch = got.result()
            except Exception as exc:  # WatchOverflow: the watch ended on a bound
                await request.stream_end(_envelope({"error": {"code": "resource_exhausted", "message": str(exc)}}, END_STREAM))
                return
            if watch.closed:
                await request.stream_end(_envelope({"error": {"code": "unavailable", "message": "the sandbox was closed"}}, END_STREAM))
                return
            events = await _events(watcher, batch, describe)
            if events:
                await request.stream_write(b"".join(_envelope({"filesystem": e}) for e in events))
    finally:
        watch.close()
        if not gone.done():
            gone.cancel()


async def unary(request: Request, handle: Sandbox, sandbox_id: str, method: str, body: dict[str, Any], path: str,
                is_dir: Callable[[str], Awaitable[bool]], describe: Describe) -> None:
    """CreateWatcher, GetWatcherEvents and RemoveWatcher (unary JSON)."""
    if method == "CreateWatcher":
        for stale in [key for key, old in _watchers.items() if old.watch.closed]:
            del _watchers[stale]  # closed with their sandbox
        watch = await _start(handle, path, bool(body.get("recursive")), is_dir)
        watcher_id = secrets.token_hex(16)
        _watchers[watcher_id] = Watcher(sandbox_id, watch, path, bool(body.get("includeEntry")))
        await request.respond_json(200, {"watcherId": watcher_id})
        return
    watcher_id = str(body.get("watcherId", ""))
    watcher = _watchers.get(watcher_id)
    if watcher is not None and watcher.watch.closed:
        _watchers.pop(watcher_id, None)  # its sandbox ended
        watcher = None
    if watcher is None or watcher.sandbox_id != sandbox_id:
        raise rpc_error(404, "not_found", f"watcher with id {watcher_id[:64]} not found")
    if method == "RemoveWatcher":
        _watchers.pop(watcher_id, None)
        watcher.watch.close()
        await request.respond_json(200, {})
        return
    try:
        batch = watcher.watch.drain()
    except Exception as exc:  # WatchOverflow: the watcher ended on a bound
        _watchers.pop(watcher_id, None)
        watcher.watch.close()
        raise _overflow(exc) from None
    await request.respond_json(200, {"events": await _events(watcher, batch, describe)})
