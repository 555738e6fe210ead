"""Per-user rate limits on the Django cache (fixed windows): comments and join-code attempts."""

from __future__ import annotations

from django.core.cache import cache


def rate_limit_allow(*, action: str, user_id: int, limit: int, window_s: int) -> bool:
    """Count one `action` by `user_id`; False once the window already holds `limit` of them."""
    key = f"sandpit:rate:{action}:{user_id}"
    if cache.add(key, 1, timeout=window_s):
        return True
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr: this is the window's first
        cache.add(key, 1, timeout=window_s)
        return True
    return count <= limit
