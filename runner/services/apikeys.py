"""API keys for the E2B-compatible API: make, revoke, and check one (a check stamps its last use).

A key is `e2b_` + 40 hex characters (the shape E2B's SDKs accept). Only its HMAC-SHA256, keyed
with SECRET_KEY, is stored, so a database leak reveals no key; the key itself is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from runner.models import ApiKey, ApiSandbox
from runner.services.runtime import api_sandboxes_changed

KEY_PREFIX = "e2b_"
KEY_SHAPE = re.compile(r"e2b_[0-9a-f]{40}")
NAME_MAX_CHARS = ApiKey._meta.get_field("name").max_length or 100
# `last_used_at` is written at most this often per key, so a busy client isn't one write per request.
LAST_USED_EVERY = timedelta(seconds=60)
EXPIRY_MAX_DAYS = 5 * 365


def api_key_hash(*, key: str) -> str:
    """The stored form of `key`: HMAC-SHA256 keyed with SECRET_KEY, hex."""
    return hmac.new(settings.SECRET_KEY.encode(), key.encode(), hashlib.sha256).hexdigest()


def api_key_expiry(*, expires_on: str) -> datetime | None:
    """The moment a key given the expiry date `expires_on` (YYYY-MM-DD, "" for none) stops working:
    the end of that day in the server's time zone. Raises ValidationError for a bad or past date."""
    if not expires_on.strip():
        return None
    try:
        day = date.fromisoformat(expires_on.strip())
    except ValueError:
        raise ValidationError("The expiry date must be a date (YYYY-MM-DD).") from None
    today = timezone.localdate()
    if day < today:
        raise ValidationError(f"The expiry date {day.isoformat()} is in the past; pick today or a later day.")
    if day > today + timedelta(days=EXPIRY_MAX_DAYS):
        raise ValidationError(f"The expiry date must be within {EXPIRY_MAX_DAYS // 365} years; leave it empty for a key that never expires.")
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def api_key_create(*, owner: User, name: str = "", expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """A new key for `owner`, named `name` (default "key N"), refused from `expires_at` on (None:
    never); returns the row and the key, which is never stored. Raises ValidationError when `owner`
    has a live key of that name."""
    name = " ".join(name.split())[:NAME_MAX_CHARS]
    if not name:
        name = f"key {ApiKey.objects.filter(owner=owner).count() + 1}"
    key = KEY_PREFIX + secrets.token_hex(20)
    try:
        with transaction.atomic():
            row = ApiKey.objects.create(
                owner=owner, name=name, prefix=key[:10], key_hash=api_key_hash(key=key), expires_at=expires_at
            )
    except IntegrityError:
        raise ValidationError(f"You already have a key named {name!r}; revoke it or pick another name.") from None
    return row, key


def api_key_revoke(*, owner: User, key_id: int | None = None, name: str | None = None) -> bool:
    """Revoke `owner`'s live key with this id or name and end the sandboxes it made (each process's
    expiry kills them within seconds, lease reason "revoked"); False when there is none."""
    keys = ApiKey.objects.live().filter(owner=owner)
    keys = keys.filter(pk=key_id) if key_id is not None else keys.filter(name=name)
    with transaction.atomic():
        key_ids = list(keys.select_for_update().values_list("pk", flat=True))
        if not key_ids:
            return False
        now = timezone.now()
        ApiKey.objects.filter(pk__in=key_ids).update(revoked_at=now)
        api_sandboxes_end_now(api_key_ids=key_ids)
    return True


def api_sandboxes_end_now(*, api_key_ids: list[int] | None = None, owner_id: int | None = None) -> int:
    """Move the end of the live API sandboxes made with these keys, or owned by `owner_id`, to now:
    every route treats them as gone at once, and the expiry kills them. Returns how many."""
    rows = ApiSandbox.objects.filter(killed_at__isnull=True, end_at__gt=timezone.now())
    rows = rows.filter(api_key_id__in=api_key_ids) if api_key_ids is not None else rows.filter(session__owner_id=owner_id)
    ended = rows.update(end_at=timezone.now())
    api_sandboxes_changed()
    return ended


def api_sandbox_refusal(*, sandbox: ApiSandbox) -> str:
    """Why the data plane refuses `sandbox` now that its credentials changed (its key revoked or
    deleted, or past its expiry; its owner deactivated), or "" when they still hold. Needs session__owner and api_key loaded."""
    if sandbox.api_key is None or sandbox.api_key.revoked_at is not None:
        return "the API key that created this sandbox was revoked"
    if sandbox.api_key.is_expired:
        return "the API key that created this sandbox has expired"
    if not sandbox.session.owner.is_active:
        return "the account that owns this sandbox is deactivated"
    return ""


def api_key_authenticate_sync(*, key: str) -> ApiKey | None:
    """The usable key `key` is (not revoked nor expired, with its owner, who must be active),
    stamping its last use; else None."""
    if not isinstance(key, str) or not KEY_SHAPE.fullmatch(key):
        return None
    row = ApiKey.objects.usable(now=timezone.now()).select_related("owner").filter(key_hash=api_key_hash(key=key)).first()
    if row is None or not row.owner.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def api_sandbox_end_capped(*, api_key_id: int | None, end_at: datetime) -> datetime:
    """`end_at`, or the key's expiry when that comes first: a sandbox never outlives its key, so
    each process's expiry kills it then (lease reason "revoked"), as revoking the key does."""
    if api_key_id is None:
        return end_at
    expires_at = ApiKey.objects.filter(pk=api_key_id).values_list("expires_at", flat=True).first()
    return end_at if expires_at is None else min(end_at, expires_at)


def api_key_expiry_changed(*, api_key_id: int) -> int:
    """After the key's expiry was set or moved (the admin): end its live sandboxes no later than
    it. Returns how many ended earlier."""
    expires_at = ApiKey.objects.filter(pk=api_key_id).values_list("expires_at", flat=True).first()
    if expires_at is None:
        return 0
    moved = ApiSandbox.objects.filter(api_key_id=api_key_id, killed_at__isnull=True, end_at__gt=expires_at).update(
        end_at=max(expires_at, timezone.now())
    )
    api_sandboxes_changed()
    return moved


def api_sandbox_access_token(*, sandbox_id: str) -> str:
    """The envd access token of an API sandbox: derived (HMAC with SECRET_KEY), never stored, so
    connect can hand it out again and nobody can compute it without the secret."""
    return hmac.new(settings.SECRET_KEY.encode(), f"sandpit-envd:{sandbox_id}".encode(), hashlib.sha256).hexdigest()[:48]


def api_sandbox_token_ok(*, sandbox_id: str, token: str) -> bool:
    return hmac.compare_digest(api_sandbox_access_token(sandbox_id=sandbox_id), token)
