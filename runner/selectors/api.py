"""Reads for the E2B-compatible API: API sandboxes by id and owner, and a user's keys."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils import timezone

from runner.models import ApiKey, ApiSandbox


def api_sandbox_id(sandbox: ApiSandbox) -> str:
    """The id the API shows (random, not the session's)."""
    return sandbox.sandbox_id


def api_sandbox_get_sync(*, sandbox_id: str, owner_id: int | None = None) -> ApiSandbox | None:
    """The live (not killed, not past its end) API sandbox with this id, owned by `owner_id` when
    given; None otherwise, so an unknown id and another user's id look the same."""
    if not sandbox_id or len(sandbox_id) > 32:
        return None
    rows = ApiSandbox.objects.select_related("session", "session__owner").filter(
        sandbox_id=sandbox_id, killed_at__isnull=True, end_at__gt=timezone.now()
    )
    if owner_id is not None:
        rows = rows.filter(session__owner_id=owner_id)
    return rows.first()


def api_sandbox_route_sync(*, sandbox_id: str) -> ApiSandbox | None:
    """The API sandbox with this id in any state (killed, past its end, its key revoked), with its
    session, owner and key, for the data plane to judge; None for an unknown id."""
    if not sandbox_id or len(sandbox_id) > 32:
        return None
    return ApiSandbox.objects.select_related("session", "session__owner", "api_key").filter(sandbox_id=sandbox_id).first()


def api_sandbox_ids_live_sync() -> list[str]:
    """The ids of every live API sandbox (not killed, not past its end), any owner's."""
    return list(ApiSandbox.objects.filter(killed_at__isnull=True, end_at__gt=timezone.now()).values_list("sandbox_id", flat=True))


def api_sandboxes_for_owner_sync(*, owner_id: int, metadata: dict[str, str] | None = None) -> list[ApiSandbox]:
    """The owner's live API sandboxes, newest first, whose metadata holds every pair of `metadata`."""
    rows = ApiSandbox.objects.select_related("session").filter(
        session__owner_id=owner_id, killed_at__isnull=True, end_at__gt=timezone.now()
    ).order_by("-started_at")
    wanted = metadata or {}
    return [row for row in rows if all(row.metadata.get(k) == v for k, v in wanted.items())]


def api_keys_for_owner(*, owner: User) -> list[ApiKey]:
    """The owner's keys, live first, newest first (for the keys page)."""
    return sorted(ApiKey.objects.filter(owner=owner), key=lambda k: (k.revoked_at is not None, -k.created_at.timestamp()))
