"""The workspace quota, enforced from the host while code runs.

There is no filesystem quota on a plain Debian host (the workspace is a folder on the server's
filesystem), so: `prlimit --fsize` caps any one file at the quota, and while a run, command or
install goes on, `watch` measures the workspace (an lstat walk on the workspace I/O pool) and the
sandbox stops the code once the workspace holds more than it may. Code can write past the quota
by what it writes in one check interval (plus the time the stop takes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from django.conf import settings

from runner.sandboxes.local import files
from runner.sandboxes.local.workspace import in_io_pool, quota_bytes

# A check may take at most this share of the time between checks (a big workspace is measured
# less often: 10,000 files take ~40 ms of CPU per walk, so they are measured every ~0.8 s).
CHECK_COST_SHARE = 0.05
# Code that goes on writing this much after the interrupt (it caught KeyboardInterrupt) is killed.
GROWTH_AFTER_STOP_BYTES = 1024 * 1024
QUOTA_ERROR = "WorkspaceQuotaExceeded"


def stop_message(usage_bytes: int, *, what: str = "The run") -> str:
    return (f"{what} was stopped: the workspace passed its quota of {settings.SANDBOX_WORKSPACE_QUOTA_MB} MiB "
            f"(it holds {usage_bytes / 2**20:.0f} MiB). Delete files (the Files panel, or `rm` in a run) to go on.")


async def measure(workspace: Path) -> int:
    return await in_io_pool(files.usage_bytes, str(workspace))


async def watch(workspace: Path, *, on_over: Callable[[int], Awaitable[None]],
                measured: Callable[[int], None] | None = None) -> None:
    """Measure `workspace` every SANDBOX_QUOTA_CHECK_S (or less often, see CHECK_COST_SHARE) until
    cancelled; once it holds more than the quota and more than at the first check (a run that
    starts over the quota may delete files, not add), await `on_over(usage_bytes)` and return.
    `measured` is told every size measured."""
    allowed_bytes = -1
    while True:
        started = time.monotonic()
        usage_bytes = await measure(workspace)
        spent_s = time.monotonic() - started
        if measured is not None:
            measured(usage_bytes)
        if allowed_bytes < 0:
            allowed_bytes = max(quota_bytes(), usage_bytes)
        elif usage_bytes > allowed_bytes:
            await on_over(usage_bytes)
            return
        await asyncio.sleep(max(settings.SANDBOX_QUOTA_CHECK_S, spent_s / CHECK_COST_SHARE))
