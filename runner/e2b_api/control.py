"""The control plane (E2B's API, `X-API-Key`): create, connect, get, list, set timeout, kill.

Bodies and statuses as E2B answers them (`{"code": status, "message": ...}` on errors). A sandbox
id that is unknown, killed, past its end or another user's gets the same 404.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings


from runner import selectors, services
from runner.e2b_api.wire import HttpError, Request, api_error
from runner.models import ApiKey, ApiSandbox
from runner.sandboxes.base import SandboxError, SandboxUnavailable
from runner.services.runtime import db

# The envd version the SDK is told: its gates open for what is built (recursive watches and their
# entry info, the network-mount flag, file metadata as xattrs: envd 0.6.4).
ENVD_VERSION = "0.6.4"
API_RATE_WINDOW_S = 10
LIST_MAX = 100
INVALID_KEY = "Invalid API key, it must start with 'e2b_' prefix and be 40 characters long"
SANDBOX_PATH = re.compile(r"(?:/v2)?/sandboxes/([^/]+)(/[a-z]+)?/?")
NOT_SUPPORTED = {
    "/pause": "pausing sandboxes is not supported by Sandpit",
    "/resume": "resuming paused sandboxes is not supported by Sandpit (they are never paused)",
    "/snapshots": "snapshots are not supported by Sandpit",
    "/fork": "forking sandboxes is not supported by Sandpit",
    "/metrics": "sandbox metrics are not supported by Sandpit",
    "/logs": "sandbox logs are not supported by Sandpit; the runs are in the session's history",
    "/network": "network rules are not supported by Sandpit (sandboxes have no network)",
}
# Cloud-only route families, by their first path segment after an optional /vN.
NOT_SUPPORTED_ROUTES = {
    "templates": "templates are not supported by Sandpit (every sandbox is its one local image)",
    "default-templates": "templates are not supported by Sandpit (every sandbox is its one local image)",
    "volumes": "volumes are not supported by Sandpit",
    "snapshots": "snapshots are not supported by Sandpit",
    "secrets": "secrets are not supported by Sandpit; pass envs when creating the sandbox",
}
CLOUD_ROUTE = re.compile(r"(?:/v\d)?/([a-z-]+)(?:/.*)?")


async def authenticate(request: Request) -> ApiKey:
    """The caller's live key from `X-API-Key`, else E2B's 401."""
    key = await db(services.api_key_authenticate_sync)(key=request.headers.get("x-api-key", ""))
    if key is None:
        raise api_error(401, INVALID_KEY)
    return key


async def rate_limit(*, user_id: int) -> None:
    """Count one authenticated API request of `user_id` (both planes share API_REQUESTS_PER_10S);
    past the limit, E2B's 429 with Retry-After."""
    verdict = await services.ratelimit_hit(
        scope="api", user_id=user_id, limit=settings.API_REQUESTS_PER_10S, window_s=API_RATE_WINDOW_S
    )
    if not verdict.allowed:
        raise HttpError(429, {"code": 429, "message": f"Too many API requests from you (all your keys and sandboxes count): {verdict.message}"},
                        retry_after_s=verdict.retry_after_s)


def sandbox_json(sandbox: ApiSandbox, *, detail: bool = False) -> dict[str, Any]:
    """The API's Sandbox (create, connect) or, with `detail`, ListedSandbox/SandboxDetail."""
    sandbox_id = selectors.api_sandbox_id(sandbox)
    token = services.api_sandbox_access_token(sandbox_id=sandbox_id)
    body: dict[str, Any] = {
        "templateID": sandbox.template,
        "sandboxID": sandbox_id,
        "clientID": "sandpit",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": token,
        # The SDKs send this with every code-interpreter request (/contexts too), as to E2B's proxy.
        "trafficAccessToken": token,
        "domain": settings.API_SANDBOX_DOMAIN or None,
    }
    if detail:
        body.update({
            "startedAt": sandbox.started_at.isoformat(),
            "endAt": sandbox.end_at.isoformat(),
            "cpuCount": max(1, round(settings.SANDBOX_CPUS)),
            "memoryMB": settings.SANDBOX_MEMORY_MB,
            "diskSizeMB": settings.SANDBOX_WORKSPACE_QUOTA_MB,
            "state": "running",
            "metadata": sandbox.metadata,
        })
    return body


async def dispatch(request: Request, *, forget: Callable[[str], None]) -> None:
    """Serve one control-plane request; `forget(sandbox_id)` drops a sandbox from the routing's
    cache when it is killed or its end time moves."""
    key = await authenticate(request)
    owner_id = key.owner_id
    await rate_limit(user_id=owner_id)
    path, method = request.path.rstrip("/") or "/", request.method
    if path in ("/sandboxes", "/v2/sandboxes"):
        if method == "POST":
            await _create(request, key)
        elif method == "GET":
            await _list(request, owner_id)
        else:
            raise api_error(405, f"method {method} is not allowed on {path}")
        return
    family = CLOUD_ROUTE.fullmatch(path)
    if family is not None and family.group(1) in NOT_SUPPORTED_ROUTES:
        raise api_error(501, NOT_SUPPORTED_ROUTES[family.group(1)])
    if path == "/sandboxes/metrics":
        raise api_error(501, NOT_SUPPORTED["/metrics"])
    match = SANDBOX_PATH.fullmatch(path)
    if match is None:
        raise api_error(404, f"no route {method} {path}")
    sandbox_id, action = match.group(1), match.group(2) or ""
    if action in NOT_SUPPORTED:
        # An unknown id still answers 404, so the route reveals nothing about others' sandboxes.
        await _owned(sandbox_id, owner_id)
        raise api_error(501, NOT_SUPPORTED[action])
    sandbox = await _owned(sandbox_id, owner_id)
    try:
        await _act(request, sandbox, action, method, path)
    finally:
        forget(sandbox_id)  # after the change, so no lookup in between keeps the old row


async def _act(request: Request, sandbox: ApiSandbox, action: str, method: str, path: str) -> None:
    if action == "/connect" and method == "POST":
        body = await request.json()
        if body.get("timeout") is not None:
            sandbox = await _extend(sandbox, body["timeout"], only_extend=True)
        await request.respond_json(200, sandbox_json(sandbox))
    elif action == "/timeout" and method == "POST":
        body = await request.json()
        await _extend(sandbox, body.get("timeout"), only_extend=False)
        await request.respond_empty()
    elif action == "/refreshes" and method == "POST":
        body = await request.json()
        await _extend(sandbox, body.get("duration", 60), only_extend=True)
        await request.respond_empty()
    elif action == "" and method == "DELETE":
        await services.api_sandbox_kill(sandbox=sandbox)
        await request.respond_empty()
    elif action == "" and method == "GET":
        await request.respond_json(200, sandbox_json(sandbox, detail=True))
    else:
        raise api_error(404, f"no route {method} {path}")


async def _owned(sandbox_id: str, owner_id: int) -> ApiSandbox:
    sandbox = await db(selectors.api_sandbox_get_sync)(sandbox_id=sandbox_id, owner_id=owner_id)
    if sandbox is None:
        raise api_error(404, f"sandbox \"{sandbox_id[:100]}\" doesn't exist or you don't have access to it")
    return sandbox


async def _extend(sandbox: ApiSandbox, timeout_s: object, *, only_extend: bool) -> ApiSandbox:
    try:
        return await db(services.api_sandbox_extend_sync)(
            sandbox=sandbox, timeout_s=timeout_s, only_extend=only_extend
        )
    except ValueError as exc:
        raise api_error(400, str(exc)) from None


async def _create(request: Request, key: ApiKey) -> None:
    body = await request.json()
    unsupported = unsupported_create(body)
    if unsupported:
        raise api_error(501, unsupported)
    try:
        sandbox = await services.api_sandbox_create(
            owner=key.owner, api_key_id=key.pk, template=body.get("templateID"), timeout_s=body.get("timeout"),
            metadata=body.get("metadata"), envs=body.get("envVars"),
        )
    except LookupError as exc:
        raise api_error(404, str(exc.args[0])) from None
    except ValueError as exc:
        raise api_error(400, str(exc)) from None
    except services.RunRejected as exc:
        raise api_error(429, exc.message) from None
    except SandboxUnavailable as exc:
        # E2B answers its concurrency limit with 429; anything else here is an outage.
        raise api_error(429 if exc.reason.startswith("busy") else 503, exc.reason) from None
    except SandboxError as exc:
        raise api_error(500, f"failed to start sandbox: {exc}") from None
    await request.respond_json(201, sandbox_json(sandbox))


def _no_network(network: object) -> bool:
    """Network settings a Sandpit sandbox already meets (it has no network, and no public port):
    denying egress, and turning public traffic off."""
    if not isinstance(network, dict):
        return False
    return all((key == "denyOut" and isinstance(value, list)) or (key == "allowPublicTraffic" and value is False)
               or value in (None, [], {}) for key, value in network.items())


def unsupported_create(body: dict[str, Any]) -> str:
    """Why Sandpit can't make the sandbox `body` asks for ("" when it can): E2B's cloud-only options."""
    if body.get("autoPause") or body.get("autoResume"):
        return "pausing sandboxes (autoPause, autoResume) is not supported by Sandpit"
    if body.get("mcp"):
        return "MCP gateways are not supported by Sandpit"
    if body.get("volumeMounts"):
        return "volumes are not supported by Sandpit"
    if body.get("allow_internet_access") is True:
        return "internet access (allow_internet_access=True) is not supported by Sandpit: sandboxes have no network"
    network = body.get("network")
    if network is not None and not _no_network(network):
        return "network rules are not supported by Sandpit: sandboxes have no network"
    return ""


async def _list(request: Request, owner_id: int) -> None:
    metadata = dict(parse_qsl(request.query.get("metadata", ""), keep_blank_values=True))
    states = [part.strip() for part in request.query.get("state", "").split(",") if part.strip()]
    if any(state not in ("running", "paused") for state in states):
        raise api_error(400, "state must be running, paused, or both (comma-separated)")
    if states and "running" not in states:
        await request.respond_json(200, [])  # nothing is ever paused here
        return
    rows = await db(selectors.api_sandboxes_for_owner_sync)(owner_id=owner_id, metadata=metadata)
    page, next_token = _page(rows, request.query)
    headers = [(b"x-next-token", next_token.encode())] if next_token else None
    await request.respond(200, json.dumps([sandbox_json(row, detail=True) for row in page]).encode(), headers=headers)


def _page(rows: list[ApiSandbox], query: dict[str, str]) -> tuple[list[ApiSandbox], str]:
    """One page of `rows` as E2B's list gives it: `template` and `startedAfter` filters, `order`
    (asc|desc by start, desc by default), `limit` (1..LIST_MAX), and `nextToken`, an opaque cursor
    (the last row's start and id) that `x-next-token` hands back while more rows follow."""
    order = query.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise api_error(400, "order must be asc or desc")
    limit_raw = query.get("limit") or str(LIST_MAX)
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= LIST_MAX:
        raise api_error(400, f"limit must be a whole number from 1 to {LIST_MAX}")
    if query.get("template"):
        rows = [row for row in rows if row.template == query["template"]]
    if query.get("startedAfter"):
        try:
            after = datetime.fromisoformat(query["startedAfter"].replace("Z", "+00:00"))
        except ValueError:
            raise api_error(400, "startedAfter must be an ISO 8601 time") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=dt_timezone.utc)
        rows = [row for row in rows if row.started_at >= after]
    rows = sorted(rows, key=lambda row: (row.started_at, row.sandbox_id), reverse=order == "desc")
    if query.get("nextToken"):
        try:
            started, sandbox_id = json.loads(base64.urlsafe_b64decode(query["nextToken"].encode()))
            cursor = (datetime.fromisoformat(started), str(sandbox_id))
        except (ValueError, TypeError):
            raise api_error(400, "nextToken is not one this server gave") from None
        rows = [row for row in rows if ((row.started_at, row.sandbox_id) < cursor if order == "desc" else (row.started_at, row.sandbox_id) > cursor)]
    page = rows[:int(limit_raw)]
    if len(rows) <= len(page):
        return page, ""
    last = page[-1]
    return page, base64.urlsafe_b64encode(json.dumps([last.started_at.isoformat(), last.sandbox_id]).encode()).decode()
