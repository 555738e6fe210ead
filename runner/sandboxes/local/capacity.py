"""How many local sandboxes this machine holds: memory the host (or this server's cgroup) really has
left, counting what live sandboxes actually use, not their limits.

With SANDBOX_MAX_LIVE=0 ("auto") a new sandbox is admitted while, after it, the available memory
stays above SANDBOX_MEMORY_HEADROOM_MB, and below a ceiling from the machine's pid/thread limits.
An explicit SANDBOX_MAX_LIVE is a fixed count instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

MIB = 1024 * 1024
# What a sandbox that has only just started is counted as until it uses more: an idle Python kernel
# after `import pandas, matplotlib` holds about 90 MB PSS (issue 18).
NEW_SANDBOX_BYTES = 90 * MIB
# A cgroup "limit" at or above this means no limit (v1 reports 2**63 rounded to the page size).
NO_LIMIT_BYTES = 1 << 60


def meminfo_available_bytes(text: str) -> int | None:
    """MemAvailable from /proc/meminfo's text, in bytes; None when absent."""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key == "MemAvailable":
            return int(rest.split()[0]) * 1024
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _own_cgroup_room_bytes(own: dict[str, str], root: Path) -> int | None:
    """What this server's own cgroup (and its ancestors) lets it still allocate: limit - usage; None without a limit."""
    if "" in own and (root / "cgroup.controllers").exists():  # v2
        path = root / own[""].lstrip("/")
        rooms = []
        while True:
            limit, usage = _read(path / "memory.max"), _read(path / "memory.current")
            if limit.isdigit() and usage.isdigit() and int(limit) < NO_LIMIT_BYTES:
                rooms.append(int(limit) - int(usage))
            if path == root or root not in path.parents:
                break
            path = path.parent
        return min(rooms) if rooms else None
    if "memory" in own:  # v1: memory.limit_in_bytes is already hierarchical with use_hierarchy
        path = root / "memory" / own["memory"].lstrip("/")
        limit, usage = _read(path / "memory.limit_in_bytes"), _read(path / "memory.usage_in_bytes")
        if limit.isdigit() and usage.isdigit() and int(limit) < NO_LIMIT_BYTES:
            return int(limit) - int(usage)
    return None


def available_bytes(own_cgroup: dict[str, str], cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Memory this server can still give sandboxes: the host's MemAvailable, or less when its own cgroup is limited."""
    host = meminfo_available_bytes(_read(Path("/proc/meminfo"))) or 0
    room = _own_cgroup_room_bytes(own_cgroup, cgroup_root)
    return host if room is None else min(host, room)


def ceiling() -> int:
    """A hard cap on live sandboxes whatever the memory: a quarter of the machine's pids/threads at
    SANDBOX_PIDS each, so sandboxes at their pids limit can't exhaust the host's."""
    limits = [int(v) for v in (_read(Path("/proc/sys/kernel/pid_max")), _read(Path("/proc/sys/kernel/threads-max"))) if v.isdigit()]
    machine = min(limits) if limits else 32768
    return max(1, machine // (4 * max(1, settings.SANDBOX_PIDS)))


def has_room(*, live: int, used_bytes: Iterable[int | None], available: int) -> bool:
    """Whether one more sandbox fits. `used_bytes`: what each live sandbox uses now (None: unknown),
    each counted as at least NEW_SANDBOX_BYTES, since a kernel still starting hasn't allocated yet."""
    if settings.SANDBOX_MAX_LIVE > 0:
        return live < settings.SANDBOX_MAX_LIVE
    if live >= ceiling():
        return False
    # What live sandboxes will still take beyond what MemAvailable already shows them using.
    still_to_come = sum(max(NEW_SANDBOX_BYTES - (used or 0), 0) for used in used_bytes)
    return available - still_to_come - NEW_SANDBOX_BYTES >= settings.SANDBOX_MEMORY_HEADROOM_MB * MIB


def describe() -> str:
    """The cap in words, for health and refusals."""
    if settings.SANDBOX_MAX_LIVE > 0:
        return f"the limit is {settings.SANDBOX_MAX_LIVE}"
    return f"the limit is what memory allows, keeping {settings.SANDBOX_MEMORY_HEADROOM_MB} MB free"


@dataclass(frozen=True)
class CapacityNow:
    """This server's local sandboxes against its cap, for the admin's live view."""

    live: int
    max_live: int | None  # the fixed cap, or None when memory decides (SANDBOX_MAX_LIVE auto)
    ceiling: int  # the pids/threads ceiling, whatever the memory
    cap_text: str  # describe()
    sandboxes_memory_bytes: int  # what live and warm sandboxes' cgroups hold now
    available_bytes: int  # what this server can still give sandboxes (available_bytes())
    headroom_bytes: int  # kept free (SANDBOX_MEMORY_HEADROOM_MB)
    warm: int  # started and waiting in the pool
    warming: int  # being started for the pool
    has_room: bool

    @property
    def left_bytes(self) -> int:
        """Memory new sandboxes may still take before the headroom."""
        return max(self.available_bytes - self.headroom_bytes, 0)
