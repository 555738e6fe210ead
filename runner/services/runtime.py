"""This process's runtime primitives: its boot id, the one-hop `db` wrapper, and peer liveness.

The bottom of runner.services: it imports nothing else of it, so every service module may use it.
Every run and lease names the process that owns it by boot id; each process keeps a
`ServerProcess` row fresh (housekeeping.py), and `live_boot_ids_sync` says which owners are alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from runner.models import ServerProcess

log = logging.getLogger(__name__)

BOOT_ID = uuid.uuid4().hex
HOSTNAME = socket.gethostname()[:255]

T = TypeVar("T")


def channel_layer() -> BaseChannelLayer:
    """The default channel layer. Raises ImproperlyConfigured if CHANNEL_LAYERS has none (settings.py
    always defines one)."""
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS defines no default layer")
    return layer


class LogThrottle:
    """Says whether to log an outage's next failure: at most once every `every_s` seconds, so a
    down Redis logs a line now and then rather than one a request."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last_s = -every_s

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last_s < self.every_s:
            return False
        self._last_s = now
        return True


# Bumped whenever this process ends or shortens an API sandbox, so a cache of ApiSandbox rows
# (the E2B API's routing) knows that anything it read before may be stale.
_api_sandboxes_generation = 0


def api_sandboxes_changed() -> None:
    global _api_sandboxes_generation
    _api_sandboxes_generation += 1


def api_sandboxes_generation() -> int:
    return _api_sandboxes_generation


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


def live_boot_ids_sync() -> set[str]:
    """Boot ids of server processes that are alive: a fresh heartbeat, and on this host a live pid."""
    fresh_after = timezone.now() - timedelta(seconds=settings.SERVER_STALE_S)
    live = {BOOT_ID}
    for boot_id, hostname, pid in ServerProcess.objects.filter(seen_at__gte=fresh_after).values_list(
        "boot_id", "hostname", "pid"
    ):
        if hostname == HOSTNAME and not _pid_alive(pid):
            continue  # restarted on this host within the stale window: the old process is gone
        live.add(boot_id)
    return live


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# time.monotonic() of the last output write: output.py sets it, the WAL checkpointer
# (housekeeping.py) waits for a quiet spell after it.
last_output_write_s = 0.0

# Housekeeping (housekeeping.py, above every module here) registers its starter at import, so a
# module below it can make sure it runs without importing it.
_housekeeping_starter: Callable[[], Awaitable[None]] | None = None


def housekeeping_register(starter: Callable[[], Awaitable[None]]) -> None:
    """Called once by housekeeping.py: the coroutine function that starts it on the running loop."""
    global _housekeeping_starter
    _housekeeping_starter = starter


async def housekeeping_ensure_started() -> None:
    """Start this process's housekeeping if it isn't running on this loop (cheap when it is)."""
    if _housekeeping_starter is not None:
        await _housekeeping_starter()
