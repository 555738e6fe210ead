"""What this process publishes for the admin's live view (`/admin/live/`): each sandbox it holds
with its CPU and memory now, and its capacity (live against the cap, memory in use and left, the
warm pool, the capacity queue).

Why the owner publishes rather than the viewer reading: with several Daphnes (scale-out), the
process that holds a sandbox is the only one that can read its cgroup (another host's cgroups are
out of reach) or has its E2B handle. So every LIVE_STATS_S each process measures what it holds and
writes it into its own `ServerProcess.live_stats` row: one UPDATE per process per beat, whatever
the number of sandboxes, and a page view is a few reads with no sandbox call at all. The figures
are at most LIVE_STATS_S old; the page shows when they were taken.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from runner.models import ServerProcess
from runner.sandboxes.base import SandboxUsage, get_backend
from runner.services.sandboxes import backend_name, sandbox_queue_sessions, sandboxes_held
from runner.services.runtime import BOOT_ID, db

log = logging.getLogger(__name__)

# A sandbox that doesn't answer within this long shows "n/a" for this beat.
USAGE_TIMEOUT_S = 3.0
# Sandboxes measured at once (E2B's are HTTP calls).
USAGE_CONCURRENCY = 16


async def _usage_of(sandbox: Any, gate: asyncio.Semaphore) -> SandboxUsage:
    async with gate:
        try:
            return await asyncio.wait_for(sandbox.usage(), USAGE_TIMEOUT_S)
        except Exception:  # "n/a" on the page; a closed or slow sandbox must not stop the others
            return SandboxUsage()


def _capacity_sync(name: str) -> dict[str, Any]:
    """The backend's capacity now, as the row stores it ({} for a backend without one: E2B is its own fleet)."""
    try:
        backend = get_backend(name)
    except Exception:
        return {}
    now = getattr(backend, "capacity_now", None)
    if now is None:
        return {}
    found = now()
    return {
        "live": found.live, "max_live": found.max_live, "ceiling": found.ceiling, "cap_text": found.cap_text,
        "sandboxes_memory_bytes": found.sandboxes_memory_bytes, "available_bytes": found.available_bytes,
        "headroom_bytes": found.headroom_bytes, "left_bytes": found.left_bytes, "warm": found.warm,
        "warming": found.warming, "has_room": found.has_room,
    }


async def live_stats_collect() -> dict[str, Any]:
    """This process's figures: {"backend", "capacity", "queue": [{"session_id", "since"}],
    "sandboxes": {sandbox id: {"session_id", "lease_id", "cpu_percent", "memory_bytes", "memory_limit_bytes"}}}."""
    held = sandboxes_held()
    gate = asyncio.Semaphore(USAGE_CONCURRENCY)
    usages = await asyncio.gather(*(_usage_of(h.sandbox, gate) for h in held))
    name = backend_name()
    capacity = _capacity_sync(name) if name == "local" else {}  # a few small reads; on the loop, as the backend's books are
    return {
        "backend": name,
        "capacity": capacity,
        "queue": [{"session_id": str(sid), "since": since.isoformat()} for sid, since in sandbox_queue_sessions()],
        "sandboxes": {
            h.sandbox.id: {
                "session_id": str(h.session_id), "lease_id": h.lease_id, "backend": h.backend,
                "cpu_percent": u.cpu_percent, "memory_bytes": u.memory_bytes, "memory_limit_bytes": u.memory_limit_bytes,
            }
            for h, u in zip(held, usages)
        },
    }


def _store_sync(*, stats: dict[str, Any]) -> None:
    ServerProcess.objects.filter(boot_id=BOOT_ID).update(live_stats=stats, live_stats_at=timezone.now())


async def live_stats_publish() -> dict[str, Any]:
    """Measure what this process holds and write it into its `ServerProcess` row (which the
    heartbeat creates). Returns what it wrote."""
    stats = await live_stats_collect()
    await db(_store_sync)(stats=stats)
    return stats


async def live_stats_forever() -> None:
    """Publish every LIVE_STATS_S (housekeeping runs this on the serving loop)."""
    every_s = settings.LIVE_STATS_S
    while True:
        try:
            await live_stats_publish()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("publishing live figures failed; trying again in %ss", every_s)
        await asyncio.sleep(every_s)
