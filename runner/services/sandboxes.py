"""The session's sandbox: get or create it, its lease, the idle reaper, reconnect-or-replace.

A session has at most one sandbox. This process keeps the live handles (they can't be stored);
the database keeps the durable facts: `ChatSession.sandbox_id` and one `SandboxLease` per
sandbox lifetime, closed with a reason (idle, closed, gone, shutdown, restart, replaced).

When the backend is full (the local one: `has_room()`), a new sandbox waits in this process's
FIFO queue, for at most SANDBOX_QUEUE_WAIT_S: the first in line goes as soon as there is room, and
meanwhile closes the idle chat sandbox held here with the oldest activity (lease "reclaimed"). Past the
wait it is refused with SandboxUnavailable ("busy: ...").

A user has at most QUOTA_LIVE_SANDBOXES (or their override) open leases: a new sandbox past it
first closes their idle one with the oldest activity (reason "replaced"; an API sandbox is killed
with it), and is refused with `LiveSandboxLimit` when every one is running code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runner.events import SandboxRestartMessage, process_channel
from runner.models import ApiSandbox, ChatSession, SandboxLease, ServerProcess
from runner.pricing import sandbox_size
from runner.sandboxes.base import BACKENDS, Backend, Sandbox, SandboxGone, SandboxUnavailable, backend_name_from_settings, get_backend
from runner.selectors.processes import lease_owners_sync
from runner.services.quotas import live_sandboxes_limit_sync
from runner.services.runs import session_is_busy
from runner.services.runtime import BOOT_ID, api_sandboxes_changed, db, live_boot_ids_sync

log = logging.getLogger(__name__)

NOTICE_NEW_SANDBOX = "A new sandbox was started; variables from earlier runs are gone."
NOTICE_RECONNECTED = "Reconnected to this session's sandbox after a server restart; variables from earlier runs are kept."


class LiveSandboxLimit(SandboxUnavailable):
    """The user has as many sandboxes live as they may, and every one is running code: `reason`
    names the limit (a quota refusal, not an outage)."""


@dataclass(eq=False)
class _Held:
    sandbox: Sandbox
    backend: str
    lease_id: int
    last_used_s: float  # time.monotonic() of the last run's end
    user_id: int = 0  # the session's owner, whose budget pays for it
    had_sandbox: bool = False  # the session had one before (its variables are gone)
    is_api: bool = False  # an E2B API sandbox: never reclaimed (its client expects it until its timeout)


@dataclass(eq=False)
class _Waiter:
    """A session whose new sandbox waits for room on the backend."""

    session_id: uuid.UUID
    since_s: float  # time.monotonic() when it joined the queue
    since: datetime  # the same moment, for the page
    creating: bool = False  # out of the wait: its sandbox is being made


@dataclass(frozen=True)
class WaitState:
    """Where a session's new sandbox stands while it isn't there yet."""

    ahead: int  # sessions before it in the capacity queue (0: first, or simply being created)
    since: datetime  # when it began waiting


@dataclass(frozen=True)
class AcquiredSandbox:
    sandbox: Sandbox
    # An inline note for the run that got it ("" when the session's variables are intact).
    notice: str


# Process-local handles: live sandboxes can't live in rows. Keyed by ChatSession id.
_held: dict[uuid.UUID, _Held] = {}
# Sessions whose sandbox an admin, a budget or a revoked key closed here, and the notice its
# run ends with; read (and dropped) by that run's task, dropped when a new sandbox opens.
_stopped: dict[uuid.UUID, str] = {}
# Lease end reasons that close a sandbox over its user's head: the run ends "killed", not failed.
STOPPING_REASONS = frozenset({SandboxLease.EndReason.ADMIN, SandboxLease.EndReason.BUDGET, SandboxLease.EndReason.REVOKED})


def stop_notice(*, reason: str, note: str = "") -> str:
    """What the user reads when their sandbox is closed over their head (`reason` a lease end reason)."""
    why = note.strip().rstrip(".")
    if reason == SandboxLease.EndReason.ADMIN:
        return f"An administrator stopped this sandbox: {why}." if why else "An administrator stopped this sandbox."
    if reason == SandboxLease.EndReason.BUDGET:
        return "Your usage limit was reached, so this sandbox was closed; the next run is refused until the limit allows it."
    return "This sandbox was closed because its API key was revoked or its owner deactivated."


def sandbox_is_stopped(*, session_id: uuid.UUID) -> bool:
    """Whether the session's sandbox was just closed over its user's head here (see `_stopped`)."""
    return session_id in _stopped


def sandbox_stopped_notice(*, session_id: uuid.UUID) -> str:
    """The notice for a run whose sandbox was closed over its user's head here ("" otherwise); read once."""
    return _stopped.pop(session_id, "")


# The header chip's words after a close over the user's head (runner/views/sessions.py renders the same).
STOPPED_CHIP_TEXT: dict[str, str] = {
    SandboxLease.EndReason.ADMIN: "stopped by an administrator",
    SandboxLease.EndReason.BUDGET: "closed · usage limit reached",
    SandboxLease.EndReason.REVOKED: "closed · the API key was revoked",
}


def _chip_frame(reason: str, note: str) -> dict[str, str]:
    """The header chip's state after a close: "stopped" when closed over the user's head, else "closed"."""
    if reason in STOPPING_REASONS:
        text = STOPPED_CHIP_TEXT[SandboxLease.EndReason(reason)]
        return {"type": "sandbox.state", "state": "stopped", "text": text, "reason": reason, "notice": stop_notice(reason=reason, note=note)}
    return {"type": "sandbox.state", "state": "closed", "text": "closed · starts on your next run", "reason": reason}


async def _publish_closed(session_id: uuid.UUID, reason: str, note: str) -> None:
    """Tell the session's open pages that its sandbox was closed for them (their header chip
    follows): over their head (STOPPING_REASONS), or "closed" (an API kill). A restart, the idle
    reaper and a replaced sandbox send nothing: the next run's notice says so."""
    if reason not in STOPPING_REASONS and reason != SandboxLease.EndReason.CLOSED:
        return
    try:
        await get_channel_layer().group_send(f"session_{session_id.hex}", {"type": "sandbox.state", "frame": _chip_frame(reason, note)})
    except Exception:
        log.warning("could not tell session %s's pages its sandbox closed", session_id, exc_info=True)
_opening: dict[uuid.UUID, asyncio.Future[AcquiredSandbox]] = {}
# Sessions waiting for room on the backend, first come first served.
_queue: list[_Waiter] = []
# How often a waiting sandbox checks for room (a sandbox closed anywhere, or reaped by the backend).
CAPACITY_POLL_S = 0.2
# Per user: a lock held while making room for and starting a new sandbox, so two starts here
# can't both take the last place, and how many hold or wait for it (dropped at 0).
_room_locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}


@contextlib.asynccontextmanager
async def _room_for(user_id: int) -> AsyncIterator[None]:
    lock, users = _room_locks.setdefault(user_id, (asyncio.Lock(), [0]))
    users[0] += 1
    try:
        async with lock:
            yield
    finally:
        users[0] -= 1
        if not users[0]:
            _room_locks.pop(user_id, None)


async def sandbox_acquire(*, session: ChatSession, queue_wait_s: float | None = None) -> AcquiredSandbox:
    """The session's live sandbox: this process's handle, a reconnect to the one the session
    names, or a new one (opening a lease). Concurrent callers share one creation. A new one waits
    for room on the backend for up to `queue_wait_s` (default SANDBOX_QUEUE_WAIT_S).

    Raises `SandboxUnavailable` (degraded mode, or still no room after the wait, with a reason for
    the page) or `SandboxError`.
    """
    held = _held.get(session.id)
    if held is not None:
        return AcquiredSandbox(held.sandbox, "")
    _stopped.pop(session.id, None)
    opening = _opening.get(session.id)
    if opening is None:
        wait_s = settings.SANDBOX_QUEUE_WAIT_S if queue_wait_s is None else queue_wait_s
        opening = asyncio.ensure_future(_open(session, wait_s))
        _opening[session.id] = opening
        opening.add_done_callback(lambda _f, sid=session.id: _opening.pop(sid, None))
    return await asyncio.shield(opening)


def sandbox_wait_state(*, session_id: uuid.UUID) -> WaitState | None:
    """While the session's new sandbox is being made here: how many sessions wait before it for
    room, and since when. None when nothing is being made for it."""
    if session_id not in _opening:
        return None
    for position, waiter in enumerate(_queue):
        if waiter.session_id == session_id:
            return WaitState(position, waiter.since)
    return WaitState(0, timezone.now())


def sandbox_acquire_abandon(*, session_id: uuid.UUID) -> bool:
    """The run that wanted the session's new sandbox was stopped: if that sandbox still waits in
    line for room, give up its place (its `sandbox_acquire` callers get CancelledError). True if it did."""
    opening = _opening.get(session_id)
    waiting = any(w.session_id == session_id and not w.creating for w in _queue)
    if opening is None or not waiting:
        return False
    opening.cancel()
    return True


def sandbox_touch(*, session_id: uuid.UUID) -> None:
    """A run on the session's sandbox just ended: restart its idle clock."""
    held = _held.get(session_id)
    if held is not None:
        held.last_used_s = time.monotonic()


def sandbox_is_held(*, session_id: uuid.UUID) -> bool:
    return session_id in _held


async def _open(session: ChatSession, queue_wait_s: float) -> AcquiredSandbox:
    try:
        backend: Backend = get_backend()
    except Exception as exc:
        raise SandboxUnavailable(f"no sandbox backend could be loaded: {exc}") from exc
    if session.sandbox_id and session.backend == backend.name:
        try:
            sandbox = await backend.connect(session.sandbox_id)
        except SandboxGone:
            await db(_lease_end_sync)(sandbox_id=session.sandbox_id, reason=SandboxLease.EndReason.RESTART)
        else:
            lease_id = await db(_lease_adopt_sync)(session_id=session.id, user_id=session.owner_id, backend=backend.name, sandbox_id=sandbox.id)
            _held[session.id] = _Held(sandbox, backend.name, lease_id, time.monotonic(), session.owner_id,
                                      is_api=session.kind == ChatSession.Kind.API)
            return AcquiredSandbox(sandbox, NOTICE_RECONNECTED)
    # Joined before the user's lock, so the queue's order is the order of the requests.
    waiter = _Waiter(session.id, time.monotonic(), timezone.now())
    _queue.append(waiter)
    try:
        async with _room_for(session.owner_id):
            await _make_room(user_id=session.owner_id, session_id=session.id)
            await _wait_for_room(backend, waiter, queue_wait_s)
            waiter.creating = True
            sandbox = await backend.create(owner_id=session.owner_id, session_id=str(session.id))
            _leave_queue(waiter)  # the next in line may go: this one is counted live now
            await _lease_new(session, backend, sandbox)
    finally:
        _leave_queue(waiter)
    had_sandbox = _held[session.id].had_sandbox
    return AcquiredSandbox(_held[session.id].sandbox, NOTICE_NEW_SANDBOX if had_sandbox else "")


def _leave_queue(waiter: _Waiter) -> None:
    if waiter in _queue:
        _queue.remove(waiter)


async def _wait_for_room(backend: Backend, waiter: _Waiter, queue_wait_s: float) -> None:
    """Return when `waiter` is first in line and the backend has room for one more sandbox; while
    first, close the idle sandbox held here with the oldest activity (lease "reclaimed") to make it.
    Raises SandboxUnavailable ("busy: ...") after `queue_wait_s`. A backend with no `has_room`
    (E2B: its own fleet) never waits."""
    has_room = getattr(backend, "has_room", None)
    if has_room is None:
        return
    while True:
        if _queue and _queue[0] is waiter:
            if has_room():
                return
            if await _reclaim_idle(backend=backend.name, exclude=waiter.session_id):
                continue
        waited_s = time.monotonic() - waiter.since_s
        if waited_s >= queue_wait_s:
            reason = getattr(backend, "busy_reason", lambda: "busy: every sandbox on this server is in use")()
            if queue_wait_s > 0:
                reason = (f"{reason.split(';')[0]}; none became free within {queue_wait_s:g} s of waiting. "
                          "Try again in a minute.")
            raise SandboxUnavailable(reason)
        await asyncio.sleep(min(CAPACITY_POLL_S, max(queue_wait_s - waited_s, 0.01)))


async def _reclaim_idle(*, backend: str, exclude: uuid.UUID) -> bool:
    """Close the chat sandbox held here on `backend` with the oldest activity and no run (lease
    "reclaimed"; its session gets a fresh one, with the notice, on its next run). False if none is idle.
    API sandboxes are left alone: their clients hold them until their timeout, as on E2B."""
    idle = [
        (held.last_used_s, sid) for sid, held in _held.items()
        if held.backend == backend and sid != exclude and not held.is_api and not session_is_busy(session_id=sid)
    ]
    if not idle:
        return False
    _, victim = min(idle)
    log.info("closing session %s's idle sandbox: a run waits for room", victim)
    await sandbox_release(session_id=victim, reason=SandboxLease.EndReason.RECLAIMED)
    return True


async def _lease_new(session: ChatSession, backend: Backend, sandbox: Sandbox) -> None:
    """Open the new sandbox's lease and hold it here (closing it if the lease can't be stored)."""
    try:
            lease_id, had_sandbox = await db(_lease_open_sync)(
                session_id=session.id, user_id=session.owner_id, backend=backend.name, sandbox_id=sandbox.id
            )
    except BaseException:
        await _close_quietly(sandbox)
        raise
    _held[session.id] = _Held(sandbox, backend.name, lease_id, time.monotonic(), session.owner_id, had_sandbox,
                              is_api=session.kind == ChatSession.Kind.API)


@dataclass(frozen=True)
class _LiveSandbox:
    session_id: uuid.UUID
    running: bool  # the session has a run queued or going (any process)
    is_api: bool


async def _make_room(*, user_id: int, session_id: uuid.UUID) -> None:
    """Before the user gets a new sandbox: while they have their limit live (besides `session_id`),
    close their idle one with the oldest activity (lease "replaced"; an API sandbox is killed).
    Raises `LiveSandboxLimit` when every one is running code."""
    limit = await db(live_sandboxes_limit_sync)(user_id=user_id)
    if not limit:
        return
    for _ in range(limit + 10):  # each pass ends one sandbox's leases; bounded all the same
        live = await db(_live_sandboxes_sync)(user_id=user_id, exclude=session_id)
        if len(live) < limit:
            return
        idle = [s for s in live if not s.running and not session_is_busy(session_id=s.session_id)]
        if not idle:
            break
        victim = idle[0]
        log.info("closing session %s's idle sandbox to make room for user %s's new one", victim.session_id, user_id)
        await sandbox_restart(session_id=victim.session_id, reason=SandboxLease.EndReason.REPLACED)
        if victim.is_api:
            await db(_api_sandbox_end_sync)(session_id=victim.session_id)
    raise LiveSandboxLimit(
        f"Live sandbox limit reached: {len(live)} of {limit} sandbox{'es' if limit != 1 else ''} open, each running code. "
        "Stop a run or wait for one to finish, then try again."
    )


async def sandbox_release(*, session_id: uuid.UUID, reason: str, note: str = "") -> None:
    """Drop and close the session's sandbox and end its lease with `reason`, and tell the session's
    pages. The next run starts a new one (and its notice says the variables are gone). Closed by
    an admin, a budget or a revoked key (STOPPING_REASONS), the run in progress ends with
    `stop_notice` (`note`: the admin's reason)."""
    held = _held.pop(session_id, None)
    if held is None:
        return
    if reason in STOPPING_REASONS:
        _stopped[session_id] = stop_notice(reason=reason, note=note)  # before the close the run sees
    await _close_quietly(held.sandbox)
    await db(_lease_close_sync)(lease_id=held.lease_id, session_id=session_id, sandbox_id=held.sandbox.id, reason=reason)
    await _publish_closed(session_id, reason, note)


async def sandbox_restart(*, session_id: uuid.UUID, reason: str = SandboxLease.EndReason.RESTART, note: str = "") -> None:
    """Close the session's sandbox wherever it is, end its lease with `reason` ("restart", or
    "admin" when an admin kills it) and clear the session's `sandbox_id`; the next run starts a
    fresh one. `note` is the admin's reason, for the notice the run in progress ends with.

    Held here: closed here. Held by another live process: that process is asked over the channel
    layer (as a Stop is) and closes it; we wait for its answer up to RESTART_REPLY_S. Whatever is
    still open then (a dead owner, no answer, or nobody holding it) is ended in the database, and
    an E2B sandbox is killed by id (connect, then close) even if no process holds it.
    """
    if session_id in _held:
        await sandbox_release(session_id=session_id, reason=reason, note=note)
    else:
        owners = await db(lease_owners_sync)(session_id=session_id)
        for owner in owners:
            await _ask_to_restart(owner, session_id, reason, note)
    leftovers = await db(_forget_sandbox_sync)(session_id=session_id, reason=reason)
    for backend_name, sandbox_id in leftovers:
        if backend_name == "e2b":  # a local sandbox not held by a live process died with its process
            await _kill_e2b_by_id(sandbox_id)
    if leftovers:
        await _publish_closed(session_id, reason, note)


# How long a restart waits for the process holding the sandbox to say it closed it.
RESTART_REPLY_S = 10.0


async def _ask_to_restart(owner: str, session_id: uuid.UUID, reason: str, note: str = "") -> None:
    layer = get_channel_layer()
    reply = await layer.new_channel()
    message: SandboxRestartMessage = {
        "type": "sandbox.restart", "session_id": str(session_id), "reply_channel": reply, "reason": reason, "note": note[:2000],
    }
    await layer.send(process_channel(owner), dict(message))
    try:
        await asyncio.wait_for(layer.receive(reply), RESTART_REPLY_S)
    except asyncio.TimeoutError:
        log.warning("process %s did not answer a sandbox restart for session %s", owner, session_id)


async def sandbox_restart_local(
    *, session_id: uuid.UUID, reply_channel: str = "", reason: str = SandboxLease.EndReason.RESTART, note: str = ""
) -> None:
    """Another process asked: close the session's sandbox if this process holds it, then answer."""
    if reason not in SandboxLease.EndReason.values:
        reason = SandboxLease.EndReason.RESTART
    try:
        await sandbox_release(session_id=session_id, reason=reason, note=note)
    finally:
        if reply_channel:
            await get_channel_layer().send(reply_channel, {"type": "sandbox.restarted", "session_id": str(session_id)})


async def sandbox_reap_idle() -> int:
    """Close sandboxes with no run for SANDBOX_IDLE_TIMEOUT_S (lease reason "idle"). Returns how many."""
    cutoff = time.monotonic() - settings.SANDBOX_IDLE_TIMEOUT_S
    idle = [sid for sid, held in _held.items() if held.last_used_s < cutoff and not session_is_busy(session_id=sid)]
    for session_id in idle:
        await sandbox_release(session_id=session_id, reason=SandboxLease.EndReason.IDLE)
    return len(idle)


async def sandboxes_close_idle_of(*, user_ids: set[int], reason: str) -> int:
    """Close the sandboxes this process holds for `user_ids` that no run is using (a budget
    passed: reason "budget"); a running run keeps its sandbox until it ends. Returns how many."""
    idle = [sid for sid, held in _held.items() if held.user_id in user_ids and not session_is_busy(session_id=sid)]
    for session_id in idle:
        await sandbox_release(session_id=session_id, reason=reason)
    return len(idle)


def sandbox_holders_here() -> set[int]:
    """The users whose sandboxes this process holds."""
    return {held.user_id for held in _held.values()}


@dataclass(frozen=True)
class HeldSandbox:
    session_id: uuid.UUID
    sandbox: Sandbox
    backend: str
    lease_id: int


def sandboxes_held() -> list[HeldSandbox]:
    """The sandboxes this process holds, one per session (for the live view's figures)."""
    return [HeldSandbox(sid, held.sandbox, held.backend, held.lease_id) for sid, held in list(_held.items())]


def sandbox_queue_sessions() -> list[tuple[uuid.UUID, datetime]]:
    """(session id, since) of each session waiting here for room, first in line first."""
    return [(waiter.session_id, waiter.since) for waiter in _queue if not waiter.creating]


def sandboxes_held_count() -> int:
    """How many sessions' sandboxes this process holds."""
    return len(_held)


async def sandboxes_close_all(*, reason: str) -> None:
    """Close every sandbox this process holds (shutdown, tests)."""
    for session_id in list(_held):
        await sandbox_release(session_id=session_id, reason=reason)


async def _close_quietly(sandbox: Sandbox) -> None:
    try:
        await asyncio.wait_for(sandbox.close(), timeout=10)
    except Exception:
        log.warning("closing sandbox %s failed", getattr(sandbox, "id", "?"), exc_info=True)


async def lease_sweep() -> int:
    """End the open leases of dead processes, and kill by id the E2B sandboxes among them that
    no session names any more (nothing would reconnect to them). Returns how many leases ended."""
    ended = await db(lease_sweep_sync)()
    orphans = await db(_e2b_orphans_end_sync)()
    for sandbox_id in orphans:
        await _kill_e2b_by_id(sandbox_id)
    return ended + len(orphans)


async def _kill_e2b_by_id(sandbox_id: str) -> None:
    try:
        sandbox = await get_backend("e2b").connect(sandbox_id)
    except SandboxGone:
        return
    except Exception:
        log.warning("could not reach E2B sandbox %s to kill it", sandbox_id, exc_info=True)
        return
    await _close_quietly(sandbox)


# --- sync database work (run through `db`) ------------------------------------------------------


def _lease_open_sync(*, session_id: uuid.UUID, user_id: int, backend: str, sandbox_id: str) -> tuple[int, bool]:
    vcpus, memory_mb = sandbox_size(backend)
    with transaction.atomic():
        had_sandbox = SandboxLease.objects.filter(session_id=session_id).exists()
        lease = SandboxLease.objects.create(
            user_id=user_id, session_id=session_id, backend=backend, sandbox_id=sandbox_id,
            vcpus=vcpus, memory_mb=memory_mb, owner_boot_id=BOOT_ID,
        )
        ChatSession.objects.filter(pk=session_id).update(sandbox_id=sandbox_id, backend=backend)
    return lease.pk, had_sandbox


def _lease_adopt_sync(*, session_id: uuid.UUID, user_id: int, backend: str, sandbox_id: str) -> int:
    """A sandbox reconnected after a restart (or from another process): continue its open lease."""
    with transaction.atomic():
        lease = SandboxLease.objects.open().filter(sandbox_id=sandbox_id, backend=backend).first()
        if lease is not None:
            SandboxLease.objects.filter(pk=lease.pk).update(owner_boot_id=BOOT_ID)
            return lease.pk
        vcpus, memory_mb = sandbox_size(backend)
        lease = SandboxLease.objects.create(
            user_id=user_id, session_id=session_id, backend=backend, sandbox_id=sandbox_id,
            vcpus=vcpus, memory_mb=memory_mb, owner_boot_id=BOOT_ID,
        )
        return lease.pk


def _forget_sandbox_sync(*, session_id: uuid.UUID, reason: str) -> list[tuple[str, str]]:
    """End the session's open leases with `reason` and clear its `sandbox_id`. Returns the
    (backend, sandbox_id) pairs that were still open or named, to be killed."""
    now = timezone.now()
    with transaction.atomic():
        leases = SandboxLease.objects.open().filter(session_id=session_id)
        found = set(leases.values_list("backend", "sandbox_id"))
        leases.update(ended_at=now, end_reason=reason)
        named = ChatSession.objects.filter(pk=session_id).values_list("backend", "sandbox_id").first()
        if named is not None and named[1]:
            found.add(named)
            ChatSession.objects.filter(pk=session_id).update(sandbox_id="")
    return sorted(found)


def _live_sandboxes_sync(*, user_id: int, exclude: uuid.UUID) -> list[_LiveSandbox]:
    """The user's sessions with an open lease (any process), other than `exclude`, oldest activity first."""
    rows = (
        SandboxLease.objects.open().filter(user_id=user_id, session__isnull=False).exclude(session_id=exclude)
        .order_by("session__last_activity_at").values_list("session_id", "session__status", "session__kind")
    )
    seen: dict[uuid.UUID, _LiveSandbox] = {}
    for sid, status, kind in rows:
        seen.setdefault(sid, _LiveSandbox(sid, status == ChatSession.Status.RUNNING, kind == ChatSession.Kind.API))
    return list(seen.values())


def _api_sandbox_end_sync(*, session_id: uuid.UUID) -> None:
    """An API sandbox whose sandbox was replaced ends as a killed one does (the SDK then gets 404)."""
    with transaction.atomic():
        ApiSandbox.objects.filter(pk=session_id, killed_at__isnull=True).update(killed_at=timezone.now())
        ChatSession.objects.filter(pk=session_id).update(status=ChatSession.Status.CLOSED, sandbox_id="")
    api_sandboxes_changed()


def _lease_end_sync(*, sandbox_id: str, reason: str) -> None:
    SandboxLease.objects.open().filter(sandbox_id=sandbox_id).update(ended_at=timezone.now(), end_reason=reason)


def _lease_close_sync(*, lease_id: int, session_id: uuid.UUID, sandbox_id: str, reason: str) -> None:
    with transaction.atomic():
        SandboxLease.objects.open().filter(pk=lease_id).update(ended_at=timezone.now(), end_reason=reason)
        ChatSession.objects.filter(pk=session_id, sandbox_id=sandbox_id).update(sandbox_id="")


def lease_end_mine_sync() -> None:
    """At exit: leases of sandboxes that die with this process (local kernels) end now."""
    SandboxLease.objects.open().filter(owner_boot_id=BOOT_ID).exclude(backend="e2b").update(
        ended_at=timezone.now(), end_reason=SandboxLease.EndReason.SHUTDOWN
    )


def lease_sweep_sync() -> int:
    """End the open leases of dead processes with reason "shutdown".

    A local sandbox died with its process: its lease ends at the process's last heartbeat. An E2B
    sandbox outlives us until E2B's idle timeout, so its lease stays open that long (a reconnect
    adopts it); after that it ends at last heartbeat + the idle timeout.
    """
    live = live_boot_ids_sync()
    seen = dict(ServerProcess.objects.values_list("boot_id", "seen_at"))
    now = timezone.now()
    idle = timedelta(seconds=settings.SANDBOX_IDLE_TIMEOUT_S)
    ended = 0
    for lease in SandboxLease.objects.open().exclude(owner_boot_id__in=live):
        last_seen = seen.get(lease.owner_boot_id) or now
        end = last_seen + idle if lease.backend == "e2b" else last_seen
        if end > now:
            continue
        ended += SandboxLease.objects.open().filter(pk=lease.pk).update(
            ended_at=max(end, lease.started_at), end_reason=SandboxLease.EndReason.SHUTDOWN
        )
    return ended


def _e2b_orphans_end_sync() -> list[str]:
    """Open E2B leases of dead processes whose session no longer names the sandbox (or is gone):
    end them now (reason "shutdown") and return their sandbox ids, to be killed. Those a session
    still names stay open for a reconnect, until E2B's own timeout (see `lease_sweep_sync`)."""
    live = live_boot_ids_sync()
    orphans = []
    candidates = SandboxLease.objects.open().filter(backend="e2b").exclude(owner_boot_id__in=live).select_related("session")
    for lease in candidates:
        if lease.session is not None and lease.session.backend == "e2b" and lease.session.sandbox_id == lease.sandbox_id:
            continue
        if SandboxLease.objects.open().filter(pk=lease.pk).update(ended_at=timezone.now(), end_reason=SandboxLease.EndReason.SHUTDOWN):
            orphans.append(lease.sandbox_id)
    return orphans


def backend_name() -> str:
    """The backend runs use ("local" or "e2b"), or "none" when settings name no usable one."""
    try:
        name = backend_name_from_settings()
    except Exception:
        return "none"
    return name if name in BACKENDS else "none"


def sandbox_held_here(*, session_id: uuid.UUID) -> Sandbox | None:
    """The session's sandbox if this process holds it and only this process can run code in it
    (the local backend's kernels are this process's children), else None."""
    held = _held.get(session_id)
    if held is None or held.backend != "local" or getattr(held.sandbox, "closed", False):
        return None
    return held.sandbox
