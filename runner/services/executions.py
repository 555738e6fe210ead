"""Runs: start one, stop one, and the task that drives it.

`execution_start` validates, stores the row and starts an asyncio task, then returns at once.
The task owns the run to the end, whether or not any socket is connected:
1. it waits its turn (one active run per session; others queue in order);
2. gets the session's sandbox (reused, reconnected or new; a notice says which);
3. publishes `execution.started`, runs the code, and streams output through `OutputWriter`
   (output.py): persist a batch, then publish it (one group message per batch);
4. stores the final status with one commit, then publishes `execution.finished`.

Stop works from any process: the row names its owner process (boot id); a Stop that lands
elsewhere is forwarded to the owner's channel. Runs of dead processes are swept (sweep.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from runner import events
from runner.events import Chunk, ErrorCode
from runner.models import ChatSession, Execution, SandboxLease
from runner.sandboxes.base import LANGUAGES, Outcome, SandboxError, SandboxGone, SandboxUnavailable, get_backend
from runner.services import sandboxes
from runner.services.output import OutputWriter, human_bytes, publish, store_chunks_sync
from runner.services.processes import BOOT_ID, db, live_boot_ids_sync, runtime_ensure_started
from runner.services.sweep import ACTIVE, SWEEP_NOTE, execution_sweep, execution_sweep_sync

__all__ = ["RunRejected", "SWEEP_NOTE", "execution_cancel", "execution_cancel_local", "execution_quota_check",
           "execution_start", "execution_sweep", "execution_sweep_sync", "session_is_busy"]

log = logging.getLogger(__name__)

CLIENT_ID_MAX_CHARS = Execution._meta.get_field("client_id").max_length or 64
# Stop re-sends the interrupt this often while the run is live, for at most INTERRUPT_FOR_S: an
# early one can land before the kernel has the request. (Backends re-send on their own too; more
# often from here would only pile interrupts onto a kernel already handling one.)
INTERRUPT_EVERY_S = 1.0
INTERRUPT_FOR_S = 10.0
# How often a queued run checks whether runs ahead of it, owned by other processes, are done.
REMOTE_QUEUE_POLL_S = 0.25


class RunRejected(Exception):
    """A run that won't start: `code` is the protocol's error code, `message` is for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


@dataclass(eq=False)
class _Run:
    """A run this process owns: the handles that can't live in the row."""

    execution_id: int
    session: ChatSession
    group: str
    code: str
    language: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sandbox: Any = None  # set while the code runs
    task: asyncio.Task[None] | None = None
    tail: asyncio.Future[None] | None = None  # resolves when this run is done and the next may go


# Process-local registries: the runs this process owns, and per session the future that
# resolves when the last run in line here is done (each run waits for the one before it).
_runs: dict[int, _Run] = {}
_tails: dict[uuid.UUID, asyncio.Future[None]] = {}


def _take_turn(session_id: uuid.UUID) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
    """Join the session's line, synchronously, so the order is the order of calls.
    Returns (the future of the run ahead, or None when nothing is ahead; our own future)."""
    ahead = _tails.get(session_id)
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _tails[session_id] = mine
    return (ahead if ahead is not None and not ahead.done() else None), mine


def _pass_turn(session_id: uuid.UUID, ahead: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
    """Let the next run go, but never before the run ahead of us is done."""

    def release(_: object = None) -> None:
        if not mine.done():
            mine.set_result(None)
        if _tails.get(session_id) is mine:
            del _tails[session_id]

    if ahead is None or ahead.done():
        release()
    else:
        ahead.add_done_callback(release)


def session_is_busy(*, session_id: uuid.UUID) -> bool:
    """Whether this process has a run going or waiting in the session."""
    return session_id in _tails


def execution_quota_check(*, user: AbstractBaseUser) -> str | None:
    """A message when `user` may not start another run now, else None. (Quotas arrive with a
    later issue; this is where they plug in.)"""
    return None


def _validated(code: object, language: object, client_id: object) -> tuple[str, str, str]:
    if not isinstance(code, str):
        raise RunRejected("bad_request", "`code` must be a string.")
    if not code.strip():
        raise RunRejected("bad_request", "There is no code to run.")
    size = len(code.encode("utf-8", "surrogatepass"))
    if size > settings.RUN_CODE_MAX_BYTES:
        raise RunRejected(
            "bad_request", f"The code is {human_bytes(size)}; the limit is {human_bytes(settings.RUN_CODE_MAX_BYTES)}."
        )
    if not isinstance(language, str):
        raise RunRejected("bad_request", "`language` must be a string.")
    if language not in LANGUAGES:
        raise RunRejected("bad_request", f"Unknown language {language[:40]!r}; use one of {', '.join(sorted(LANGUAGES))}.")
    try:
        available = get_backend().languages
    except Exception:
        available = LANGUAGES  # degraded mode: the run is refused later with the reason
    if language not in available:
        raise RunRejected("bad_request", f"{language} is not available on this server; use one of {', '.join(sorted(available))}.")
    if client_id is None:
        client_id = ""
    if not isinstance(client_id, str):
        raise RunRejected("bad_request", "`client_id` must be a string.")
    if len(client_id) > CLIENT_ID_MAX_CHARS:
        raise RunRejected("bad_request", f"`client_id` is longer than {CLIENT_ID_MAX_CHARS} characters.")
    return code, language, client_id


# --- start ----------------------------------------------------------------------------------------


async def execution_start(
    *, session: ChatSession, user: AbstractBaseUser, code: object, language: object, client_id: object = ""
) -> Execution:
    """Store a run and start it in the background; return at once with the row.

    Only the session's owner may run. The run starts when the session's earlier runs are done,
    continues with no socket connected, and publishes everything to the session's group.
    Raises `RunRejected` (bad_request, forbidden, quota, rate_limited) without storing anything.
    """
    code, language, client_id = _validated(code, language, client_id)
    if session.owner_id != user.pk:
        raise RunRejected("forbidden", "Only the session's owner can run code in it.")
    if (over := execution_quota_check(user=user)) is not None:
        raise RunRejected("quota", over)
    await runtime_ensure_started()

    ahead, mine = _take_turn(session.id)
    free_here = ahead is None
    run = _Run(0, session, events.session_group(session.id), code, language, tail=mine)
    writer = OutputWriter(group=run.group)  # holds output until the row exists
    # Pipelining, when nothing runs here: the row is inserted while the sandbox is fetched, or,
    # when the session's sandbox is this process's own (local) one, while the code already runs.
    prefetch: asyncio.Future[sandboxes.AcquiredSandbox] | None = None
    early: asyncio.Future[Outcome] | None = None
    own_sandbox = sandboxes.sandbox_held_here(session_id=session.id) if free_here else None
    if own_sandbox is not None:
        run.sandbox = own_sandbox
        early = asyncio.ensure_future(
            own_sandbox.run(code, language=language, on_event=writer.on_event, timeout_s=settings.RUN_TIMEOUT_S)
        )
    elif free_here:
        prefetch = asyncio.ensure_future(sandboxes.sandbox_acquire(session=session))
    if early is not None or prefetch is not None:
        # Let it send its first request before the database thread takes the GIL for the insert.
        await asyncio.sleep(0)
    try:
        execution, remote_ahead = await db(_insert_sync)(
            session_id=session.id, user_id=user.pk, code=code, language=language, client_id=client_id,
            may_start=free_here, running_already=early is not None,
        )
    except BaseException:
        if early is not None:
            await _abandon(run, early)
        _pass_turn(session.id, ahead, mine)
        if prefetch is not None:
            prefetch.add_done_callback(_discard_result)
        raise

    run.execution_id = writer.execution_id = execution.pk
    _runs[execution.pk] = run
    queued: events.QueuedMessage = {
        "type": "execution.queued",
        "frame": {
            "type": "execution.queued", "execution_id": execution.pk, "seq": execution.seq,
            "client_id": client_id, "code": code, "language": language,
        },
    }
    try:
        await publish(run.group, dict(queued))  # before the task exists, so `queued` precedes `started`
    finally:
        started = execution.status == Execution.Status.RUNNING
        run.task = asyncio.create_task(
            _drive(run, writer, ahead, mine, prefetch, early, started=started, remote_ahead=remote_ahead and early is None)
        )
    return execution


async def _abandon(run: _Run, early: asyncio.Future[Outcome]) -> None:
    """The row could not be stored: stop the code that already started, and drop its output."""
    while not early.done():
        try:
            await run.sandbox.interrupt()
        except Exception:
            log.warning("interrupting an abandoned run failed", exc_info=True)
        await asyncio.wait({early}, timeout=INTERRUPT_EVERY_S)
    _discard_result(early)


def _discard_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _insert_sync(
    *, session_id: uuid.UUID, user_id: int, code: str, language: str, client_id: str, may_start: bool, running_already: bool = False
) -> tuple[Execution, bool]:
    now = timezone.now()
    with transaction.atomic():
        # Updating the session row first serialises concurrent starts in one session (row lock).
        ChatSession.objects.filter(pk=session_id).update(status=ChatSession.Status.RUNNING, last_activity_at=now)
        # Both reads use an index (session+seq; status), so they stay cheap however long the session.
        max_seq = Execution.objects.filter(session_id=session_id).order_by("-seq").values_list("seq", flat=True).first()
        owners = list(
            Execution.objects.filter(session_id=session_id, status__in=ACTIVE).values_list("owner_boot_id", flat=True)[
                : settings.RUN_QUEUE_MAX + 1
            ]
        )
        if len(owners) > settings.RUN_QUEUE_MAX:
            raise RunRejected(
                "rate_limited", f"{len(owners) - 1} runs are already waiting in this session; wait for them or stop one."
            )
        # running_already: the code started in this process's own sandbox while this row was
        # written. Only this process can run code in that sandbox, so nothing else can be ahead.
        start_now = running_already or (may_start and not owners)
        execution = Execution.objects.create(
            session_id=session_id, seq=(max_seq or 0) + 1, code=code, language=language, user_id=user_id,
            client_id=client_id, owner_boot_id=BOOT_ID, created_at=now,
            status=Execution.Status.RUNNING if start_now else Execution.Status.QUEUED,
            started_at=now if start_now else None,
        )
    return execution, any(owner != BOOT_ID for owner in owners)


# --- the run task -------------------------------------------------------------------------------


async def _drive(
    run: _Run,
    writer: OutputWriter,
    ahead: asyncio.Future[None] | None,
    mine: asyncio.Future[None],
    prefetch: asyncio.Future[sandboxes.AcquiredSandbox] | None,
    early: asyncio.Future[Outcome] | None,
    *,
    started: bool,
    remote_ahead: bool,
) -> None:
    try:
        if early is not None:
            await publish(run.group, {"type": "execution.started", "frame": events.started_frame(run.execution_id)})
            await _run_and_finish(run, writer, early)
            return
        if await _wait_turn(run, ahead) and remote_ahead:
            await _wait_remote_ahead(run)
        if run.cancel.is_set():
            await _finish(run, writer, Execution.Status.CANCELLED, duration_ms=None)
            return
        try:
            acquired = await (prefetch if prefetch is not None else sandboxes.sandbox_acquire(session=run.session))
            prefetch = None
            if await _is_closed(acquired):
                # Closed under us (e.g. the backend reaped it as idle): start a fresh one instead.
                await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.IDLE)
                acquired = await sandboxes.sandbox_acquire(session=run.session)
        except SandboxUnavailable as exc:
            await publish(run.group, {"type": "run.error", "frame": events.error_frame("unavailable", exc.reason)})
            await _finish(run, writer, Execution.Status.REJECTED, duration_ms=None, error=("SandboxUnavailable", exc.reason))
            return
        except SandboxError as exc:
            writer.note(f"Could not start a sandbox: {exc}")
            await _finish(run, writer, Execution.Status.FAILED, duration_ms=None, error=(type(exc).__name__, str(exc)))
            return

        if not started or acquired.notice:
            await db(_mark_started_sync)(
                execution_id=run.execution_id, session_id=run.session.id, notice=acquired.notice, set_started=not started
            )
        await publish(run.group, {"type": "execution.started", "frame": events.started_frame(run.execution_id, acquired.notice)})

        sandbox = run.sandbox = acquired.sandbox
        if run.cancel.is_set():
            asyncio.ensure_future(_interrupt_until_done(run))
        running = asyncio.ensure_future(
            sandbox.run(run.code, language=run.language, on_event=writer.on_event, timeout_s=settings.RUN_TIMEOUT_S)
        )
        await _run_and_finish(run, writer, running)
    except asyncio.CancelledError:
        await _finish_quietly(run, writer, Execution.Status.INTERRUPTED)
        raise
    except Exception:
        log.exception("run %s failed inside the server", run.execution_id)
        writer.note("The server failed while running this; the error is in its log.")
        await _finish_quietly(run, writer, Execution.Status.FAILED)
    finally:
        if prefetch is not None:
            prefetch.add_done_callback(_discard_result)
        _runs.pop(run.execution_id, None)
        run.done.set()
        _pass_turn(run.session.id, ahead, mine)


async def _run_and_finish(
    run: _Run, writer: OutputWriter, running: asyncio.Future[Outcome], *, may_retry: bool = True
) -> None:
    """Stream the running code's output, wait for its outcome, and store and publish the end.

    A sandbox found gone before the code delivered anything (E2B dropped it, or a local one was
    reaped) is replaced once: lease closed ("gone"), a fresh sandbox, the notice, and the same code
    runs there. A sandbox lost mid-output ends the run as "gone" (failed) instead.
    """
    if not running.done():
        writer.release()  # else it all goes out with the final state, in one commit
    began = time.monotonic()
    timeout_s = settings.RUN_TIMEOUT_S
    try:
        # The backend enforces timeout_s; this outer bound only guards against a hung backend.
        outcome: Outcome = await asyncio.wait_for(running, timeout=timeout_s + 30)
    except asyncio.TimeoutError:
        run.sandbox = None
        writer.note("The sandbox stopped answering, so it was replaced.")
        await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.GONE)
        await _finish(run, writer, Execution.Status.TIMED_OUT, duration_ms=int((time.monotonic() - began) * 1000))
        return
    except SandboxGone as exc:
        if may_retry and writer.events_received == 0 and not run.cancel.is_set():
            run.sandbox = None
            retry = await _rerun_on_new_sandbox(run, writer)
            if retry is not None:
                await _run_and_finish(run, writer, retry, may_retry=False)
            return
        outcome = Outcome("gone", int((time.monotonic() - began) * 1000))
        writer.note(str(exc) or "The sandbox stopped; the next run starts a new one.")
    except SandboxError as exc:
        run.sandbox = None
        writer.note(str(exc))
        await _finish(
            run, writer, Execution.Status.FAILED, duration_ms=int((time.monotonic() - began) * 1000),
            error=(type(exc).__name__, str(exc)),
        )
        return
    finally:
        run.sandbox = None
    if outcome.status == "gone":
        await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.GONE)
    else:
        sandboxes.sandbox_touch(session_id=run.session.id)
    await _finish(run, writer, _status_for(outcome, cancelled=run.cancel.is_set()), duration_ms=outcome.duration_ms)


async def _rerun_on_new_sandbox(run: _Run, writer: OutputWriter) -> asyncio.Future[Outcome] | None:
    """The run's sandbox is gone and the code produced nothing: close its lease ("gone"), start a
    fresh sandbox, store and publish the notice, and start the code there. None when no sandbox
    could be had (the run is then finished here)."""
    await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.GONE)
    run.session.sandbox_id = ""  # gone: don't try to reconnect to it
    try:
        acquired = await sandboxes.sandbox_acquire(session=run.session)
    except SandboxUnavailable as exc:
        await publish(run.group, {"type": "run.error", "frame": events.error_frame("unavailable", exc.reason)})
        await _finish(run, writer, Execution.Status.REJECTED, duration_ms=None, error=("SandboxUnavailable", exc.reason))
        return None
    except SandboxError as exc:
        writer.note(f"Could not start a sandbox: {exc}")
        await _finish(run, writer, Execution.Status.FAILED, duration_ms=None, error=(type(exc).__name__, str(exc)))
        return None
    notice = acquired.notice or sandboxes.NOTICE_NEW_SANDBOX
    await db(_mark_started_sync)(execution_id=run.execution_id, session_id=run.session.id, notice=notice, set_started=False)
    # A second `started` for the same run: clients show its notice (they ignore a repeated start).
    await publish(run.group, {"type": "execution.started", "frame": events.started_frame(run.execution_id, notice)})
    sandbox = run.sandbox = acquired.sandbox
    if run.cancel.is_set():
        asyncio.ensure_future(_interrupt_until_done(run))
    return asyncio.ensure_future(
        sandbox.run(run.code, language=run.language, on_event=writer.on_event, timeout_s=settings.RUN_TIMEOUT_S)
    )


async def _wait_turn(run: _Run, ahead: asyncio.Future[None] | None) -> bool:
    """Wait until the session's earlier runs here are done. False if stopped while queued."""
    if ahead is None or ahead.done():
        return True
    stopped = asyncio.ensure_future(run.cancel.wait())
    await asyncio.wait({ahead, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    return ahead.done()


async def _wait_remote_ahead(run: _Run) -> None:
    """Runs ahead of this one owned by other processes: wait for them (or a Stop)."""
    while await db(_remote_ahead_sync)(execution_id=run.execution_id, session_id=run.session.id):
        try:
            await asyncio.wait_for(run.cancel.wait(), REMOTE_QUEUE_POLL_S)
            return
        except asyncio.TimeoutError:
            continue


def _remote_ahead_sync(*, execution_id: int, session_id: uuid.UUID) -> bool:
    return Execution.objects.filter(session_id=session_id, pk__lt=execution_id, status__in=ACTIVE).exists()


async def _is_closed(acquired: sandboxes.AcquiredSandbox) -> bool:
    # Not part of the Protocol; backends that can tell (local) expose `closed`.
    return bool(getattr(acquired.sandbox, "closed", False))


def _mark_started_sync(*, execution_id: int, session_id: uuid.UUID, notice: str, set_started: bool) -> None:
    fields: dict[str, Any] = {"notice": notice[:300]} if notice else {}
    with transaction.atomic():
        if set_started:
            fields.update(status=Execution.Status.RUNNING, started_at=timezone.now())
            ChatSession.objects.filter(pk=session_id).update(status=ChatSession.Status.RUNNING)
        Execution.objects.filter(pk=execution_id).update(**fields)


def _status_for(outcome: Outcome, *, cancelled: bool) -> str:
    if outcome.status == "ok":
        return Execution.Status.SUCCEEDED
    if outcome.status == "error":
        return Execution.Status.FAILED
    if outcome.status == "timeout":
        return Execution.Status.TIMED_OUT
    if outcome.status == "interrupted":
        return Execution.Status.CANCELLED if cancelled else Execution.Status.INTERRUPTED
    return Execution.Status.FAILED  # gone


async def _finish(
    run: _Run, writer: OutputWriter, status: str, *, duration_ms: int | None, error: tuple[str, str] | None = None
) -> None:
    """Store the output and the final state (one commit), then publish `execution.finished`."""
    # Output no write has taken yet (all of it, when the code finished before its row existed)
    # is stored in the same commit as the final state.
    last_batches = writer.take_all_if_idle()
    if writer.has_pending():
        await writer.drain()  # more than the batch being written: store it all first
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": timezone.now(),
        "duration_ms": duration_ms,
        "stdout_bytes": writer.stdout_bytes,
        "stderr_bytes": writer.stderr_bytes,
        "truncated": writer.truncated,
    }
    if writer.error is not None:
        fields.update(error_name=writer.error.ename[:200], error_value=writer.error.evalue, traceback=list(writer.error.traceback))
    elif error is not None:
        fields.update(error_name=error[0][:200], error_value=error[1])
    # Queued now, behind the last batch's write on the one database thread (FIFO), so that
    # thread goes straight from one to the other; published only after both, in order.
    busy = _tails.get(run.session.id) not in (None, run.tail)  # a later run waits here
    store = asyncio.ensure_future(
        db(_finish_sync)(
            execution_id=run.execution_id, session_id=run.session.id, fields=fields, session_busy=busy,
            chunks=[chunk for batch in last_batches for chunk in batch],
        )
    )
    try:
        await writer.drain()
    finally:
        await store
    for batch in last_batches:
        await writer.publish(batch)
    finished: events.FinishedMessage = {
        "type": "execution.finished",
        "frame": {
            "type": "execution.finished", "execution_id": run.execution_id, "status": str(status),
            "duration_ms": duration_ms, "truncated": writer.truncated,
        },
    }
    await publish(run.group, dict(finished))


async def _finish_quietly(run: _Run, writer: OutputWriter, status: str) -> None:
    try:
        await asyncio.shield(_finish(run, writer, status, duration_ms=None))
    except BaseException:
        log.exception("could not store the end of run %s", run.execution_id)


def _finish_sync(
    *, execution_id: int, session_id: uuid.UUID, fields: dict[str, Any], session_busy: bool, chunks: list[Chunk]
) -> None:
    with transaction.atomic():
        if chunks:
            store_chunks_sync(execution_id=execution_id, chunks=chunks)
        Execution.objects.filter(pk=execution_id).update(**fields)
        # The session is "running" while runs wait here; a run queued elsewhere marks it again when it starts.
        ChatSession.objects.filter(pk=session_id).update(
            status=ChatSession.Status.RUNNING if session_busy else ChatSession.Status.IDLE, last_activity_at=fields["finished_at"]
        )


# --- stop ---------------------------------------------------------------------------------------


async def execution_cancel(*, session: ChatSession, user: AbstractBaseUser, execution_id: object) -> None:
    """Stop a run of `session`, queued or running, wherever it runs: the owner process interrupts
    it and it ends `cancelled`, keeping the session's variables. A run already finished is left
    as it is. Raises `RunRejected` (bad_request, forbidden, not_found)."""
    if isinstance(execution_id, bool) or not isinstance(execution_id, int):
        raise RunRejected("bad_request", "`execution_id` must be an integer.")
    if session.owner_id != user.pk:
        raise RunRejected("forbidden", "Only the session's owner can stop its runs.")
    if execution_id in _runs and _runs[execution_id].session.id == session.id:
        await execution_cancel_local(execution_id=execution_id)
        return
    row = await db(_owner_of_sync)(execution_id=execution_id, session_id=session.id)
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
    await get_channel_layer().send(events.process_channel(owner), dict(message))


def _owner_of_sync(*, execution_id: int, session_id: uuid.UUID) -> tuple[str, str] | None:
    return Execution.objects.filter(pk=execution_id, session_id=session_id).values_list("status", "owner_boot_id").first()


async def execution_cancel_local(*, execution_id: int) -> None:
    """Stop a run this process owns (no-op if it has ended)."""
    run = _runs.get(execution_id)
    if run is None or run.cancel.is_set():
        return
    run.cancel.set()
    if run.sandbox is not None:
        asyncio.ensure_future(_interrupt_until_done(run))


async def _interrupt_until_done(run: _Run) -> None:
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


