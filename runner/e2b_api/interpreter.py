"""The code interpreter (sandbox port 49999): `POST /execute` streams NDJSON; `/contexts`.

A run is an Execution of the sandbox's session, started with `services.execution_start` as the
websocket starts one. This handler joins the session's group (as a socket does) and turns the
run's published output into E2B's NDJSON lines: stdout, stderr, result, error, then
end_of_execution. A client that closes the stream (the SDK's timeout, a dead client) stops the
run (`execution_cancel`: interrupted, variables kept) and nothing more is sent.

Errors are plain text, as E2B's code interpreter (FastAPI) answers them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import time
from typing import Any

from channels.layers import get_channel_layer
from django.contrib.auth.base_user import AbstractBaseUser

from runner import events, services
from runner.e2b_api import envs
from runner.e2b_api.wire import Request, api_error, text_error
from runner.models import ApiSandbox, Execution
from runner.sandboxes.base import LANGUAGES
from runner.services.output import MAIN_RESULT_MARKER
from runner.services.runtime import db

log = logging.getLogger(__name__)

HOME = "/home/user"
# The MIME types E2B's server lifts into named result fields; the rest go to "extra".
RESULT_FIELDS = {
    "text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
    "image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex",
    "application/json": "json", "application/javascript": "javascript", "e2b/data": "data", "e2b/chart": "chart",
}
JSON_FIELDS = ("json", "data", "chart")
# How a run that didn't end on its own shows as an E2B error.
END_ERRORS = {
    Execution.Status.TIMED_OUT: ("TimeoutError", "the run passed the server's time limit and was stopped"),
    Execution.Status.CANCELLED: ("ExecutionCancelled", "the run was stopped"),
    Execution.Status.INTERRUPTED: ("ExecutionInterrupted", "the run was interrupted by a server restart"),
    Execution.Status.KILLED: ("SandboxKilled", "the sandbox was closed by an administrator, a budget or a revoked key"),
    Execution.Status.REJECTED: ("SandboxUnavailable", "no sandbox could run this now"),
    Execution.Status.FAILED: ("SandboxError", "the sandbox failed while running this"),
}
# Failed reads of the run's messages in a row before the stream ends with an error.
RECEIVE_RETRIES = 5
CWD_MAX_CHARS = 1024
# What a run in a context whose cwd isn't HOME runs first, per language: make the folder if
# missing (as E2B's server does) and change to it. In the sandbox: a folder the sandbox user
# can't make (under a read-only /) is the run's error.
CHDIR = {
    "python": "(lambda os: (os.makedirs({cwd!r}, exist_ok=True), os.chdir({cwd!r})))(__import__('os'))",
    "bash": "mkdir -p -- {cwd_sh} && cd -- {cwd_sh}",
    "javascript": "Deno.mkdirSync({cwd_json}, {{ recursive: true }}); Deno.chdir({cwd_json});",
    "typescript": "Deno.mkdirSync({cwd_json}, {{ recursive: true }}); Deno.chdir({cwd_json});",
    "r": "invisible(local({{ dir.create({cwd_json}, recursive = TRUE, showWarnings = FALSE); setwd({cwd_json}) }}))",
}


def unknown_language(language: str) -> Exception:
    # E2B's server says "No such kernel named ..." (as a 500); here a 400 that also lists the languages.
    return text_error(400, f"No such kernel named {language[:100]}: the languages Sandpit has are "
                           f"{', '.join(sorted(LANGUAGES))} (js and ts name javascript and typescript)")


def public_context(context: dict[str, Any]) -> dict[str, str]:
    return {"id": context["id"], "language": context["language"], "cwd": context["cwd"]}


async def dispatch(request: Request, sandbox: ApiSandbox, user: AbstractBaseUser) -> None:
    path, method = request.path.rstrip("/") or "/", request.method
    if path == "/health":
        await request.respond(200, b'"OK"')
    elif path == "/execute" and method == "POST":
        await execute(request, sandbox, user)
    elif path == "/contexts" and method == "GET":
        await request.respond_json(200, [public_context(c) for c in sandbox.contexts])
    elif path == "/contexts" and method == "POST":
        await _context_create(request, sandbox)
    elif path.startswith("/contexts/"):
        await _context_action(request, sandbox, path.split("/")[2:], method)
    else:
        raise text_error(404, "Not Found")


async def _context_create(request: Request, sandbox: ApiSandbox) -> None:
    body = await request.json(error=text_error)
    language = services.api_language(body.get("language"))
    if language not in LANGUAGES:
        raise unknown_language(language)
    cwd = body.get("cwd") or HOME
    if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd or len(cwd) > CWD_MAX_CHARS:
        raise text_error(400, f"cwd must be an absolute path in the sandbox (at most {CWD_MAX_CHARS} characters)")
    # Any folder in the sandbox (its own mount namespace: / is the sandbox's, never the host's);
    # the run makes it if missing. Normalised so a listing shows what the kernel's getcwd() will.
    cwd = "/" + posixpath.normpath(cwd).lstrip("/")
    try:
        context = await db(services.api_context_create_sync)(sandbox=sandbox, language=language, cwd=cwd)
    except ValueError as exc:
        raise text_error(400, str(exc)) from None
    await request.respond_json(200, public_context(context))


async def _context_action(request: Request, sandbox: ApiSandbox, parts: list[str], method: str) -> None:
    context_id = parts[0]
    context = next((c for c in sandbox.contexts if c["id"] == context_id), None)
    if context is None:
        raise text_error(404, f"Context {context_id[:100]} not found")
    if parts[1:] == [] and method == "DELETE":
        await db(services.api_context_remove_sync)(sandbox=sandbox, context_id=context_id)
        await services.api_context_stop(sandbox=sandbox, context=context)
        await request.respond_empty(200)
    elif parts[1:] == ["restart"] and method == "POST":
        restarted = await services.api_context_restart(sandbox=sandbox, context=context)
        if not restarted:
            raise text_error(500, f"Failed to restart context {context_id}: this backend can't restart one kernel")
        await request.respond_empty(200)
    else:
        raise text_error(404, "Not Found")


def _cwd_prelude(context: dict[str, Any]) -> str:
    """The chdir to the context's cwd to run before its code (each context is a kernel of its own,
    started in HOME); "" for a context in HOME."""
    cwd = context["cwd"]
    if cwd == HOME:
        return ""
    sh = "'" + cwd.replace("'", "'\\''") + "'"
    return CHDIR[context["language"]].format(cwd=cwd, cwd_sh=sh, cwd_json=json.dumps(cwd)) + "\n"


async def execute(request: Request, sandbox: ApiSandbox, user: AbstractBaseUser) -> None:
    body = await request.json(error=text_error)
    if body.get("context_id") and body.get("language"):
        raise text_error(400, "Only one of context_id or language can be provided")
    try:
        run_envs = envs.validated(body.get("env_vars"), "env_vars")
    except ValueError as exc:
        raise text_error(400, str(exc)) from None
    code = body.get("code")
    if not isinstance(code, str):
        raise text_error(400, "code must be a string")
    if body.get("context_id"):
        context = next((c for c in sandbox.contexts if c["id"] == body["context_id"]), None)
        if context is None:
            raise text_error(404, f"Context {str(body['context_id'])[:100]} not found")
    else:
        language = services.api_language(body.get("language"))
        if language not in LANGUAGES:
            raise unknown_language(language)
        context = next((c for c in sandbox.contexts if c["language"] == language and c.get("default")), None)
        if context is None:  # the language's default context, made on its first use
            context = await db(services.api_context_create_sync)(sandbox=sandbox, language=language, cwd=HOME, default=True)
    if not code.strip():
        # Nothing to run (E2B's kernel answers an empty cell at once); nothing is stored either.
        await request.respond(200, _line({"type": "end_of_execution"}))
        return
    kernel = services.context_kernel(context)
    session = sandbox.session
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = events.session_group(session.id)
    await layer.group_add(group, channel)
    try:
        try:
            execution = await services.execution_start(
                session=session, user=user, language=context["language"], client_id="e2b-api",
                code=code, stdin=False,  # E2B's server sends allow_stdin False: input() raises at once
                prelude=envs.envs_prelude(sandbox_id=sandbox.sandbox_id, language=context["language"],
                                          create_envs=sandbox.envs, run_envs=run_envs, kernel=kernel)
                + _cwd_prelude(context),
                kernel=kernel,
            )
        except services.RunRejected as exc:
            if exc.code in ("quota", "rate_limited"):
                raise api_error(429, exc.message) from None
            raise text_error(403 if exc.code == "forbidden" else 400, exc.message) from None
        await _stream(request, layer, channel, execution, sandbox, user)
    finally:
        await layer.group_discard(group, channel)


async def _killed_under(sandbox: ApiSandbox) -> bool:
    """Whether the run ended because its sandbox was killed (here, or by another process, whose
    mark may land just after the run's end)."""
    for pause_s in (0.0, 0.2, 0.4):
        await asyncio.sleep(pause_s)
        if await db(services.api_sandbox_killed_or_killing)(sandbox=sandbox):
            return True
    return False


async def _stream(request: Request, layer: Any, channel: str, execution: Execution, sandbox: ApiSandbox,
                  user: AbstractBaseUser) -> None:
    session = sandbox.session
    gone = request.disconnect_watch()
    incoming: asyncio.Future[dict[str, Any]] | None = None
    try:
        await request.stream_start("application/json")
        # Sent with the first output (or the end): one write fewer per run.
        head = _line({"type": "number_of_executions", "execution_count": execution.seq})
        errored = False
        failures = 0
        while True:
            if incoming is None:
                incoming = asyncio.ensure_future(layer.receive(channel))
            await asyncio.wait({incoming, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                # The SDK closes the request to stop a run (its timeout): stop it, keep the variables.
                await services.execution_cancel(session=session, user=user, execution_id=execution.pk)
                return
            try:
                message, failures = incoming.result(), 0
            except Exception:
                # A channel-layer hiccup (e.g. Redis slow to answer a blocking read): the message
                # is still queued, so read again; past a few in a row, end the stream with an error.
                failures += 1
                log.warning("reading run %s's messages failed (%d in a row)", execution.pk, failures, exc_info=True)
                incoming = None
                if failures < RECEIVE_RETRIES:
                    await asyncio.sleep(0.05 * failures)
                    continue
                await services.execution_cancel(session=session, user=user, execution_id=execution.pk)
                error = {"type": "error", "name": "SandpitError", "value": "the server lost this run's output stream; the run was stopped", "traceback": ""}
                await request.stream_end(head + _line(error) + _line({"type": "end_of_execution"}))
                return
            incoming = None
            kind = message.get("type")
            if kind == "execution.started" and message["frame"]["execution_id"] == execution.pk and message["frame"].get("notice"):
                # E.g. the idle reaper closed the sandbox and a new one started: say so, as the page does.
                await request.stream_write(head + _line({"type": "stderr", "text": message["frame"]["notice"] + "\n", "timestamp": time.time_ns()}))
                head = b""
            elif kind == "execution.output" and message.get("execution_id") == execution.pk:
                lines = [line for chunk in message["chunks"] for line in chunk_lines(chunk, execution.language)]
                errored = errored or any(line["type"] == "error" for line in lines)
                if lines:
                    await request.stream_write(head + b"".join(_line(line) for line in lines))
                    head = b""
            elif kind == "execution.finished" and message["frame"]["execution_id"] == execution.pk:
                status = message["frame"]["status"]
                if status in (Execution.Status.CANCELLED, Execution.Status.KILLED, Execution.Status.FAILED) \
                        and await _killed_under(sandbox):
                    # Killed mid-run: the stream ends as at E2B's edge, cut without its end.
                    if head:
                        await request.stream_write(head)
                    await request.stream_cut()
                    return
                tail = b""
                if status in END_ERRORS and not errored:
                    name, value = END_ERRORS[status]
                    tail = _line({"type": "error", "name": name, "value": value, "traceback": ""})
                await request.stream_end(head + tail + _line({"type": "end_of_execution"}))
                return
    finally:
        for future in (incoming, gone):
            if future is not None and not future.done():
                future.cancel()


def _js_string(text: str) -> str:
    """A JavaScript string value as the string itself: Deno shows it quoted ("..." with JSON's
    escapes, or `...` when it holds both quote kinds); any other value is left as shown."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, str) else text
    if len(text) >= 2 and text[0] == text[-1] == "`" and "\n" not in text:
        return text[1:-1]
    return text


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def chunk_lines(chunk: dict[str, Any], language: str = "python") -> list[dict[str, Any]]:
    """A stored/published output chunk as E2B NDJSON objects (stdout/stderr, result, error)."""
    kind, data = chunk["kind"], chunk.get("data")
    now_ns = time.time_ns()
    if kind in ("stdout", "stderr"):
        return [{"type": kind, "text": chunk["text"], "timestamp": now_ns}] if chunk["text"] else []
    if kind == "error" and isinstance(data, dict):
        traceback = data.get("traceback") or []
        return [{"type": "error", "name": str(data.get("ename", "")), "value": str(data.get("evalue", "")),
                 "traceback": "\n".join(str(line) for line in traceback)}]
    if kind == "result" and isinstance(data, dict):
        return [result_object(data, language)]
    return []


def result_object(data: dict[str, Any], language: str = "python") -> dict[str, Any]:
    """A MIME bundle as the code interpreter's `result` object (named fields, the rest in extra)."""
    remaining = {k: v for k, v in data.items() if not k.startswith("sandpit/")}
    out: dict[str, Any] = {"type": "result", "is_main_result": data.get(MAIN_RESULT_MARKER) == "1"}
    for mime, field in RESULT_FIELDS.items():
        if mime in remaining:
            out[field] = remaining.pop(mime)
    for field in JSON_FIELDS:  # stored as JSON text (a bundle's values are strings); the SDK wants objects
        if isinstance(out.get(field), str):
            try:
                out[field] = json.loads(out[field])
            except ValueError:
                pass
    text = out.get("text")
    # E2B's server strips the quotes of a plain string repr ('abc' -> abc).
    if isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] == "'":
        out["text"] = text[1:-1]
    elif isinstance(text, str) and language in ("javascript", "typescript") and out["is_main_result"]:
        out["text"] = _js_string(text)
    out["extra"] = remaining
    return out
