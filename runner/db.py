"""The one-hop `db` wrapper and `db_retry`: how async code reaches the ORM.

At the bottom of runner (it imports only Django), so services and selectors alike may use it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

T = TypeVar("T")


def db(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run a sync ORM function on Django's one sync thread: one thread hop, connection kept.

    Unlike `database_sync_to_async`, this doesn't close and reopen the connection around every
    call (with CONN_MAX_AGE=0 that is a reconnect per hop); a connection found broken is closed so
    the next call reconnects.
    """

    def guarded(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception:
            if not connection.in_atomic_block and connection.connection is not None and not connection.is_usable():
                connection.close()
            raise

    return sync_to_async(guarded, thread_sensitive=True)


# A run's output and its end are retried this long while the database is unreachable (a Postgres
# restart or failover, a SQLite file locked past its busy timeout), so a short outage loses nothing.
DB_RETRY_FOR_S = 30.0
DB_RETRY_FIRST_S = 0.2
DB_RETRY_MAX_S = 2.0


async def db_retry(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`await db(fn)(**kwargs)`, tried again with backoff for up to DB_RETRY_FOR_S while the
    database is unreachable (OperationalError, InterfaceError; `db` reconnects). Other errors, and
    the last failure, raise. `fn` must be one transaction, so a retry never doubles a write."""
    deadline_s = time.monotonic() + DB_RETRY_FOR_S
    delay_s = DB_RETRY_FIRST_S
    while True:
        try:
            return await db(fn)(**kwargs)
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay_s > deadline_s:
                raise
            log.warning("%s failed (%s); trying again in %.1fs", fn.__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, DB_RETRY_MAX_S)


__all__ = ["DB_RETRY_FIRST_S", "DB_RETRY_FOR_S", "DB_RETRY_MAX_S", "db", "db_retry"]
