"""This process's runtime primitives: the channel layer, log throttling, and process-wide markers.

The bottom of runner.services: it imports nothing else of it, so every service module may use it.
It re-exports what service modules import from here but that lives lower down: `db` and
`db_retry` (runner/db.py), the boot id (runner/process.py) and `live_boot_ids_sync`
(selectors/processes.py). Every run and lease names the process that owns it by boot id; each
process keeps a `ServerProcess` row fresh (housekeeping.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from runner.db import DB_RETRY_FIRST_S, DB_RETRY_FOR_S, DB_RETRY_MAX_S, db, db_retry
from runner.process import BOOT_ID, HOSTNAME
from runner.selectors.processes import live_boot_ids_sync


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


# time.monotonic() of the last output write: output.py sets it, the WAL checkpointer
# (housekeeping.py) waits for a quiet spell after it.
last_output_write_s = 0.0

# Housekeeping (housekeeping.py, above every module here) registers how it starts at import, so
# every caller, a module below it included, starts it through `runtime_ensure_started`.
_housekeeping_starter: Callable[[], Awaitable[None]] | None = None


def housekeeping_register(starter: Callable[[], Awaitable[None]]) -> None:
    """Called once by housekeeping.py: the coroutine function that starts it on the running loop."""
    global _housekeeping_starter
    _housekeeping_starter = starter


async def runtime_ensure_started() -> None:
    """Start this process's housekeeping on the running loop, once per loop. Cheap when started."""
    if _housekeeping_starter is None:  # runner/services/__init__.py imports housekeeping.py, which registers it
        raise RuntimeError("runner.services.housekeeping isn't loaded, so housekeeping can't start")
    await _housekeeping_starter()


__all__ = [
    "BOOT_ID", "DB_RETRY_FIRST_S", "DB_RETRY_FOR_S", "DB_RETRY_MAX_S", "HOSTNAME", "LogThrottle",
    "api_sandboxes_changed", "api_sandboxes_generation", "channel_layer", "db", "db_retry",
    "housekeeping_register", "live_boot_ids_sync", "runtime_ensure_started",
]
