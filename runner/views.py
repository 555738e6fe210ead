"""Thin HTTP layer: each view calls a selector or a service, then renders."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from runner import selectors


async def healthz(request: HttpRequest) -> JsonResponse:
    status = await selectors.sandbox_status()
    body = {"ok": status.ok, "backend": status.backend, "detail": status.detail}
    return JsonResponse(body, status=200 if status.ok else 503)
