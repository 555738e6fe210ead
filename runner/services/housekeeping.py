"""This process's housekeeping on the event loop, above the modules whose work it schedules.

Housekeeping starts lazily on first use (the first request of any kind, through
`runner.middleware.HousekeepingMiddleware` around the whole ASGI application; in tests, a websocket
connect or a run), never at import time, so management commands such as `migrate` don't touch it.
It runs on the serving event loop:
- the start-up sweep (dead owners' runs become `interrupted`, their leases end);
- a heartbeat (this process's `ServerProcess` row), a periodic sweep of stale peers, and the idle reaper;
- every LIVE_STATS_S, this process's sandboxes' CPU and memory and its capacity, for the admin's
  live view (live.py);
- every ASSIGNMENT_CHECKS_POLL_S, queued assignment checks are claimed and run (checks.py);
- every BUDGET_CHECK_S, budget alerts and closing idle sandboxes of users past a limit (budgets.py);
- on SQLite, a WAL checkpoint every 0.1 s when output is quiet, off the request path;
- a listener on this process's channel for Stop and sandbox-restart requests from other
  processes, dispatched down to cancel.py and sandboxes.py.
Nothing in runner.services imports this module: every caller starts it through
`runtime.runtime_ensure_started` (`services.runtime_ensure_started`), which this module's `_start` backs.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import sqlite3
import time
import uuid

from django.conf import settings
from django.db import connections
from django.utils import timezone

from runner.events import process_channel
from runner.models import SandboxLease, ServerProcess
from runner.services import runtime
from runner.services.budgets import budget_enforce
from runner.services.checks import submission_checks_start
from runner.services.cancel import execution_cancel_local
from runner.services.live import live_stats_forever
from runner.services.runs import execution_input_reply_local
from runner.services.runtime import BOOT_ID, HOSTNAME, db
from runner.services.runs import runs_here
from runner.services.sandboxes import (
    lease_end_mine_sync,
    lease_sweep,
    sandbox_reap_idle,
    sandbox_restart_local,
    sandboxes_close_all,
    sandboxes_held_count,
)
from runner.services.sweep import execution_sweep, execution_sweep_sync

log = logging.getLogger(__name__)


class _Runtime:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()


_runtime: _Runtime | None = None
_swept_at_start = False


def _heartbeat_sync() -> None:
    now = timezone.now()
    updated = ServerProcess.objects.filter(boot_id=BOOT_ID).update(seen_at=now)
    if not updated:  # first beat, or a test flushed the table
        ServerProcess.objects.update_or_create(
            boot_id=BOOT_ID, defaults={"hostname": HOSTNAME, "pid": os.getpid(), "started_at": now, "seen_at": now}
        )


async def _start() -> None:
    """Start this process's housekeeping on the running loop, once per loop. Cheap when started."""
    global _runtime, _swept_at_start
    loop = asyncio.get_running_loop()
    current = _runtime
    if current is not None and current.loop is loop:
        if not current.ready.is_set():
            await current.ready.wait()
        return
    current = _runtime = _Runtime(loop)
    try:
        await db(_heartbeat_sync)()
        if not _swept_at_start:
            await execution_sweep()
            await lease_sweep()
            _swept_at_start = True
        current.tasks.append(loop.create_task(_housekeeping(), name="sandpit-housekeeping"))
        current.tasks.append(loop.create_task(_listen(), name="sandpit-listener"))
        current.tasks.append(loop.create_task(_budgets(), name="sandpit-budgets"))
        current.tasks.append(loop.create_task(live_stats_forever(), name="sandpit-live-stats"))
        current.tasks.append(loop.create_task(_assignment_checks(), name="sandpit-assignment-checks"))
        if connections["default"].vendor == "sqlite":
            current.tasks.append(loop.create_task(_checkpoint_wal(), name="sandpit-wal-checkpoint"))
        _dump_state_on_sigusr1(loop)
    except BaseException:
        # The database was unreachable (say): the next caller tries again instead of finding a
        # runtime that never started its loops.
        if _runtime is current:
            _runtime = None
        for task in current.tasks:
            task.cancel()
        raise
    finally:
        current.ready.set()


runtime.housekeeping_register(_start)


def _dump_state_on_sigusr1(loop: asyncio.AbstractEventLoop) -> None:
    """`kill -USR1 <pid>` logs one line of this process's state (bench/soak.py counts leftovers with it)."""

    def dump() -> None:
        log.warning(
            "state: %d asyncio tasks, %d sandboxes held, %d runs here",
            len(asyncio.all_tasks(loop)), sandboxes_held_count(), len(runs_here),
        )

    try:
        loop.add_signal_handler(signal.SIGUSR1, dump)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no signals here
        pass


STOP_WAIT_S = 5.0
STOP_RECANCEL_S = 0.5


async def runtime_stop() -> None:
    """Close this process's sandboxes and stop its housekeeping (tests, and orderly shutdown)."""
    global _runtime
    current, _runtime = _runtime, None
    if current is not None:
        # A cancel can be swallowed (Python 3.11's wait_for, as redis-py used it: see
        # project/redis_connections.py), and a task left running hangs its loop's close: cancel
        # again until the tasks end, for up to STOP_WAIT_S.
        pending = set(current.tasks)
        deadline_s = time.monotonic() + STOP_WAIT_S
        while pending and time.monotonic() < deadline_s:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_RECANCEL_S)
        for task in current.tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not warn about it
        for task in pending:
            log.warning("housekeeping task %s did not stop within %.0f s; left cancelled", task.get_name(), STOP_WAIT_S)
    await sandboxes_close_all(reason=SandboxLease.EndReason.SHUTDOWN)
    await db(connections.close_all)()  # the sync thread's connection, kept open between hops


async def _housekeeping() -> None:
    every_s = settings.SERVER_HEARTBEAT_S
    while True:
        await asyncio.sleep(every_s)
        try:
            await db(_heartbeat_sync)()
            await execution_sweep()
            await lease_sweep()
            await sandbox_reap_idle()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping failed; trying again in %ss", every_s)


async def _budgets() -> None:
    """Budget alerts, and closing idle sandboxes of users past a limit (budgets.py)."""
    every_s = settings.BUDGET_CHECK_S
    while True:
        await asyncio.sleep(every_s)
        try:
            await budget_enforce()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("budget check failed; trying again in %ss", every_s)


async def _assignment_checks() -> None:
    """Queued assignment checks (hand-ins, "Check my work"), claimed from the rows and run here."""
    every_s = settings.ASSIGNMENT_CHECKS_POLL_S
    running: set[asyncio.Task[None]] = set()
    while True:
        await asyncio.sleep(every_s)
        try:
            # The claim is awaited here (one short query); the checks it starts are not, so a long
            # check doesn't stop the next poll. Nothing queued: no task is left behind.
            for task in await submission_checks_start():
                running.add(task)
                task.add_done_callback(running.discard)
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            raise
        except Exception:
            log.exception("assignment checks failed; trying again in %ss", every_s)


async def _listen() -> None:
    """Serve requests sent to this process about what it owns: a Stop of one of its runs, or a
    restart of a sandbox it holds, from another process."""
    layer = runtime.channel_layer()
    channel = process_channel(BOOT_ID)
    while True:
        try:
            message = await layer.receive(channel)
            if message.get("type") == "execution.cancel":
                await execution_cancel_local(execution_id=int(message["execution_id"]))
            elif message.get("type") == "execution.input_reply":
                execution_input_reply_local(execution_id=int(message["execution_id"]), value=str(message["value"]))
            elif message.get("type") == "sandbox.restart":
                await sandbox_restart_local(
                    session_id=uuid.UUID(str(message["session_id"])), reply_channel=str(message.get("reply_channel", "")),
                    reason=str(message.get("reason") or SandboxLease.EndReason.RESTART), note=str(message.get("note") or ""),
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bad request on %s", channel)
            await asyncio.sleep(0.5)


# SQLite in WAL mode: the WAL is copied back here, on its own connection and thread, rather than
# inside a run's commit (settings' autocheckpoint is only a backstop). Why: docs/benchmarks.md.
WAL_CHECKPOINT_EVERY_S = 0.1
# It waits for WAL_CHECKPOINT_QUIET_S without output writes, but never longer than WAL_CHECKPOINT_WAIT_MAX_S.
WAL_CHECKPOINT_QUIET_S = 0.1
WAL_CHECKPOINT_WAIT_MAX_S = 5.0


async def _checkpoint_wal() -> None:
    path = str(connections["default"].settings_dict["NAME"])
    conn = await asyncio.to_thread(sqlite3.connect, path, timeout=5, isolation_level=None, check_same_thread=False)

    def checkpoint() -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    running: asyncio.Future[None] | None = None
    checkpointed_s = time.monotonic()
    try:
        while True:
            await asyncio.sleep(WAL_CHECKPOINT_EVERY_S)
            now = time.monotonic()
            if now - runtime.last_output_write_s < WAL_CHECKPOINT_QUIET_S and now - checkpointed_s < WAL_CHECKPOINT_WAIT_MAX_S:
                continue
            checkpointed_s = now
            running = asyncio.ensure_future(asyncio.to_thread(checkpoint))
            try:
                await asyncio.shield(running)
            except sqlite3.Error:
                log.warning("WAL checkpoint failed; trying again", exc_info=True)
    finally:
        # Cancelled (runtime_stop): never close the connection under a checkpoint still running.
        if running is not None and not running.done():
            await asyncio.wait({running})
        if running is not None and running.done() and not running.cancelled():
            running.exception()
        conn.close()


@atexit.register
def _at_exit() -> None:
    """SIGTERM or a normal exit: our runs become interrupted and our leases end now, not at the
    next sweep. (SIGKILL skips this; the start-up sweep of the next process covers it.)"""
    if _runtime is None:
        return  # never served anything, or stopped in order: nothing to clean
    try:
        execution_sweep_sync(owner_boot_ids={BOOT_ID})
        lease_end_mine_sync()
        ServerProcess.objects.filter(boot_id=BOOT_ID).delete()
    except Exception:  # the database may be gone already (logging too); the next start-up sweep covers it
        pass
