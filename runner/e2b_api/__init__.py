"""An E2B-compatible API served by Sandpit's own ASGI app, so unmodified `e2b-code-interpreter`
programs run on Sandpit's sandboxes (matched to e2b-code-interpreter 2.11.5 / e2b 2.63.0).

Addressing (a contract): with E2B_API_URL and E2B_SANDBOX_URL both set to Sandpit's base URL, the
SDK sends everything to the root and names the target in headers:
- no `E2b-Sandbox-Port`: the control plane (`X-API-Key`): `/sandboxes`, `/v2/sandboxes`, ... (control.py);
- `E2b-Sandbox-Port: 49999` + `E2b-Sandbox-Id`: the code interpreter, `/execute`, `/contexts` (interpreter.py);
- `E2b-Sandbox-Port: 49983` + `E2b-Sandbox-Id`: envd, `/files` and Connect RPCs (envd.py);
- any other port + `E2b-Sandbox-Id`: relayed to that port inside the sandbox (ports.py, `get_host`).
A reverse proxy may instead pass E2B_DOMAIN-style hosts through: `<port>-<sandbox id>.<domain>`.
A signed `/files?...&signature=` URL (`download_url`, `upload_url`) goes to envd with no header:
the signature names its sandbox (signing.py).
Everything else goes to Django. Sandpit's own URLs never start with these paths.

Every sandbox route needs the sandbox's token, handed out at create and connect as both
`envdAccessToken` and `trafficAccessToken`: the SDKs send the first as `X-Access-Token` (envd,
`/execute`) and the second as `E2B-Traffic-Access-Token` (every code-interpreter route, `/contexts`
included), as E2B's proxy asks of a sandbox without public traffic. None: 401. An unknown, killed
or expired id, or a wrong token, gets the edge's 502 "sandbox not found".
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from django.conf import settings
from django.utils import timezone

from runner import selectors, services
from runner.e2b_api import control, envd, interpreter, ports, signing
from runner.e2b_api.wire import HttpError, Receive, Request, Scope, Send, StreamCut, api_error
from runner.models import ApiSandbox
from runner.services.runtime import api_sandboxes_generation, db

log = logging.getLogger(__name__)

JUPYTER_PORT = "49999"
ENVD_PORT = "49983"
SANDBOX_HOST = re.compile(r"(\d+)-([0-9a-f]{32})\.")
# The control plane's routes, with E2B's cloud-only families (answered 501 by control.py).
API_PATH = re.compile(r"(?:/v\d)?/(?:sandboxes|templates|default-templates|volumes|snapshots|secrets)(?:/.*)?")
# JSON bodies: code up to RUN_CODE_MAX_BYTES, escaped; uploads: a file up to SANDBOX_FILE_MAX_BYTES.
JSON_SLACK_BYTES = 64 * 1024
EXPIRE_EVERY_S = 2.0
# Every sandbox route needs one of these, each right: the SDKs send the envd token to envd and
# /execute, and the traffic token (handed out as `trafficAccessToken`) to every code-interpreter route.
TOKEN_HEADERS = ("x-access-token", "e2b-traffic-access-token")

_expiring: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def with_e2b_api(django_app: object) -> object:
    """Wrap the project's HTTP app: E2B's routes are served here, everything else by Django."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = _target(scope)
            if target is not None:
                await _serve(target, scope, receive, send)
                return
        await django_app(scope, receive, send)  # type: ignore[operator]

    return app


def _target(scope: Scope) -> tuple[str, str] | None:
    """("api", "") or (port, sandbox id) for an E2B request, None for Sandpit's own."""
    port = sandbox_id = None
    host = ""
    for key, value in scope.get("headers", []):
        if key == b"e2b-sandbox-port":
            port = value.decode("latin-1")
        elif key == b"e2b-sandbox-id":
            sandbox_id = value.decode("latin-1")
        elif key == b"host":
            host = value.decode("latin-1")
    if port is not None:
        return port, sandbox_id or ""
    match = SANDBOX_HOST.match(host)
    if match is not None:
        return match.group(1), match.group(2)
    if API_PATH.fullmatch(scope["path"]):
        return "api", ""
    if scope["path"] == "/files" and b"signature=" in scope.get("query_string", b""):
        return ENVD_PORT, ""  # a signed URL, opened as it is (the signature names the sandbox)
    return None


async def _serve(target: tuple[str, str], scope: Scope, receive: Receive, send: Send) -> None:
    port, sandbox_id = target
    max_body = settings.SANDBOX_FILE_MAX_BYTES + JSON_SLACK_BYTES if port == ENVD_PORT else 2 * settings.RUN_CODE_MAX_BYTES + JSON_SLACK_BYTES
    request = Request(scope, receive, send, max_body_bytes=max_body)
    try:
        await services.runtime_ensure_started()
        _ensure_expiring()
        if port == "api":
            await control.dispatch(request, forget=forget)
            return
        # A signed /files URL (download_url, upload_url) needs no token: its signature finds and
        # authenticates the sandbox.
        signed = port == ENVD_PORT and signing.is_signed(request)
        if signed:
            sandbox_id = await signing.signed_sandbox_id(request, sandbox_id)
        sandbox = await _sandbox(sandbox_id)
        tokens = [request.headers[name] for name in TOKEN_HEADERS if name in request.headers]
        if sandbox is None or not all(services.api_sandbox_token_ok(sandbox_id=sandbox_id, token=t) for t in tokens):
            raise _not_found(sandbox_id)
        if not tokens and not signed:
            raise api_error(401, "missing access token: send X-Access-Token or E2B-Traffic-Access-Token")
        # The key that made it, and its owner, must still be valid (checked on every request, from
        # a row at most RECENT_TTL_S old); revoking or deactivating also ends the sandbox.
        refused = services.api_sandbox_refusal(sandbox=sandbox)
        if refused:
            raise api_error(401, refused)
        if sandbox.killed_at is not None or sandbox.end_at <= timezone.now() or services.api_sandbox_killing(sandbox=sandbox):
            raise _not_found(sandbox_id)
        await control.rate_limit(user_id=sandbox.session.owner_id)
        if port == JUPYTER_PORT:
            await interpreter.dispatch(request, sandbox, sandbox.session.owner)
        elif port == ENVD_PORT:
            await envd.dispatch(request, sandbox, sandbox.session.owner)
        elif ports.port_of(port) is not None:
            await ports.relay(request, await envd.handle(sandbox), sandbox_id, int(port))
        else:
            raise api_error(400, f"{port[:10]!r} is not a TCP port")
    except HttpError as exc:
        if not request.started:
            await request.respond_error(exc)
    except (asyncio.CancelledError, StreamCut):
        raise
    except Exception:
        log.exception("E2B API request %s %s failed", scope.get("method"), scope.get("path"))
        if not request.started:
            await request.respond_error(api_error(500, "internal server error; the details are in Sandpit's log"))
        elif request.streaming:
            await request.stream_end()  # a cut stream, so the client doesn't wait for more


def _not_found(sandbox_id: str) -> HttpError:
    """The edge's answer for an unknown, killed or expired sandbox, or a wrong token."""
    return HttpError(502, {"code": 502, "message": f"The sandbox {sandbox_id[:100]} was not found", "sandboxId": sandbox_id[:100]})


# Sandboxes looked up recently here, so a run doesn't pay a database round trip to find its
# sandbox (a third of the API's own latency). Killed, replaced, revoked or deactivated by this
# process: read afresh at once (`forget`, and the services' generation of API sandbox changes);
# by another process: seen within RECENT_TTL_S.
RECENT_TTL_S = 1.0
_recent: dict[str, tuple[float, int, ApiSandbox]] = {}


async def _sandbox(sandbox_id: str) -> ApiSandbox | None:
    """The sandbox with this id in any state (the caller judges it), or None when unknown. A row
    that looks ended is read afresh (another process may have extended it)."""
    now = time.monotonic()
    generation = api_sandboxes_generation()
    hit = _recent.get(sandbox_id)
    if (hit is not None and now - hit[0] < RECENT_TTL_S and hit[1] == generation
            and hit[2].killed_at is None and hit[2].end_at > timezone.now()):
        return hit[2]
    sandbox = await db(selectors.api_sandbox_route_sync)(sandbox_id=sandbox_id)
    if len(_recent) > 1000:
        _recent.clear()
    if sandbox is None:
        _recent.pop(sandbox_id, None)
    else:
        _recent[sandbox_id] = (now, generation, sandbox)
    return sandbox


def forget(sandbox_id: str) -> None:
    """The sandbox was killed or its end time moved: look it up afresh next time."""
    _recent.pop(sandbox_id, None)


def _ensure_expiring() -> None:
    """Kill API sandboxes past their end time, every EXPIRE_EVERY_S, on this loop."""
    loop = asyncio.get_running_loop()
    task = _expiring.get(loop)
    if task is None or task.done():
        _expiring[loop] = loop.create_task(_expire_forever())


async def _expire_forever() -> None:
    while True:
        await asyncio.sleep(EXPIRE_EVERY_S)
        try:
            for sandbox_id in await services.api_sandboxes_expire():
                forget(sandbox_id)
        except Exception:
            log.exception("expiring API sandboxes failed")
