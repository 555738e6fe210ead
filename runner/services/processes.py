"""This server process: its boot id, its heartbeat row, and its housekeeping on the event loop.

Every run and lease names the process that owns it by boot id. Each process keeps a
`ServerProcess` row fresh; a sweep interrupts the runs of processes that stopped heartbeating (or
whose pid is gone on this host), so several Daphnes never sweep each other's live runs.

Housekeeping starts lazily on first use (a websocket connect or a run), never at import time, so
management commands such as `migrate` don't touch it. It runs on the serving event loop:
- the start-up sweep (dead owners' runs become `interrupted`);
- a heartbeat, a periodic sweep of stale peers, and the idle reaper;
- on SQLite, a WAL checkpoint every half second, off the request path;
- a listener on this process's channel for Stop and sandbox-restart requests from other processes.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from runner.events import process_channel
from runner.models import ServerProcess

log = logging.getLogger(__name__)

BOOT_ID = uuid.uuid4().hex
HOSTNAME = socket.gethostname()[:255]

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


async def runtime_ensure_started() -> None:
    """Start this process's housekeeping on the running loop, once per loop. Cheap when started."""
    global _runtime, _swept_at_start
    loop = asyncio.get_running_loop()
    runtime = _runtime
    if runtime is not None and runtime.loop is loop:
        if not runtime.ready.is_set():
            await runtime.ready.wait()
        return
    runtime = _runtime = _Runtime(loop)
    try:
        await db(_heartbeat_sync)()
        if not _swept_at_start:
            _swept_at_start = True
            from runner.services.sweep import execution_sweep
            from runner.services.sandboxes import lease_sweep

            await execution_sweep()
            await lease_sweep()
        runtime.tasks.append(loop.create_task(_housekeeping(), name="sandpit-housekeeping"))
        runtime.tasks.append(loop.create_task(_listen(), name="sandpit-listener"))
        if connections["default"].vendor == "sqlite":
            runtime.tasks.append(loop.create_task(_checkpoint_wal(), name="sandpit-wal-checkpoint"))
    finally:
        runtime.ready.set()


async def runtime_stop() -> None:
    """Close this process's sandboxes and stop its housekeeping (tests, and orderly shutdown)."""
    global _runtime
    from runner.services.sandboxes import SandboxLease, sandboxes_close_all

    runtime, _runtime = _runtime, None
    if runtime is not None:
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await sandboxes_close_all(reason=SandboxLease.EndReason.SHUTDOWN)
    await db(connections.close_all)()  # the sync thread's connection, kept open between hops


async def _housekeeping() -> None:
    from runner.services.sweep import execution_sweep
    from runner.services.sandboxes import lease_sweep, sandbox_reap_idle

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


async def _listen() -> None:
    """Serve requests sent to this process about what it owns: a Stop of one of its runs, or a
    restart of a sandbox it holds, from another process."""
    from runner.services.executions import execution_cancel_local
    from runner.services.sandboxes import sandbox_restart_local

    layer = get_channel_layer()
    channel = process_channel(BOOT_ID)
    while True:
        try:
            message = await layer.receive(channel)
            if message.get("type") == "execution.cancel":
                await execution_cancel_local(execution_id=int(message["execution_id"]))
            elif message.get("type") == "sandbox.restart":
                await sandbox_restart_local(
                    session_id=uuid.UUID(str(message["session_id"])), reply_channel=str(message.get("reply_channel", ""))
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bad request on %s", channel)
            await asyncio.sleep(0.5)


# SQLite (the embedded default) in WAL mode: the WAL is copied back into the database here, on its
# own connection and thread, instead of inside whichever commit crosses the autocheckpoint mark
# (settings raise it to a backstop): a 10 MB flood of output paid 30-50 ms of its commits for that.
# Checked often, so a flood's WAL is copied back as soon as it ends (0.1 s of quiet): at 0.5 s and
# 0.3 s, back-to-back floods (one every ~0.3 s in bench/ws.py) kept deferring it, and every 4th 10 MB
# run paid the 10000-page backstop (~40 MB copied inside its commit: +100 ms and +100 ms of CPU).
WAL_CHECKPOINT_EVERY_S = 0.1
# While output floods in, the checkpoint waits (it would compete with the flood for the CPU and
# the disk), but never longer than this; the 10000-page backstop bounds the WAL meanwhile.
WAL_CHECKPOINT_QUIET_S = 0.1
WAL_CHECKPOINT_WAIT_MAX_S = 5.0
# time.monotonic() of the last output write (runner/services/output.py sets it).
last_output_write_s = 0.0


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
            if now - last_output_write_s < WAL_CHECKPOINT_QUIET_S and now - checkpointed_s < WAL_CHECKPOINT_WAIT_MAX_S:
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


@atexit.register
def _at_exit() -> None:
    """SIGTERM or a normal exit: our runs become interrupted and our leases end now, not at the
    next sweep. (SIGKILL skips this; the start-up sweep of the next process covers it.)"""
    if _runtime is None:
        return  # never served anything, or stopped in order: nothing to clean
    try:
        from runner.services.sweep import execution_sweep_sync
        from runner.services.sandboxes import lease_end_mine_sync

        execution_sweep_sync(owner_boot_ids={BOOT_ID})
        lease_end_mine_sync()
        ServerProcess.objects.filter(boot_id=BOOT_ID).delete()
    except Exception:  # the database may be gone already (logging too); the next start-up sweep covers it
        pass
