"""envd (sandbox port 49983): `/health`, `GET|POST /files`, and the Connect RPCs the SDK's
`files.*` and `commands.run` use: Filesystem ListDir, Stat, MakeDir, Move, Remove (unary JSON)
and Process Start (a server stream of `application/connect+json` envelopes).

Paths are the sandbox's (`/home/user/...`, or relative to it) and stay inside its workspace: the
local sandbox walks them without following links, and commands run confined like the kernels.
Commands are not stored as runs (they have no Execution); code runs are.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import posixpath
import signal
import struct
import zlib
from typing import Any

from django.conf import settings

from runner import services
from runner.e2b_api.wire import HttpError, Request, api_error, rpc_error
from runner.models import ApiSandbox
from runner.sandboxes.base import FileInfo, Sandbox, SandboxError, Stderr, Stdout

HOME = "/home/user"
END_STREAM = 0x02
COMMAND_TIMEOUT_S = 60.0
# ListDir with depth > 1 stops after this many entries (a deep tree isn't walked without end).
LIST_MAX_ENTRIES = 10_000


def absolute(path: str) -> str:
    """A sandbox path as envd shows it: absolute, normalised (relative ones are under /home/user)."""
    return posixpath.normpath(path if path.startswith("/") else f"{HOME}/{path}")


def entry(info: FileInfo) -> dict[str, Any]:
    """envd's EntryInfo (proto JSON) for a workspace entry."""
    return {
        "name": info.name,
        "type": "FILE_TYPE_DIRECTORY" if info.is_dir else "FILE_TYPE_FILE",
        "path": absolute(info.path),
        "size": str(info.size),
        "mode": 0o755 if info.is_dir else 0o644,
        "permissions": "drwxr-xr-x" if info.is_dir else "-rw-r--r--",
        "owner": "user",
        "group": "user",
    }


SANDBOX_USER = "user"


def _requested_user(request: Request) -> str:
    """The user the SDK's RPCs ask to act as (`Authorization: Basic base64("name:")`), "" when none."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        raise api_error(400, "malformed Authorization header") from None


async def dispatch(request: Request, sandbox: ApiSandbox) -> None:
    path, method = request.path, request.method
    if path == "/health":
        await request.respond_empty()
        return
    # The files routes name it in `?username=`, the RPCs in the Authorization header.
    user = request.query.get("username") or _requested_user(request)
    if user not in ("", SANDBOX_USER):
        # Everything in a Sandpit sandbox runs as its one unprivileged user; never as another.
        message = (f"running as {user[:50]!r} is not supported by Sandpit: commands and files act as the "
                   f"sandbox's user {SANDBOX_USER!r} (drop user=, or pass user={SANDBOX_USER!r})")
        if path.startswith(("/filesystem.", "/process.")):
            raise rpc_error(403, "permission_denied", message)
        raise api_error(403, message)
    if path == "/files" and method == "GET":
        await _read(request, await _handle(sandbox))
    elif path == "/files" and method == "POST":
        await _write(request, await _handle(sandbox))
    elif path.startswith("/filesystem.Filesystem/") and method == "POST":
        await _filesystem(request, await _handle(sandbox), path.rsplit("/", 1)[1])
    elif path == "/process.Process/Start" and method == "POST":
        await _process_start(request, sandbox, await _handle(sandbox))
    elif path.startswith(("/filesystem.", "/process.")):
        raise rpc_error(501, "unimplemented", f"{path[:100]} is not supported by Sandpit")
    else:
        raise api_error(404, f"no route {method} {path[:100]}")


async def _handle(sandbox: ApiSandbox) -> Sandbox:
    try:
        return await services.api_sandbox_handle(sandbox=sandbox)
    except SandboxError as exc:
        raise api_error(503, f"the sandbox is unavailable: {exc}") from None


def _file_error(exc: Exception, path: str) -> HttpError:
    if isinstance(exc, FileNotFoundError):
        return api_error(404, f"path '{path[:300]}' does not exist")
    return api_error(400, str(exc))


async def _read(request: Request, handle: Sandbox) -> None:
    path = request.query.get("path", "")
    try:
        data = await handle.read_file(path)
    except (ValueError, OSError) as exc:
        raise _file_error(exc, path) from None
    accepted = [part.split(";")[0].strip() for part in request.headers.get("accept-encoding", "").split(",")]
    if "gzip" in accepted:
        await request.respond(200, _gzip(data), "application/octet-stream", headers=[(b"content-encoding", b"gzip")])
    else:
        await request.respond(200, data, "application/octet-stream")


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """A gzip body, decoded; 413 past `max_bytes` decoded (read no further), 400 when it isn't gzip."""
    unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = unpacker.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise api_error(400, f"the body is not valid gzip: {exc}") from None
    if len(data) > max_bytes or unpacker.unconsumed_tail:
        raise api_error(413, f"the decompressed file is larger than {max_bytes} bytes")
    if not unpacker.eof:
        raise api_error(400, "the gzip body is truncated")
    return data


async def _write(request: Request, handle: Sandbox) -> None:
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, settings.SANDBOX_FILE_MAX_BYTES)
    elif encoding not in ("", "identity"):
        raise api_error(415, f"Content-Encoding {encoding[:50]!r} is not supported; use gzip or none")
    content_type = request.headers.get("content-type", "")
    uploads: list[tuple[str, bytes]] = []
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        if not message.is_multipart():
            raise api_error(400, "malformed multipart body")
        for part in message.iter_parts():
            payload = part.get_payload(decode=True)
            uploads.append((request.query.get("path") or part.get_filename() or "", payload if isinstance(payload, bytes) else b""))
    else:
        uploads.append((request.query.get("path", ""), body))
    written = []
    for raw, data in uploads:
        try:
            await handle.write_file(raw, data)
        except (ValueError, OSError) as exc:
            raise _file_error(exc, raw) from None
        full = absolute(raw)
        written.append({"name": posixpath.basename(full), "type": "file", "path": full})
    await request.respond_json(200, written)


async def _stat(handle: Sandbox, path: str) -> FileInfo:
    full = absolute(path)
    if full == HOME:
        return FileInfo(name="user", path=".", is_dir=True, size=0)
    parent, name = posixpath.split(full)
    for info in await handle.list_files(parent):
        if info.name == name:
            return info
    raise FileNotFoundError(path)


async def _filesystem(request: Request, handle: Sandbox, method: str) -> None:
    body = await request.json(error=lambda status, message: rpc_error(status, "invalid_argument", message))
    path = str(body.get("path", HOME))
    try:
        if method == "ListDir":
            depth = body.get("depth") or 1
            if not isinstance(depth, int) or depth < 1:
                raise ValueError("depth must be a whole number, at least 1")
            infos = await _walk(handle, path, depth)
            await request.respond_json(200, {"entries": [entry(info) for info in infos]})
        elif method == "Stat":
            await request.respond_json(200, {"entry": entry(await _stat(handle, path))})
        elif method == "MakeDir":
            try:
                await _stat(handle, path)
            except FileNotFoundError:
                await _command(handle, ["mkdir", "-p", "--", absolute(path)])
                await request.respond_json(200, {"entry": entry(await _stat(handle, path))})
            else:
                raise rpc_error(409, "already_exists", f"path '{path[:300]}' already exists")
        elif method == "Remove":
            if absolute(path) == HOME:
                raise ValueError("the workspace itself can't be removed")
            try:
                await _stat(handle, path)  # refuses a path outside the workspace
            except FileNotFoundError:
                await request.respond_json(200, {})  # a missing path is a no-op, as in E2B
                return
            await _command(handle, ["rm", "-rf", "--", absolute(path)])
            await request.respond_json(200, {})
        elif method == "Move":
            source, destination = str(body.get("source", "")), str(body.get("destination", ""))
            await _stat(handle, source)
            await _stat(handle, posixpath.dirname(absolute(destination)))
            await _command(handle, ["mv", "-T", "--", absolute(source), absolute(destination)])
            await request.respond_json(200, {"entry": entry(await _stat(handle, destination))})
        else:
            raise rpc_error(501, "unimplemented", f"filesystem.Filesystem/{method[:50]} is not supported by Sandpit")
    except FileNotFoundError as exc:
        raise rpc_error(404, "not_found", f"path '{str(exc.args[0] if exc.args else path)[:300]}' does not exist") from None
    except ValueError as exc:
        raise rpc_error(400, "invalid_argument", str(exc)) from None


async def _walk(handle: Sandbox, path: str, depth: int) -> list[FileInfo]:
    """The entries under `path` down to `depth` levels, each folder followed by its own entries
    (envd's walk order); links are listed, never followed (the backend lists without following)."""
    found: list[FileInfo] = []

    async def visit(folder: str, level: int) -> None:
        for info in await handle.list_files(folder):
            if len(found) >= LIST_MAX_ENTRIES:
                return
            found.append(info)
            if info.is_dir and level < depth:
                await visit(info.path, level + 1)

    await visit(path, 1)
    return found


async def _command(handle: Sandbox, argv: list[str]) -> None:
    """Run a file command in the sandbox (confined: paths can't leave the workspace); ValueError
    with its stderr when it fails."""
    run = getattr(handle, "command", None)  # beyond the Protocol: the local backend has it
    if run is None:
        raise rpc_error(501, "unimplemented", "this sandbox backend can't run commands")
    errors: list[str] = []
    code = await run(argv, on_event=lambda event: errors.append(event.text) if isinstance(event, Stderr) else None,
                     timeout_s=COMMAND_TIMEOUT_S)
    if code != 0:
        raise ValueError("".join(errors).strip() or f"{argv[0]} failed")


def _envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


async def _process_start(request: Request, sandbox: ApiSandbox, handle: Sandbox) -> None:
    raw = await request.body()
    if len(raw) < 5:
        raise rpc_error(400, "invalid_argument", "missing request envelope")
    (length,) = struct.unpack(">I", raw[1:5])
    try:
        process = json.loads(raw[5:5 + length] or b"{}").get("process") or {}
    except ValueError:
        raise rpc_error(400, "invalid_argument", "malformed request envelope") from None
    run = getattr(handle, "command", None)
    if run is None:
        raise rpc_error(501, "unimplemented", "this sandbox backend can't run commands")
    args = [str(a) for a in process.get("args") or [] if a != "-l"]  # no login shell: the jail's PATH stays
    argv = [str(process.get("cmd") or "/bin/bash"), *args]
    envs = {**sandbox.envs, **{str(k): str(v) for k, v in (process.get("envs") or {}).items()}}
    timeout_ms = request.headers.get("connect-timeout-ms", "")
    timeout_s = min(int(timeout_ms) / 1000 if timeout_ms.isdigit() and int(timeout_ms) > 0 else COMMAND_TIMEOUT_S,
                    float(settings.API_SANDBOX_MAX_TIMEOUT_S))
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def on_event(event: object) -> None:
        if isinstance(event, (Stdout, Stderr)):
            name = "stdout" if isinstance(event, Stdout) else "stderr"
            data = base64.b64encode(event.text.encode()).decode()
            queue.put_nowait(_envelope({"event": {"data": {name: data}}}))

    # A bad cwd or variable name surfaces as the stream's error (Connect's end-of-stream message).
    task = asyncio.ensure_future(run(argv, cwd=str(process.get("cwd") or HOME), envs=envs, on_event=on_event, timeout_s=timeout_s))
    gone = request.disconnect_watch()
    try:
        await request.stream_start("application/connect+json")
        await request.stream_write(_envelope({"event": {"start": {"pid": 1}}}))
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task, gone}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await request.stream_write(getter.result())
                continue
            getter.cancel()
            if gone.done():
                return  # the finally kills the process
            break
        while not queue.empty():
            await request.stream_write(queue.get_nowait())
        try:
            code = task.result()
        except ValueError as exc:
            await request.stream_write(_envelope({"error": {"code": "invalid_argument", "message": str(exc)}}, END_STREAM))
            await request.stream_end()
            return
        if getattr(handle, "closed", False):
            # Killed with its sandbox: the stream ends as envd's does when its sandbox goes away
            # (unavailable), so the SDK probes the sandbox, finds it gone and raises its TimeoutException.
            gone_message = (f"the connection to sandbox {sandbox.sandbox_id} ended before the stream completed: "
                            "the sandbox was killed or reached its end of life")
            await request.stream_write(_envelope({"error": {"code": "unavailable", "message": gone_message}}, END_STREAM))
            await request.stream_end()
            return
        if code is None:
            end = {"exitCode": -1, "exited": False, "status": "signal: killed", "error": f"the command passed {timeout_s:.0f} s and was killed"}
        elif code < 0:
            end = {"exitCode": -1, "exited": False, "status": f"signal: {signal.Signals(-code).name.lower()}"}
        else:
            end = {"exitCode": code, "exited": True, "status": f"exit status {code}"}
        await request.stream_write(_envelope({"event": {"end": end}}) + _envelope({}, END_STREAM))
        await request.stream_end()
    finally:
        for future in (task, gone):
            if not future.done():
                future.cancel()
