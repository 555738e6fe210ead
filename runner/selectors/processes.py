"""Reads about server processes: which are alive, and which own a session's open leases.

Every run and lease names the process that owns it by boot id (runner/process.py); each process
keeps a `ServerProcess` row fresh (services/housekeeping.py), and `live_boot_ids_sync` says which
owners are alive.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from runner.models import SandboxLease, ServerProcess
from runner.process import BOOT_ID, HOSTNAME


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


def lease_owners_sync(*, session_id: uuid.UUID) -> list[str]:
    """Live processes, other than this one, that own an open lease of the session."""
    live = live_boot_ids_sync() - {BOOT_ID}
    owners = SandboxLease.objects.open().filter(session_id=session_id, owner_boot_id__in=live)
    return sorted(set(owners.values_list("owner_boot_id", flat=True)))


__all__ = ["lease_owners_sync", "live_boot_ids_sync"]
