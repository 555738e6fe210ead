"""HTTP hardening that applies to every page, the ASGI wrapper that starts housekeeping, and the
websocket Origin check."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import validate_host

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


def client_ip_address(request: HttpRequest) -> str | None:
    """The client's address, for the login lockout (AXES_CLIENT_IP_CALLABLE): the CLIENT_IP_META
    header (behind the proxy, its X-Real-IP) when it holds an IP address, else REMOTE_ADDR."""
    value = request.META.get(settings.CLIENT_IP_META, "")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return request.META.get("REMOTE_ADDR")


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


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of `scheme://netloc`, the port made explicit; None when malformed."""
    try:
        parsed = urlsplit(f"{scheme}://{netloc}")
        port = parsed.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not parsed.hostname or port is None or parsed.path or parsed.username is not None:
        return None
    return scheme, parsed.hostname, port


def _own_scheme(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """http or https as the browser sees the site: wss, or (behind the TLS proxy) its X-Forwarded-Proto."""
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name = proxy_header[0].removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        if headers.get(name, b"").decode("latin-1").split(",")[0].strip() == proxy_header[1]:
            return "https"
    return "http"


def websocket_origin_allowed(scope: Scope) -> bool:
    """A socket's Origin is the site's own (scheme, host and port of the request, its Host in
    ALLOWED_HOSTS) or one of CSRF_TRUSTED_ORIGINS (exact, or `https://*.example.org`)."""
    headers = {name: value for name, value in scope.get("headers", [])}
    raw_origin = headers.get(b"origin", b"").decode("latin-1")
    scheme, sep, netloc = raw_origin.partition("://")
    origin = _origin(scheme.lower(), netloc) if sep else None
    if origin is None:
        return False
    host = headers.get(b"host", b"").decode("latin-1")
    own = _origin(_own_scheme(scope, headers), host)
    # As Django's own Host check: with DEBUG on and no ALLOWED_HOSTS, the local names.
    allowed_hosts = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if own is not None and origin == own and validate_host(f"[{own[1]}]" if ":" in own[1] else own[1], allowed_hosts):
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        t_scheme, _, t_netloc = trusted.lower().partition("://")
        wildcard = t_netloc.startswith("*.")
        pattern = _origin(t_scheme, t_netloc[2:] if wildcard else t_netloc)
        if pattern is None or pattern[0] != origin[0] or pattern[2] != origin[2]:
            continue
        if origin[1] == pattern[1] or (wildcard and origin[1].endswith("." + pattern[1])):
            return True
    return False


class WebsocketOriginValidator:
    """ASGI wrapper for websockets: a handshake whose Origin fails `websocket_origin_allowed` is
    refused (an HTTP 403), so a page on another origin (even another port of this host) can't open
    a socket with the user's cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not websocket_origin_allowed(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})
            return
        await self.app(scope, receive, send)
