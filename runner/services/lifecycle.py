"""A run's lifecycle, from its turn to its end: the task `admission.execution_start` starts.

The task owns the run to the end, whether or not any socket is connected:
1. it waits its turn (one active run per session; others queue in order, runs.py);
2. gets the session's sandbox (reused, reconnected or new; a notice says which);
3. publishes `execution.started`, runs the code, and streams output through `OutputWriter`
   (output.py): persist a batch, then publish it (one group message per batch);
4. stores the final status with one commit, then publishes `execution.finished`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runner import events
from runner.events import Chunk
from runner.models import ChatSession, Execution, SandboxLease
from runner.sandboxes.base import Error, Event, OnEvent, OnInput, Outcome, Sandbox, SandboxError, SandboxGone, SandboxUnavailable, Stdout, emit
from runner.services import sandboxes
from runner.services.cancel import interrupt_until_done
from runner.services.output import OutputWriter, publish, store_chunks_sync
from runner.services.packages import code_run
from runner.services.runs import ACTIVE, Command, PendingInput, Run, discard_result, later_run_waits, pass_turn, runs_here
from runner.services.runtime import db, db_retry

log = logging.getLogger(__name__)

# How often a queued run checks whether runs ahead of it, owned by other processes, are done.
REMOTE_QUEUE_POLL_S = 0.25


async def run_drive(
    run: Run,
    writer: OutputWriter,
    ahead: asyncio.Future[None] | None,
    mine: asyncio.Future[None],
    prefetch: asyncio.Future[sandboxes.AcquiredSandbox] | None,
    early: asyncio.Future[Outcome] | None,
    *,
    started: bool,
    remote_ahead: bool,
) -> None:
    """The run's task: wait for `ahead` (and, when `remote_ahead`, for other processes' runs),
    then run the code on `prefetch`'s sandbox (or one acquired now), or finish `early`, the code
    already running in this process's own sandbox. Always ends the run (stored and published) and
    passes the turn, whatever happens; re-raises cancellation."""
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
            if prefetch is None:
                prefetch = asyncio.ensure_future(sandboxes.sandbox_acquire(session=run.session))
            acquired_or_stopped = await _acquire_showing_wait(run, prefetch)
            if acquired_or_stopped is None:
                sandboxes.sandbox_acquire_abandon(session_id=run.session.id)  # leave the line: no slot for nobody
                await _finish(run, writer, Execution.Status.CANCELLED, duration_ms=None)
                return
            acquired = acquired_or_stopped
            prefetch = None
            if await _is_closed(acquired):
                # Closed under us (e.g. the backend reaped it as idle): start a fresh one instead.
                await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.IDLE)
                acquired = await sandboxes.sandbox_acquire(session=run.session)
        except SandboxUnavailable as exc:
            await _refuse(run, writer, exc)
            return
        except SandboxError as exc:
            writer.note(f"Could not start a sandbox: {exc}")
            await _finish(run, writer, Execution.Status.FAILED, duration_ms=None, error=(type(exc).__name__, str(exc)))
            return

        if run.command is None:
            await _kernel_start_showing_wait(run, acquired.sandbox)
        if not started or acquired.notice:
            await db(_mark_started_sync)(
                execution_id=run.execution_id, session_id=run.session.id, notice=acquired.notice, set_started=not started
            )
        await publish(run.group, {"type": "execution.started", "frame": events.started_frame(run.execution_id, acquired.notice)})

        sandbox = run.sandbox = acquired.sandbox
        if run.cancel.is_set():
            asyncio.ensure_future(interrupt_until_done(run))
        await _run_and_finish(run, writer, run_start(run, sandbox, writer))
    except asyncio.CancelledError:
        await _finish_quietly(run, writer, Execution.Status.INTERRUPTED)
        raise
    except Exception:
        log.exception("run %s failed inside the server", run.execution_id)
        writer.note("The server failed while running this; the error is in its log.")
        await _finish_quietly(run, writer, Execution.Status.FAILED)
    finally:
        if prefetch is not None:
            prefetch.add_done_callback(discard_result)
        runs_here.pop(run.execution_id, None)
        run.done.set()
        pass_turn(run.session.id, ahead, mine)


# A sandbox that takes longer than this to get shows the run as "starting" (a warm one takes ~20 ms).
STARTING_GRACE_S = 0.25
# How often the run checks its place in the capacity queue while it waits.
STARTING_POLL_S = 0.2


async def _publish_starting(run: Run, ahead: int, since: datetime) -> None:
    frame: events.StartingFrame = {
        "type": "execution.starting", "execution_id": run.execution_id, "ahead": ahead, "since": since.isoformat(),
        "waited_ms": max(0, int((timezone.now() - since).total_seconds() * 1000)),
    }
    run.starting = frame
    await publish(run.group, {"type": "execution.starting", "frame": frame})


async def _acquire_showing_wait(
    run: Run, acquiring: asyncio.Future[sandboxes.AcquiredSandbox]
) -> sandboxes.AcquiredSandbox | None:
    """`acquiring`'s sandbox; while it takes longer than STARTING_GRACE_S, `execution.starting` frames
    say how many wait ahead (re-sent when that changes). None when the run is stopped meanwhile."""
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


async def _kernel_start_showing_wait(run: Run, sandbox: Sandbox) -> None:
    """A local sandbox whose kernel for the run's language isn't up yet: show `execution.starting`
    (0 ahead) until it is. Its failure is left to the run, which starts the kernel again."""
    ready = getattr(sandbox, "kernel_ready", None)  # beyond the Protocol: the local backend has it
    if ready is None or ready(run.language):
        run.starting = None
        return
    starting = asyncio.ensure_future(sandbox.kernel_start(run.language))  # type: ignore[attr-defined]
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


def input_asker(run: Run, writer: OutputWriter) -> OnInput:
    """The run's `on_input`: show the prompt on every socket of the session, then wait for the line
    an `input_reply` brings (runs.execution_input_reply_local). A Stop or the timeout cancels it.
    The prompt and the line (not a password) join the run's stdout, as a terminal shows them."""

    async def ask(prompt: str, password: bool) -> str:
        while not run.execution_id:  # pipelined start (admission.py): the row is being inserted
            await asyncio.sleep(0.005)
        frame: events.InputRequestFrame = {
            "type": "execution.input_request", "execution_id": run.execution_id, "prompt": prompt, "password": password,
        }
        pending = run.pending_input = PendingInput(asyncio.get_running_loop().create_future(), frame)
        try:
            await publish(run.group, {"type": "execution.input_request", "frame": frame})
            value = await pending.reply
        finally:
            run.pending_input = None
        await emit(writer.on_event, Stdout(f"{prompt}{'' if password else value}\n"))
        return value

    return ask


async def _run_and_finish(
    run: Run, writer: OutputWriter, running: asyncio.Future[Outcome], *, may_retry: bool = True
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
    except asyncio.CancelledError:
        task = asyncio.current_task()
        # The sandbox's close cancelled the code (not this task): an admin, a budget or a revoked key.
        if running.cancelled() and not (task and task.cancelling()) and sandboxes.sandbox_is_stopped(session_id=run.session.id):
            notice = sandboxes.sandbox_stopped_notice(session_id=run.session.id)
            await _finish_killed(run, writer, notice, duration_ms=int((time.monotonic() - began) * 1000))
            return
        raise
    except SandboxGone as exc:
        stopped = sandboxes.sandbox_stopped_notice(session_id=run.session.id)
        if stopped:  # closed over the user's head (an admin, a budget, a revoked key): no retry
            await _finish_killed(run, writer, stopped, duration_ms=int((time.monotonic() - began) * 1000))
            return
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
        stopped = sandboxes.sandbox_stopped_notice(session_id=run.session.id)
        if stopped:
            await _finish_killed(run, writer, stopped, duration_ms=int((time.monotonic() - began) * 1000))
            return
        writer.note(str(exc))
        await _finish(
            run, writer, Execution.Status.FAILED, duration_ms=int((time.monotonic() - began) * 1000),
            error=(type(exc).__name__, str(exc)),
        )
        return
    finally:
        run.sandbox = None
    stopped = "" if outcome.status == "ok" else sandboxes.sandbox_stopped_notice(session_id=run.session.id)
    if stopped:
        await _finish_killed(run, writer, stopped, duration_ms=outcome.duration_ms)
        return
    if outcome.status == "gone":
        await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.GONE)
    else:
        sandboxes.sandbox_touch(session_id=run.session.id)
    await _finish(run, writer, _status_for(outcome, cancelled=run.cancel.is_set()), duration_ms=outcome.duration_ms)


async def _finish_killed(run: Run, writer: OutputWriter, notice: str, *, duration_ms: int | None) -> None:
    """The sandbox was closed under the run by an admin, a budget or a revoked key: the run ends
    "killed" with `notice` inline (not the user's error, and not counted as one)."""
    writer.note(notice)
    await _finish(run, writer, Execution.Status.KILLED, duration_ms=duration_ms)


async def _rerun_on_new_sandbox(run: Run, writer: OutputWriter) -> asyncio.Future[Outcome] | None:
    """The run's sandbox is gone and the code produced nothing: close its lease ("gone"), start a
    fresh sandbox, store and publish the notice, and start the code there. None when no sandbox
    could be had (the run is then finished here)."""
    await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.GONE)
    run.session.sandbox_id = ""  # gone: don't try to reconnect to it
    try:
        acquired = await sandboxes.sandbox_acquire(session=run.session)
    except SandboxUnavailable as exc:
        await _refuse(run, writer, exc)
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
        asyncio.ensure_future(interrupt_until_done(run))
    return run_start(run, sandbox, writer)


def _unless_stopped(run: Run, writer: OutputWriter) -> OnEvent:
    """The writer's `on_event`, dropping what the sandbox says once an admin, a budget or a revoked
    key closed it (its "closed while this ran" would read as the user's error; the notice says why)."""

    def deliver(event: Event) -> None:
        if not sandboxes.sandbox_is_stopped(session_id=run.session.id):
            writer.on_event(event)

    return deliver


def run_start(run: Run, sandbox: Sandbox, writer: OutputWriter) -> asyncio.Future[Outcome]:
    """Start the run's code (or command) in `sandbox`, its output going to `writer`."""
    if run.command is not None:
        return asyncio.ensure_future(_command_run(run, run.command, sandbox, writer))
    return asyncio.ensure_future(
        code_run(
            sandbox=sandbox, code=run.cell, language=run.language, on_event=_unless_stopped(run, writer), timeout_s=settings.RUN_TIMEOUT_S,
            on_input=input_asker(run, writer),
        )
    )


async def _command_run(run: Run, command: Command, sandbox: Sandbox, writer: OutputWriter) -> Outcome:
    """Run `command` in `sandbox` for at most its timeout (at most RUN_TIMEOUT_S); a Stop kills it
    (an interrupt reaches kernels only). Its exit code lands on `command`; one other than 0 is
    the run's error (status failed), a timeout is "timeout", a Stop "interrupted"."""
    began = time.monotonic()
    execute = getattr(sandbox, "command", None)  # beyond the Protocol: the local backend has it
    if execute is None:
        command.error = "this sandbox backend can't run commands"
        await emit(writer.on_event, Error("CommandError", command.error))
        return Outcome("error", 0)
    timeout_s = min(command.timeout_s, settings.RUN_TIMEOUT_S)
    task = asyncio.ensure_future(execute(command.argv, cwd=command.cwd, envs=command.envs, on_event=writer.on_event, timeout_s=timeout_s))
    stop = asyncio.ensure_future(run.cancel.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()  # kills the command's process tree
            await asyncio.wait({task})
    duration_ms = int((time.monotonic() - began) * 1000)
    if task.cancelled():
        command.exit_code = -9
        return Outcome("interrupted", duration_ms)
    try:
        code = task.result()
    except ValueError as exc:
        command.error = str(exc)
        await emit(writer.on_event, Error("InvalidArgument", command.error))
        return Outcome("error", duration_ms)
    command.exit_code = code
    if code is None:
        return Outcome("timeout", duration_ms)
    if code != 0:
        ended = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
        await emit(writer.on_event, Error("CommandFailed", ended))
        return Outcome("error", duration_ms)
    return Outcome("ok", duration_ms)


async def _refuse(run: Run, writer: OutputWriter, exc: SandboxUnavailable) -> None:
    """No sandbox for the run: the user's live-sandbox limit (`quota`) or degraded mode
    (`unavailable`). An error frame on the session's sockets, and the run ends rejected."""
    quota = isinstance(exc, sandboxes.LiveSandboxLimit)
    await publish(run.group, {"type": "run.error", "frame": events.error_frame("quota" if quota else "unavailable", exc.reason)})
    error = ("QuotaExceeded" if quota else "SandboxUnavailable", exc.reason)
    await _finish(run, writer, Execution.Status.REJECTED, duration_ms=None, error=error)


async def _wait_turn(run: Run, ahead: asyncio.Future[None] | None) -> bool:
    """Wait until the session's earlier runs here are done. False if stopped while queued."""
    if ahead is None or ahead.done():
        return True
    stopped = asyncio.ensure_future(run.cancel.wait())
    waiting: set[asyncio.Future[Any]] = {ahead, stopped}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    return ahead.done()


async def _wait_remote_ahead(run: Run) -> None:
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
    run: Run, writer: OutputWriter, status: str, *, duration_ms: int | None, error: tuple[str, str] | None = None
) -> None:
    """Store the output and the final state (one commit), then publish `execution.finished`."""
    writer.end()  # past the cap: the marker and the tail the cap kept
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
    busy = later_run_waits(run)
    store = asyncio.ensure_future(
        db_retry(
            _finish_sync, execution_id=run.execution_id, session_id=run.session.id, fields=fields, session_busy=busy,
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


async def _finish_quietly(run: Run, writer: OutputWriter, status: str) -> None:
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
