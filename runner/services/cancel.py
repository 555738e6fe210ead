"""Stop: end a run, queued or running, from any tab and any process.

The row names its owner process (boot id). A Stop that lands in the owner interrupts the run's
sandbox until the run is done; one that lands elsewhere is forwarded to the owner's channel
(housekeeping.py's listener there calls `execution_cancel_local`); a dead owner's run is swept.
A line typed for a run's input() travels the same way (`execution_input_reply`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.contrib.auth.models import User

from runner import events
from runner.models import ChatSession
from runner.selectors.executions import execution_owner_sync
from runner.services.runs import ACTIVE, Run, RunRejected, execution_input_reply_local, runs_here
from runner.services.runtime import BOOT_ID, channel_layer, db, live_boot_ids_sync
from runner.services.sweep import execution_sweep

log = logging.getLogger(__name__)

# Stop re-sends the interrupt this often while the run is live, for at most INTERRUPT_FOR_S: an
# early one can land before the kernel has the request. (Backends re-send on their own too; more
# often from here would only pile interrupts onto a kernel already handling one.)
INTERRUPT_EVERY_S = 1.0
INTERRUPT_FOR_S = 10.0
INPUT_REPLY_MAX_CHARS = 10_000


async def execution_input_reply(*, session: ChatSession, user: User, execution_id: object, value: object) -> None:
    """Send the line a run's input() waits for, to whichever process runs it. Raises `RunRejected`
    (bad_request, forbidden, not_found: no such run, or it isn't waiting for input here)."""
    if isinstance(execution_id, bool) or not isinstance(execution_id, int):
        raise RunRejected("bad_request", "`execution_id` must be an integer.")
    if not isinstance(value, str):
        raise RunRejected("bad_request", "`value` must be a string.")
    if len(value) > INPUT_REPLY_MAX_CHARS:
        raise RunRejected("bad_request", f"That input is {len(value):,} characters; the limit is {INPUT_REPLY_MAX_CHARS:,}.")
    if session.owner_id != user.pk:
        raise RunRejected("forbidden", "Only the session's owner can answer its runs' input.")
    run = runs_here.get(execution_id)
    if run is not None and run.session.id == session.id:
        if not execution_input_reply_local(execution_id=execution_id, value=value):
            raise RunRejected("not_found", "That run isn't waiting for input.")
        return
    row = await db(execution_owner_sync)(execution_id=execution_id, session_id=session.id)
    if row is None or row[0] not in ACTIVE or row[1] == BOOT_ID:
        raise RunRejected("not_found", "That run isn't waiting for input.")
    message: events.InputReplyMessage = {"type": "execution.input_reply", "execution_id": execution_id, "value": value}
    await channel_layer().send(events.process_channel(row[1]), dict(message))


async def execution_cancel(*, session: ChatSession, user: User, execution_id: object) -> None:
    """Stop a run of `session`, queued or running, wherever it runs: the owner process interrupts
    it and it ends `cancelled`, keeping the session's variables. A run already finished is left
    as it is. Raises `RunRejected` (bad_request, forbidden, not_found)."""
    if isinstance(execution_id, bool) or not isinstance(execution_id, int):
        raise RunRejected("bad_request", "`execution_id` must be an integer.")
    if session.owner_id != user.pk:
        raise RunRejected("forbidden", "Only the session's owner can stop its runs.")
    if execution_id in runs_here and runs_here[execution_id].session.id == session.id:
        await execution_cancel_local(execution_id=execution_id)
        return
    row = await db(execution_owner_sync)(execution_id=execution_id, session_id=session.id)
    if row is None:
        raise RunRejected("not_found", f"This session has no run {execution_id}.")
    status, owner = row
    if status not in ACTIVE:
        return
    if owner == BOOT_ID:
        await execution_cancel_local(execution_id=execution_id)
        return
    if owner not in await db(live_boot_ids_sync)():
        await execution_sweep()  # its process is dead: nobody would hear the Stop; end it here
        return
    message: events.CancelMessage = {"type": "execution.cancel", "execution_id": execution_id}
    await channel_layer().send(events.process_channel(owner), dict(message))


async def execution_cancel_local(*, execution_id: int) -> None:
    """Stop a run this process owns (no-op if it has ended)."""
    run = runs_here.get(execution_id)
    if run is None or run.cancel.is_set():
        return
    run.cancel.set()
    if run.sandbox is not None:
        asyncio.ensure_future(interrupt_until_done(run))


async def interrupt_until_done(run: Run) -> None:
    """Interrupt the run's sandbox every INTERRUPT_EVERY_S until the run is done (at most INTERRUPT_FOR_S)."""
    deadline = time.monotonic() + INTERRUPT_FOR_S
    while not run.done.is_set() and run.sandbox is not None and time.monotonic() < deadline:
        try:
            await run.sandbox.interrupt()
        except Exception:
            log.warning("interrupting run %s failed", run.execution_id, exc_info=True)
        try:
            await asyncio.wait_for(run.done.wait(), INTERRUPT_EVERY_S)
        except asyncio.TimeoutError:
            continue
