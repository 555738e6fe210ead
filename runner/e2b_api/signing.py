"""Signed `/files` URLs (the SDKs' `download_url` and `upload_url`), checked as envd checks them.

The signature is `v1_` + unpadded base64 of sha256(`path:operation:username:token[:expiration]`),
`operation` being `read` (GET) or `write` (POST), `username` "" when the URL names none, `token`
the sandbox's envd access token. With E2B_SANDBOX_URL set the SDK puts no sandbox id in the URL,
so a signed request that names no sandbox (no `E2b-Sandbox-Id`, no `<port>-<id>.` host) is for
the live sandbox whose token gives its signature: the signature is what finds the sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from runner import selectors, services
from runner.e2b_api.wire import Request, api_error
from runner.services.runtime import db

OPERATIONS = {"GET": "read", "POST": "write"}


def signature(*, path: str, operation: str, username: str, token: str, expiration: int | None) -> str:
    raw = f"{path}:{operation}:{username}:{token}" + ("" if expiration is None else f":{expiration}")
    return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode("ascii")


def is_signed(request: Request) -> bool:
    """A `/files` request that authenticates by its URL's signature (envd prefers a header token)."""
    return (request.path == "/files" and request.method in OPERATIONS and "signature" in request.query
            and "x-access-token" not in request.headers)


async def signed_sandbox_id(request: Request, sandbox_id: str) -> str:
    """The id of the sandbox whose token signed this request (`sandbox_id` if it names one), else
    envd's 401: "invalid signature", or "signature is already expired" for a right one past its time."""
    given = request.query["signature"].encode()
    raw_expiration = request.query.get("signature_expiration")
    expiration = None
    if raw_expiration is not None:
        if not raw_expiration.lstrip("-").isdigit() or len(raw_expiration) > 20:
            raise api_error(400, "signature_expiration must be a whole number (a Unix time)")
        expiration = int(raw_expiration)
    fields = {"path": request.query.get("path", ""), "operation": OPERATIONS[request.method],
              "username": request.query.get("username", ""), "expiration": expiration}
    candidates = [sandbox_id] if sandbox_id else await db(selectors.api_sandbox_ids_live_sync)()
    found = next((candidate for candidate in candidates if hmac.compare_digest(
        signature(token=services.api_sandbox_access_token(sandbox_id=candidate), **fields).encode(), given)), None)
    if found is None:
        raise api_error(401, "invalid signature")
    if expiration is not None and expiration < time.time():
        raise api_error(401, "signature is already expired")
    return found
