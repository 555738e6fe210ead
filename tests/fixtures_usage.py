"""Usage and limits: rate-limit counters live in the shared cache (the database cache table, or
Redis), which a test database flush doesn't empty; each test starts with none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings


def rate_limits_reset() -> None:
    from django.core.cache import cache

    if settings.REDIS_URL:
        # Only our keys: never FLUSHDB, the channel layer (and other test runs) share the database.
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        keys = list(client.scan_iter(match=cache.make_key("ratelimit:*")))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _rate_limits_fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    yield
    try:
        rate_limits_reset()
    except Exception:  # the test's database may already be torn down; the next test resets too
        pass
