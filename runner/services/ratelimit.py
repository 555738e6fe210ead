"""Per-user rate limits shared by every socket and server process, counted in Django's cache
(Redis when REDIS_URL is set, else the database cache table, which SQLite processes share too).

A fixed window per (scope, user): the first hit in a window creates the counter, each hit
increments it; past `limit` the caller refuses with `rate_limited` until the next window.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from runner.services.runtime import LogThrottle, db

log = logging.getLogger(__name__)
# A cache outage (Redis restarting) is logged at most this often.
CACHE_FAILURE_LOG_EVERY_S = 30.0
_cache_failures = LogThrottle(CACHE_FAILURE_LOG_EVERY_S)


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    count: int
    limit: int
    window_s: int
    # Which window this hit fell in, so a socket tells its user once per window.
    window: int
    retry_after_s: int

    @property
    def message(self) -> str:
        """The limit and when to try again, for the end of a sentence: "at most 60 per 10 seconds; try again in 4 s"."""
        return f"at most {self.limit} per {self.window_s} seconds; try again in {self.retry_after_s} s"


def ratelimit_hit_sync(*, scope: str, user_id: int, limit: int, window_s: int) -> RateVerdict:
    """Count one request of `user_id` in `scope`; allowed while the window's count is within `limit`
    (a limit of 0 or less allows everything and counts nothing)."""
    now = time.time()
    window = int(now // window_s)
    retry_after_s = max(1, int((window + 1) * window_s - now + 0.999))
    if limit <= 0:
        return RateVerdict(True, 0, limit, window_s, window, retry_after_s)
    key = f"ratelimit:{scope}:{user_id}:{window}"
    try:
        try:
            count = cache.incr(key)  # the usual case: the window's counter exists
        except ValueError:
            # The window's first hit. add() is a no-op when the key exists, so concurrent first hits
            # never reset each other's count: the loser increments the winner's.
            count = 1 if cache.add(key, 1, timeout=window_s * 2) else cache.incr(key)
    except Exception as exc:
        # The cache itself is down (Redis restarting, say): fail open, counting nothing, rather than
        # fail every request. Budgets and quotas, which are in the database, still hold.
        if _cache_failures.due():
            log.warning("rate limit not counted: the cache failed (%s: %s)", type(exc).__name__, exc)
        return RateVerdict(True, 0, limit, window_s, window, retry_after_s)
    return RateVerdict(count <= limit, count, limit, window_s, window, retry_after_s)


async def ratelimit_hit(*, scope: str, user_id: int, limit: int, window_s: int) -> RateVerdict:
    """`ratelimit_hit_sync` from async code. With Redis, on a worker thread, so a frame never
    waits behind the database thread's output writes; with the database cache, on the database
    thread (its connection is there)."""
    if limit <= 0:
        return ratelimit_hit_sync(scope=scope, user_id=user_id, limit=limit, window_s=window_s)
    if settings.REDIS_URL:
        return await sync_to_async(ratelimit_hit_sync, thread_sensitive=False)(
            scope=scope, user_id=user_id, limit=limit, window_s=window_s
        )
    return await db(ratelimit_hit_sync)(scope=scope, user_id=user_id, limit=limit, window_s=window_s)
