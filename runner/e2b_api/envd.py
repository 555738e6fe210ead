"""envd (sandbox port 49983): `/health`, `GET|POST /files`, and the Connect RPCs the SDK's
`files.*` and `commands.*` use: Filesystem ListDir, Stat, MakeDir, Move, Remove (unary JSON),
WatchDir (a server stream) and CreateWatcher, GetWatcherEvents, RemoveWatcher (watches.py),
Process Start and Connect (server streams of `application/connect+json` envelopes) and Process
List, SendSignal, SendInput, CloseStdin, Update (unary JSON) on the sandbox's process table
(runner/e2b_api/processes.py: every started command until its stream ends, by pid or tag).
A Start with `pty` runs its command under a pty (E2B's `sandbox.pty`): output comes as `pty`
data, SendInput's `input.pty` is typed at it, Update's `pty.size` resizes it.

Paths are the sandbox's (`/home/user/...`, or relative to it, or `/tmp/...`) and stay inside its
workspace or its /tmp: the local sandbox walks them without following links, and commands run
confined like the kernels. Entries are described in entries.py.
A command (Process Start) is a run: an Execution of language bash whose code is its command line,
started with `services.execution_start` as /execute starts code, so it waits its turn in the
session, counts against the user's limits and shows in history and usage. It is stopped at
RUN_TIMEOUT_S (a longer `Connect-Timeout-Ms` is cut to it; a shorter one is envd's deadline: the
stream ends `deadline_exceeded`). SendSignal stops the run (its process tree is killed); SendInput
writes to its stdin when it was started with `stdin: true`. A Start's client going away stops its
command (a pty goes on, as in envd); a Connect's client going away leaves it running. The files routes' own mkdir, rm and mv are
not runs.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import posixpath
import shlex
import signal
import struct
import zlib
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser

from runner import events, services
from runner.e2b_api import processes, watches
from runner.e2b_api.entries import AREAS, HOME, absolute, describe, describe_path, is_dir, stat, upload_metadata
from runner.e2b_api.wire import HttpError, Request, api_error, rpc_error
from runner.models import ApiSandbox, Execution
from runner.sandboxes.base import FileInfo, Sandbox, SandboxError, Stderr, Terminal
from runner.services.runtime import db

END_STREAM = 0x02
COMMAND_TIMEOUT_S = 60.0
# The longest a pty's Start waits for its shell to be up before it answers with the pid anyway
# (a run waiting its turn in the session, behind a background command, may take longer).
PTY_START_WAIT_S = 5.0
# ListDir with depth > 1 stops after this many entries (a deep tree isn't walked without end).
LIST_MAX_ENTRIES = 10_000


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


async def dispatch(request: Request, sandbox: ApiSandbox, user: AbstractBaseUser) -> None:
    path, method = request.path, request.method
    if path == "/health":
        await request.respond_empty()
        return
    # The files routes name it in `?username=`, the RPCs in the Authorization header.
    as_user = request.query.get("username") or _requested_user(request)
    if as_user not in ("", SANDBOX_USER):
        # Everything in a Sandpit sandbox runs as its one unprivileged user; never as another.
        message = (f"running as {as_user[:50]!r} is not supported by Sandpit: commands and files act as the "
                   f"sandbox's user {SANDBOX_USER!r} (drop user=, or pass user={SANDBOX_USER!r})")
        if path.startswith(("/filesystem.", "/process.")):
            raise rpc_error(403, "permission_denied", message)
        raise api_error(403, message)
    if path == "/files" and method == "GET":
        await _read(request, await handle(sandbox))
    elif path == "/files" and method == "POST":
        await _write(request, await handle(sandbox))
    elif path.startswith("/filesystem.Filesystem/") and method == "POST":
        await _filesystem(request, await handle(sandbox), sandbox.sandbox_id, path.rsplit("/", 1)[1])
    elif path == "/process.Process/Start" and method == "POST":
        await _process_start(request, sandbox, await handle(sandbox), user)
    elif path == "/process.Process/Connect" and method == "POST":
        await _process_connect(request, sandbox)
    elif path.startswith("/process.Process/") and method == "POST" and path.rsplit("/", 1)[1] in _PROCESS_UNARY:
        await _process_unary(request, sandbox, user, path.rsplit("/", 1)[1])
    elif path.startswith(("/filesystem.", "/process.")):
        raise rpc_error(501, "unimplemented", f"{path[:100]} is not supported by Sandpit")
    else:
        raise api_error(404, f"no route {method} {path[:100]}")


async def handle(sandbox: ApiSandbox) -> Sandbox:
    try:
        return await services.api_sandbox_handle(sandbox=sandbox)
    except services.LiveSandboxLimit as exc:
        raise api_error(429, exc.reason) from None
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
    metadata = upload_metadata(request)
    if metadata and not getattr(handle, "writes_metadata", False):
        raise api_error(501, "file metadata is not supported by this sandbox backend")
    written = []
    for raw, data in uploads:
        try:
            if metadata:
                await handle.write_file(raw, data, metadata=metadata)  # type: ignore[call-arg]
            else:
                await handle.write_file(raw, data)
        except (ValueError, OSError) as exc:
            raise _file_error(exc, raw) from None
        full = absolute(raw)
        info: dict[str, Any] = {"name": posixpath.basename(full), "type": "file", "path": full}
        if metadata:
            info["metadata"] = metadata
        written.append(info)
    await request.respond_json(200, written)


_WATCH_UNARY = ("CreateWatcher", "GetWatcherEvents", "RemoveWatcher")


async def _filesystem_body(request: Request) -> dict[str, Any]:
    """The request message: a Connect streaming envelope (`application/connect+json`), else JSON."""
    if request.headers.get("content-type", "").startswith("application/connect+"):
        return _request_envelope(await request.body())
    return await request.json(error=lambda status, message: rpc_error(status, "invalid_argument", message))


async def _filesystem(request: Request, handle: Sandbox, sandbox_id: str, method: str) -> None:
    body = await _filesystem_body(request)
    path = str(body.get("path", HOME))
    try:
        if method == "WatchDir":
            await watches.watch_dir(request, handle, sandbox_id, body, absolute(path), lambda p: is_dir(handle, p),
                                    lambda p: describe_path(handle, p))
        elif method in _WATCH_UNARY:
            await watches.unary(request, handle, sandbox_id, method, body, absolute(path), lambda p: is_dir(handle, p),
                                lambda p: describe_path(handle, p))
        elif method == "ListDir":
            depth = body.get("depth") or 1
            if not isinstance(depth, int) or depth < 1:
                raise ValueError("depth must be a whole number, at least 1")
            infos = await _walk(handle, path, depth)
            await request.respond_json(200, {"entries": [await describe(handle, info) for info in infos]})
        elif method == "Stat":
            await request.respond_json(200, {"entry": await describe(handle, await stat(handle, path))})
        elif method == "MakeDir":
            try:
                await stat(handle, path)
            except FileNotFoundError:
                await _command(handle, ["mkdir", "-p", "--", absolute(path)])
                await request.respond_json(200, {"entry": await describe(handle, await stat(handle, path))})
            else:
                raise rpc_error(409, "already_exists", f"path '{path[:300]}' already exists")
        elif method == "Remove":
            if absolute(path) in AREAS:
                raise ValueError(f"{absolute(path)} itself can't be removed")
            try:
                await stat(handle, path)  # refuses a path outside the workspace
            except FileNotFoundError:
                await request.respond_json(200, {})  # a missing path is a no-op, as in E2B
                return
            await _command(handle, ["rm", "-rf", "--", absolute(path)])
            await request.respond_json(200, {})
        elif method == "Move":
            source, destination = str(body.get("source", "")), str(body.get("destination", ""))
            await stat(handle, source)
            await stat(handle, posixpath.dirname(absolute(destination)))
            await _command(handle, ["mv", "-T", "--", absolute(source), absolute(destination)])
            await request.respond_json(200, {"entry": await describe(handle, await stat(handle, destination))})
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


def command_line(argv: list[str]) -> str:
    """The command line a run stores as its code: the script of `bash -c SCRIPT` (what the SDK's
    `commands.run` sends), else the argv quoted for a shell."""
    if len(argv) == 3 and posixpath.basename(argv[0]) in ("bash", "sh") and argv[1] == "-c":
        return argv[2]
    return shlex.join(argv)


def _request_envelope(raw: bytes) -> dict[str, Any]:
    """The one message of a Connect streaming request (its first envelope)."""
    if len(raw) < 5:
        raise rpc_error(400, "invalid_argument", "missing request envelope")
    (length,) = struct.unpack(">I", raw[1:5])
    try:
        message = json.loads(raw[5:5 + length] or b"{}")
    except ValueError:
        raise rpc_error(400, "invalid_argument", "malformed request envelope") from None
    if not isinstance(message, dict):
        raise rpc_error(400, "invalid_argument", "the request message must be an object")
    return message


async def _process_start(request: Request, sandbox: ApiSandbox, handle: Sandbox, user: AbstractBaseUser) -> None:
    message = _request_envelope(await request.body())
    process = message.get("process") or {}
    terminal = Terminal(*processes.terminal_size(message["pty"])) if message.get("pty") is not None else None
    if getattr(handle, "command", None) is None:
        raise rpc_error(501, "unimplemented", "this sandbox backend can't run commands")
    asked_args = [str(a) for a in process.get("args") or []]
    args = [a for a in asked_args if a != "-l"]  # no login shell: the jail's PATH stays
    cmd = str(process.get("cmd") or "/bin/bash")
    argv = [cmd, *args]
    asked_envs = {str(k): str(v) for k, v in (process.get("envs") or {}).items()}
    envs = {**sandbox.envs, **asked_envs}
    cwd = str(process.get("cwd") or HOME)
    timeout_ms = request.headers.get("connect-timeout-ms", "")
    asked_s = int(timeout_ms) / 1000 if timeout_ms.isdigit() and int(timeout_ms) > 0 else None
    try:
        entry_ = processes.register(sandbox.sandbox_id, tag=str(message["tag"]) if message.get("tag") is not None else None,
                                    cmd=cmd, args=asked_args, envs=asked_envs, cwd=absolute(cwd),
                                    stdin=bool(message.get("stdin")), terminal=terminal)
    except processes.TooManyProcesses as exc:
        raise rpc_error(429, "resource_exhausted", str(exc)) from None
    limit_s = float(settings.RUN_TIMEOUT_S)
    command = services.Command(argv=argv, cwd=cwd, envs=envs, timeout_s=min(asked_s or limit_s, limit_s),
                               stdin=entry_.stdin, terminal=terminal)
    # The client's own deadline (shorter than RUN_TIMEOUT_S) is envd's: past it the stream
    # ends deadline_exceeded (the SDK's TimeoutException). RUN_TIMEOUT_S is Sandpit's cut.
    deadline = asked_s is not None and asked_s < limit_s
    if terminal is None:
        await _run_process(request, sandbox, user, entry_, command, deadline, None)
        return
    # A pty outlives its Start client, and Daphne cancels a handler soon after its client went
    # away: its run is followed in a task of its own, and this handler returns once detached.
    detached = asyncio.Event()
    task = asyncio.ensure_future(_run_process(request, sandbox, user, entry_, command, deadline, detached))
    _detached_runs.add(task)
    task.add_done_callback(_forget)
    waiter = asyncio.ensure_future(detached.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()  # its error (a refused run) is this request's


# The runs of ptys whose Start clients went away, until they end (a reference keeps each task alive).
_detached_runs: set[asyncio.Future[None]] = set()


def _forget(task: asyncio.Future[None]) -> None:
    """A pty's run is done: drop it, and read its error (after detaching nobody else would)."""
    _detached_runs.discard(task)
    if not task.cancelled():
        task.exception()


async def _run_process(request: Request, sandbox: ApiSandbox, user: AbstractBaseUser, entry_: processes.Process,
                       command: services.Command, deadline: bool, detached: asyncio.Event | None) -> None:
    """Start the process's run and stream it (_stream_command); it leaves the table when done."""
    argv = command.argv
    try:
        session = sandbox.session
        layer = get_channel_layer()
        channel = await layer.new_channel()
        group = events.session_group(session.id)
        await layer.group_add(group, channel)
        try:
            try:
                execution = await services.execution_start(
                    session=session, user=user, code=command_line(argv), language="bash", client_id="e2b-command", command=command
                )
            except services.RunRejected as exc:
                if exc.code in ("quota", "rate_limited"):
                    raise rpc_error(429, "resource_exhausted", exc.message) from None
                if exc.code == "forbidden":
                    raise rpc_error(403, "permission_denied", exc.message) from None
                raise rpc_error(400, "invalid_argument", exc.message) from None
            entry_.execution_id = execution.pk
            await _stream_command(request, layer, channel, execution, command, sandbox, user, entry_, deadline, detached)
        finally:
            await layer.group_discard(group, channel)
    finally:
        processes.unregister(sandbox.sandbox_id, entry_)


async def _stream_command(request: Request, layer: Any, channel: str, execution: Execution, command: services.Command,
                          sandbox: ApiSandbox, user: AbstractBaseUser, process: processes.Process, deadline: bool,
                          detached: asyncio.Event | None) -> None:
    """The run's stdout and stderr (a pty's output: `pty`) as Process events, then its end (exit
    code, or why it has none), each also to the Connect streams following `process`. A client that
    goes away stops a command; a pty (`detached` given, set then) goes on, as envd's processes do,
    for Connect to follow."""
    session = sandbox.session
    gone = request.disconnect_watch()
    incoming: asyncio.Future[dict[str, Any]] | None = None
    refusal: dict[str, Any] | None = None
    kinds = {"stdout": "pty"} if process.terminal is not None else {"stdout": "stdout", "stderr": "stderr"}

    async def write(data: bytes, last: bool = False) -> None:
        process.publish(data, last=last)
        if detached is None or not detached.is_set():
            await request.stream_write(data)

    try:
        await request.stream_start("application/connect+json")
        if process.terminal is not None:
            # envd answers once the pty's shell is spawned; here once it is up (has shown its prompt),
            # so input typed from then on is read at once, as on E2B.
            spawned = asyncio.ensure_future(process.terminal.started.wait())
            await asyncio.wait({spawned, gone}, timeout=PTY_START_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
            spawned.cancel()
        await request.stream_write(_envelope({"event": {"start": {"pid": process.pid}}}))
        while True:
            if incoming is None:
                incoming = asyncio.ensure_future(layer.receive(channel))
            away = detached is not None and detached.is_set()
            await asyncio.wait({incoming} if away else {incoming, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done() and not away:
                if detached is None:
                    await services.execution_cancel(session=session, user=user, execution_id=execution.pk)
                    return
                detached.set()
            if not incoming.done():
                continue
            message, incoming = incoming.result(), None
            kind = message.get("type")
            if kind == "execution.output" and message.get("execution_id") == execution.pk:
                out = b"".join(
                    _envelope({"event": {"data": {kinds[chunk["kind"]]: base64.b64encode(chunk["text"].encode()).decode()}}})
                    for chunk in message["chunks"] if chunk["kind"] in kinds and chunk.get("text")
                )
                if out:
                    await write(out)
            elif kind == "run.error":
                refusal = message["frame"]  # no sandbox for it (the user's live-sandbox limit, an outage)
            elif kind == "execution.finished" and message["frame"]["execution_id"] == execution.pk:
                status = message["frame"]["status"]
                ended = None
                stopped = status in (Execution.Status.CANCELLED, Execution.Status.INTERRUPTED)
                if stopped and await db(services.api_sandbox_killed_or_killing)(sandbox=sandbox):
                    ended = _killed_with_sandbox(sandbox.sandbox_id)
                elif status == Execution.Status.TIMED_OUT and deadline:
                    ended = _envelope({"error": {"code": "deadline_exceeded", "message": (
                        f"the command passed its timeout ({command.timeout_s:g} s) and was killed")}}, END_STREAM)
                ended = ended or _command_end(status, command, refusal)
                await write(ended, last=True)
                if detached is None or not detached.is_set():
                    await request.stream_end()
                return
    finally:
        for future in (incoming, gone):
            if future is not None and not future.done():
                future.cancel()


_PROCESS_UNARY = ("List", "SendSignal", "SendInput", "CloseStdin", "Update")


def _not_found(selector: dict[str, Any]) -> HttpError:
    what = f"pid {selector['pid']}" if "pid" in selector else f"tag {str(selector.get('tag'))[:100]!r}"
    return rpc_error(404, "not_found", f"process with {what} not found")


async def _process_unary(request: Request, sandbox: ApiSandbox, user: AbstractBaseUser, method: str) -> None:
    """Process List, SendSignal, SendInput, CloseStdin and Update (unary JSON), on the sandbox's table."""
    body = await request.json(error=lambda status, message: rpc_error(status, "invalid_argument", message))
    if method == "List":
        await request.respond_json(200, {"processes": [p.info() for p in processes.listed(sandbox.sandbox_id)]})
        return
    selector = body.get("process") or {}
    if not isinstance(selector, dict):
        raise rpc_error(400, "invalid_argument", "process must be a ProcessSelector")
    process = processes.find(sandbox.sandbox_id, selector)
    if process is None:
        raise _not_found(selector)
    if method == "SendSignal":
        if body.get("signal") not in ("SIGNAL_SIGKILL", "SIGNAL_SIGTERM", 9, 15):
            raise rpc_error(400, "invalid_argument", "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM")
        # Either ends the process tree (a run's stop is a kill); its Start stream then ends "signal: killed".
        if process.execution_id:
            await services.execution_cancel(session=sandbox.session, user=user, execution_id=process.execution_id)
        await request.respond_json(200, {})
        return
    if method == "Update":  # a pty's new size (TIOCSWINSZ: its foreground job gets SIGWINCH)
        if body.get("pty") is not None:
            if process.terminal is None:
                raise rpc_error(412, "failed_precondition", f"process with pid {process.pid} has no pty to resize")
            process.terminal.resize(*processes.terminal_size(body["pty"]))
        await request.respond_json(200, {})
        return
    _process_input(process, method, body)
    await request.respond_json(200, {})


def _process_input(process: processes.Process, method: str, body: dict[str, Any]) -> None:
    """SendInput (`input.stdin`, or `input.pty` for a pty) and CloseStdin."""
    given = body.get("input") or {}
    if not isinstance(given, dict):
        raise rpc_error(400, "invalid_argument", "input must be a ProcessInput: {\"stdin\": B64} or {\"pty\": B64}")
    if process.terminal is not None:
        if method == "SendInput" and "pty" in given:
            processes.terminal_input(process, _base64(given["pty"], "input.pty"))
            return
        # envd's answers: a pty's input is typed at it, and it has no stdin to close.
        raise rpc_error(412, "failed_precondition", f"process with pid {process.pid} is a pty: send its input as "
                        "input.pty (sandbox.pty.send_stdin); to end it, send Ctrl+D (0x04) or kill it")
    if "pty" in given:
        processes.terminal_input(process, b"")  # it has no pty: that error
    if process.stdin is None:
        # envd's answer when the process was started without stdin.
        raise rpc_error(412, "failed_precondition", f"stdin is not enabled for process with pid {process.pid}")
    if method == "CloseStdin":
        process.stdin.put_nowait(None)
        return
    data = _base64(given.get("stdin", ""), "input.stdin")
    if data:
        process.stdin.put_nowait(data)


def _base64(value: Any, name: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise rpc_error(400, "invalid_argument", f"{name} must be base64") from None


async def _process_connect(request: Request, sandbox: ApiSandbox) -> None:
    """Process/Connect: follow a running process's output from now on, then its end. Going away
    leaves it running (only its Start stream's client owns it)."""
    selector = _request_envelope(await request.body()).get("process") or {}
    process = processes.find(sandbox.sandbox_id, selector if isinstance(selector, dict) else {})
    if process is None:
        raise _not_found(selector if isinstance(selector, dict) else {})
    queue: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()
    process.followers.add(queue)
    gone = request.disconnect_watch()
    try:
        await request.stream_start("application/connect+json")
        await request.stream_write(_envelope({"event": {"start": {"pid": process.pid}}}))
        while True:
            got = asyncio.ensure_future(queue.get())
            await asyncio.wait({got, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not got.done():
                got.cancel()
                return
            item = got.result()
            if item is None:  # it ended without its end reaching us (its Start client went away)
                await request.stream_end(_envelope({"event": {"end": {
                    "exitCode": -1, "exited": False, "status": "signal: killed", "error": "the command was stopped"}}})
                    + _envelope({}, END_STREAM))
                return
            data, last = item
            if last:
                await request.stream_end(data)
                return
            await request.stream_write(data)
    finally:
        process.followers.discard(queue)
        if not gone.done():
            gone.cancel()


def _killed_with_sandbox(sandbox_id: str) -> bytes:
    """The stream's end when the command's sandbox was killed under it, as envd's ends when its
    sandbox goes away (unavailable): the SDK probes the sandbox, finds it gone, raises TimeoutException."""
    message = (f"the connection to sandbox {sandbox_id} ended before the stream completed: "
               "the sandbox was killed or reached its end of life")
    return _envelope({"error": {"code": "unavailable", "message": message}}, END_STREAM)


def _command_end(status: str, command: services.Command, refusal: dict[str, Any] | None) -> bytes:
    """The stream's last envelopes: the Process end event, or the Connect error of a command that never ran."""
    if command.error:
        return _envelope({"error": {"code": "invalid_argument", "message": command.error}}, END_STREAM)
    if status == Execution.Status.REJECTED:
        code = "resource_exhausted" if refusal is not None and refusal.get("code") == "quota" else "unavailable"
        message = str(refusal.get("message")) if refusal is not None else "no sandbox could run this now"
        return _envelope({"error": {"code": code, "message": message}}, END_STREAM)
    exit_code = command.exit_code
    if status == Execution.Status.TIMED_OUT:
        end = {"exitCode": -1, "exited": False, "status": "signal: killed",
               "error": f"the command passed {min(command.timeout_s, settings.RUN_TIMEOUT_S):.0f} s and was killed"}
    elif status in (Execution.Status.CANCELLED, Execution.Status.INTERRUPTED, Execution.Status.KILLED):
        end = {"exitCode": -1, "exited": False, "status": "signal: killed", "error": "the command was stopped"}
    elif exit_code is None:
        return _envelope({"error": {"code": "unavailable", "message": "the sandbox failed while running this command"}}, END_STREAM)
    elif exit_code < 0:
        end = {"exitCode": -1, "exited": False, "status": f"signal: {signal.Signals(-exit_code).name.lower()}"}
    else:
        end = {"exitCode": exit_code, "exited": True, "status": f"exit status {exit_code}"}
    return _envelope({"event": {"end": end}}) + _envelope({}, END_STREAM)
