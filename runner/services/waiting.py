"""A run's waits before its code starts, for its task (lifecycle.py): its turn in the session's line
(here and in other processes), its sandbox (the capacity queue, a creation) and a local sandbox's
kernel. While a sandbox or a kernel takes long, `execution.starting` frames say so.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

from runner import events
from runner.models import Execution
from runner.sandboxes.base import Sandbox
from runner.services import sandboxes
from runner.services.output import publish
from runner.services.runs import ACTIVE, Run, discard_result
from runner.services.runtime import db

# How often a queued run checks whether runs ahead of it, owned by other processes, are done.
REMOTE_QUEUE_POLL_S = 0.25
# A sandbox that takes longer than this to get shows the run as "starting" (a warm one takes ~20 ms).
STARTING_GRACE_S = 0.25
# How often the run checks its place in the capacity queue while it waits.
STARTING_POLL_S = 0.2


async def turn_wait(run: Run, ahead: asyncio.Future[None] | None, *, remote_ahead: bool) -> None:
    """Wait until the session's earlier runs are done: `ahead` (the one before it here) and, when
    `remote_ahead`, those other processes own (through the database). Returns early on a Stop."""
    if await _local_turn_wait(run, ahead) and remote_ahead:
        await _remote_turn_wait(run)


async def _local_turn_wait(run: Run, ahead: asyncio.Future[None] | None) -> bool:
    """Wait until the session's earlier runs here are done. False if stopped while queued."""
    if ahead is None or ahead.done():
        return True
    stopped = asyncio.ensure_future(run.cancel.wait())
    waiting: set[asyncio.Future[Any]] = {ahead, stopped}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    return ahead.done()


async def _remote_turn_wait(run: Run) -> None:
    """Runs ahead of this one owned by other processes: wait for them (or a Stop)."""
    while await db(_remote_ahead_sync)(execution_id=run.execution_id, session_id=run.session.id):
        try:
            await asyncio.wait_for(run.cancel.wait(), REMOTE_QUEUE_POLL_S)
            return
        except asyncio.TimeoutError:
            continue


def _remote_ahead_sync(*, execution_id: int, session_id: uuid.UUID) -> bool:
    return Execution.objects.filter(session_id=session_id, pk__lt=execution_id, status__in=ACTIVE).exists()


async def _publish_starting(run: Run, ahead: int, since: datetime) -> None:
    frame: events.StartingFrame = {
        "type": "execution.starting", "execution_id": run.execution_id, "ahead": ahead, "since": since.isoformat(),
        "waited_ms": max(0, int((timezone.now() - since).total_seconds() * 1000)),
    }
    run.starting = frame
    await publish(run.group, {"type": "execution.starting", "frame": frame})


async def sandbox_wait(
    run: Run, acquiring: asyncio.Future[sandboxes.AcquiredSandbox]
) -> sandboxes.AcquiredSandbox | None:
    """`acquiring`'s sandbox; while it takes longer than STARTING_GRACE_S, `execution.starting` frames
    say how many wait ahead (re-sent when that changes). None when the run is stopped meanwhile.
    Raises what `acquiring` raises."""
    stopped: asyncio.Future[Any] = asyncio.ensure_future(run.cancel.wait())
    either: set[asyncio.Future[Any]] = {acquiring, stopped}
    shown: int | None = None
    try:
        await asyncio.wait(either, timeout=STARTING_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
        while not acquiring.done():
            if stopped.done():
                return None
            state = sandboxes.sandbox_wait_state(session_id=run.session.id)
            if state is not None and state.ahead != shown and run.execution_id:
                shown = state.ahead
                await _publish_starting(run, state.ahead, state.since)
            await asyncio.wait(either, timeout=STARTING_POLL_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    return acquiring.result()


async def kernel_wait(run: Run, sandbox: Sandbox) -> None:
    """A local sandbox whose kernel for the run's language isn't up yet: show `execution.starting`
    (0 ahead) until it is. Its failure is left to the run, which starts the kernel again."""
    ready = getattr(sandbox, "kernel_ready", None)  # beyond the Protocol: the local backend has it
    if ready is None or ready(run.language, run.kernel):
        run.starting = None
        return
    starting = asyncio.ensure_future(sandbox.kernel_start(run.language, run.kernel))  # type: ignore[attr-defined]
    starting.add_done_callback(discard_result)
    stopped = asyncio.ensure_future(run.cancel.wait())
    try:
        since = datetime.fromisoformat(run.starting["since"]) if run.starting is not None else timezone.now()
        grace_s = 0.0 if run.starting is not None else STARTING_GRACE_S
        await asyncio.wait({starting, stopped}, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done() and not stopped.done():
            await _publish_starting(run, 0, since)
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        run.starting = None
