"""The user's API keys for the E2B-compatible API: list, create (shown once), revoke."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from runner import selectors, services
from runner.views.auth import AuthenticatedRequest


@login_required
def api_keys(request: AuthenticatedRequest) -> HttpResponse:
    """Keys for the E2B-compatible API: the list, and a form that makes one (shown once, here)."""
    new_key, error = "", ""
    new_key_expires_at: datetime | None = None
    if request.method == "POST":
        try:
            expires_at = services.api_key_expiry(expires_on=request.POST.get("expires_on", ""))
            row, new_key = services.api_key_create(owner=request.user, name=request.POST.get("name", ""), expires_at=expires_at)
            new_key_expires_at = row.expires_at
        except ValidationError as exc:
            error = " ".join(exc.messages)
    elif request.method != "GET":
        return HttpResponse(status=405)
    context = {
        "keys": selectors.api_keys_for_owner(owner=request.user),
        "new_key": new_key,
        "error": error,
        "base_url": request.build_absolute_uri("/").rstrip("/"),
        "today": timezone.localdate(),
        "new_key_expires_at": new_key_expires_at,
    }
    response = render(request, "runner/keys.html", context, status=400 if error else 200)
    response["Cache-Control"] = "no-store"  # the page may hold a key shown once
    return response


@login_required
@require_POST
def api_key_revoke(request: AuthenticatedRequest, key_id: int) -> HttpResponse:
    services.api_key_revoke(owner=request.user, key_id=key_id)
    return redirect("api_keys")
