"""HTTP hardening that applies to every page, and the ASGI wrapper that starts housekeeping."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from runner import services

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Scripts only from our own origin. Rich output from user code is sanitised by nh3 on the server and
# images are data: URLs (never inline SVG), so the page needs no frames at all. img-src leaves out
# remote hosts, so user HTML can't load tracking pixels.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


class PostRateLimitMiddleware:
    """At most HTTP_POSTS_PER_MINUTE POSTs per user per minute, over all server processes
    (counted in the shared cache); past it, 429 with code `rate_limited` and Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if request.method == "POST" and user is not None and user.is_authenticated:
            verdict = services.ratelimit_hit_sync(scope="post", user_id=user.pk, limit=settings.HTTP_POSTS_PER_MINUTE, window_s=60)
            if not verdict.allowed:
                body = {"error": {"code": "rate_limited", "message": f"Too many requests from you: {verdict.message}."}}
                response: HttpResponse = JsonResponse(body, status=429)
                response["Retry-After"] = str(verdict.retry_after_s)
                return response
        return self.get_response(request)


class HousekeepingMiddleware:
    """ASGI wrapper around the whole application: before this process answers its first request
    of any kind (HTTP included, not only a websocket), its housekeeping has started, so the runs a
    dead process left `running` are already `interrupted` in whatever the request shows.

    Cheap once started (one comparison per request). If it cannot start (the database is down),
    the request is served anyway and the next one tries again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            try:
                await services.runtime_ensure_started()
            except Exception:
                log.exception("housekeeping could not start; the next request tries again")
        await self.app(scope, receive, send)
