"""A run's task, from its turn to its end: `RunTask`, which `admission.execution_start` starts.

The task owns the run to the end, whether or not any socket is connected:
1. it waits its turn (one active run per session; others queue in order: runs.py, waiting.py);
2. `acquire()` gets the session's sandbox (reused, reconnected or new; a notice says which),
   with `execution.starting` frames while that takes long;
3. `start_code()` publishes `execution.started` and starts the code (coderun.py), its output
   streamed through `OutputWriter` (output.py): persist a batch, then publish it;
4. `finish()` stores the final status with one commit, then publishes `execution.finished`.
Before the row exists, `pipeline()` may fetch the sandbox, or (this process's own local sandbox)
start the code itself, while the row is inserted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runner import events
from runner.events import Chunk
from runner.models import ChatSession, Execution, SandboxLease
from runner.sandboxes.base import Outcome, Sandbox, SandboxError, SandboxGone, SandboxUnavailable
from runner.services import sandboxes, waiting
from runner.services.cancel import INTERRUPT_EVERY_S, interrupt_until_done
from runner.services.coderun import code_run
from runner.services.outbox import store_chunks_sync
from runner.services.output import OutputWriter, publish
from runner.services.runs import Command, Run, discard_result, later_run_waits, pass_turn, runs_here, take_turn
from runner.services.runtime import db, db_retry

log = logging.getLogger(__name__)


class RunTask:
    """One run this process owns, from admission to its end: its place in the session's line
    (its turn), its output's writer, its sandbox fetched ahead (prefetch) or its code started
    before the row exists (early start), and the asyncio task that drives it.

    `admission.execution_start` makes one (which joins the session's line at once, so the order
    of construction is the order of the runs), may `pipeline()` it, inserts the row, then either
    `withdraw()`s it (the insert failed) or `admit()`s the row and `start()`s the task. The task
    always ends the run (stored and published) and passes the turn, whatever happens.
    """

    def __init__(
        self, *, session: ChatSession, code: str, language: str, command: Command | None = None, prelude: str = "",
        kernel: str = "", stdin: bool = True,
    ) -> None:
        self._ahead, self._mine = take_turn(session.id)
        self.run = Run(
            0, session, events.session_group(session.id), code, language, tail=self._mine, command=command, prelude=prelude,
            kernel=kernel, stdin=stdin,
        )
        self.writer = OutputWriter(group=self.run.group)  # holds output until the row exists
        self._stored = asyncio.Event()  # set once the row exists: the run has its id
        self._row_running = False  # the row says "running" (it was inserted so, or marked since)
        self._prefetch: asyncio.Future[sandboxes.AcquiredSandbox] | None = None
        self._early: asyncio.Future[Outcome] | None = None

    @property
    def first_in_line(self) -> bool:
        """Nothing runs or waits ahead of this run in its session here."""
        return self._ahead is None

    @property
    def running_early(self) -> bool:
        """The code started before its row was stored (`pipeline`)."""
        return self._early is not None

    # Before the row exists.

    def pipeline(self, *, may_run_code: bool) -> bool:
        """Overlap the row's insert when nothing is ahead here: start the code now if the session's
        sandbox is this process's own (local) one and `may_run_code` (never a command), else start
        fetching the sandbox. True if either started (the caller then yields once, so it sends its
        first request before the database thread takes the GIL for the insert)."""
        if not self.first_in_line:
            return False
        session_id = self.run.session.id
        own = sandboxes.sandbox_held_here(session_id=session_id) if may_run_code and self.run.command is None else None
        if own is not None:
            self.run.sandbox = own
            self._early = self._code(own)
        else:
            self._prefetch = asyncio.ensure_future(sandboxes.sandbox_acquire(session=self.run.session))
        return True

    async def withdraw(self) -> None:
        """The row could not be stored: stop the code that already started (dropping its output),
        leave the session's line, and let the prefetched sandbox be (held for the next run)."""
        early = self._early
        while early is not None and not early.done():
            try:
                if self.run.sandbox is not None:  # the sandbox the early start runs on
                    await self.run.sandbox.interrupt()
            except Exception:
                log.warning("interrupting an abandoned run failed", exc_info=True)
            await asyncio.wait({early}, timeout=INTERRUPT_EVERY_S)
        if early is not None:
            discard_result(early)
        pass_turn(self.run.session.id, self._ahead, self._mine)
        if self._prefetch is not None:
            self._prefetch.add_done_callback(discard_result)

    def admit(self, execution: Execution) -> None:
        """The row is stored: the run has its id, this process owns it (a Stop finds it), and its
        output may be written."""
        self.run.execution_id = self.writer.execution_id = execution.pk
        self._row_running = execution.status == Execution.Status.RUNNING
        runs_here[execution.pk] = self.run
        self._stored.set()

    def start(self, *, remote_ahead: bool) -> None:
        """Start the run's task. `remote_ahead`: runs owned by other processes were active in the
        session when the row was stored; it waits for them too (unless its code runs already)."""
        self.run.task = asyncio.create_task(self._drive(remote_ahead=remote_ahead and self._early is None))

    # The task.

    async def _drive(self, *, remote_ahead: bool) -> None:
        run = self.run
        try:
            if self._early is not None:
                await self._announce_started("")
                await self._await_outcome(self._early)
                return
            await waiting.turn_wait(run, self._ahead, remote_ahead=remote_ahead)
            if run.cancel.is_set():
                await self.finish(Execution.Status.CANCELLED)
                return
            acquired = await self.acquire()
            if acquired is not None:
                await self._await_outcome(await self.start_code(acquired.sandbox, notice=acquired.notice))
        except asyncio.CancelledError:
            await self._finish_quietly(Execution.Status.INTERRUPTED)
            raise
        except Exception:
            log.exception("run %s failed inside the server", run.execution_id)
            self.writer.note("The server failed while running this; the error is in its log.")
            await self._finish_quietly(Execution.Status.FAILED)
        finally:
            if self._prefetch is not None:
                self._prefetch.add_done_callback(discard_result)
            runs_here.pop(run.execution_id, None)
            run.done.set()
            pass_turn(run.session.id, self._ahead, self._mine)

    async def acquire(self, *, replacing: bool = False) -> sandboxes.AcquiredSandbox | None:
        """The sandbox to run on: the prefetched one or one asked for now, with `execution.starting`
        frames while it (or a local sandbox's kernel) takes long, and a fresh one if it was found
        closed. `replacing`: the run's sandbox is gone; close its lease ("gone") and start a fresh one.

        None when the run ended without one, stored and published here: stopped while waiting
        (cancelled), no sandbox for it (the user's live-sandbox limit or degraded mode: rejected),
        or it failed to start (failed)."""
        try:
            acquired = await (self._replacement() if replacing else self._first_sandbox())
        except SandboxUnavailable as exc:
            await self._refuse(exc)
            return None
        except SandboxError as exc:
            self.writer.note(f"Could not start a sandbox: {exc}")
            await self.finish(Execution.Status.FAILED, error=(type(exc).__name__, str(exc)))
            return None
        if acquired is not None and not replacing and self.run.command is None:
            await waiting.kernel_wait(self.run, acquired.sandbox)
        return acquired

    async def _first_sandbox(self) -> sandboxes.AcquiredSandbox | None:
        session = self.run.session
        if self._prefetch is None:
            self._prefetch = asyncio.ensure_future(sandboxes.sandbox_acquire(session=session))
        acquired = await waiting.sandbox_wait(self.run, self._prefetch)
        if acquired is None:
            sandboxes.sandbox_acquire_abandon(session_id=session.id)  # leave the line: no slot for nobody
            await self.finish(Execution.Status.CANCELLED)
            return None
        self._prefetch = None
        if getattr(acquired.sandbox, "closed", False):  # beyond the Protocol: backends that can tell (local)
            # Closed under us (e.g. the backend reaped it as idle): start a fresh one instead.
            await sandboxes.sandbox_release(session_id=session.id, reason=SandboxLease.EndReason.IDLE)
            acquired = await sandboxes.sandbox_acquire(session=session)
        return acquired

    async def _replacement(self) -> sandboxes.AcquiredSandbox:
        await sandboxes.sandbox_release(session_id=self.run.session.id, reason=SandboxLease.EndReason.GONE)
        self.run.session.sandbox_id = ""  # gone: don't try to reconnect to it
        acquired = await sandboxes.sandbox_acquire(session=self.run.session)
        return sandboxes.AcquiredSandbox(acquired.sandbox, acquired.notice or sandboxes.NOTICE_NEW_SANDBOX)

    async def start_code(self, sandbox: Sandbox, *, notice: str) -> asyncio.Future[Outcome]:
        """Mark the run started with its sandbox's `notice` (stored and published), then start its
        code in `sandbox` (interrupted at once if a Stop came meanwhile)."""
        await self._announce_started(notice)
        self.run.sandbox = sandbox
        if self.run.cancel.is_set():
            asyncio.ensure_future(interrupt_until_done(self.run))
        return self._code(sandbox)

    def _code(self, sandbox: Sandbox) -> asyncio.Future[Outcome]:
        return asyncio.ensure_future(code_run(run=self.run, sandbox=sandbox, writer=self.writer, stored=self._stored))

    async def _announce_started(self, notice: str) -> None:
        """Store the start (status running, if not yet) and the notice, then publish `execution.started`.
        A second one for the same run (a replaced sandbox) shows its notice; clients ignore the repeat."""
        if notice or not self._row_running:
            await db(_mark_started_sync)(
                execution_id=self.run.execution_id, session_id=self.run.session.id, notice=notice, set_started=not self._row_running
            )
            self._row_running = True
        await publish(self.run.group, {"type": "execution.started", "frame": events.started_frame(self.run.execution_id, notice)})

    async def _await_outcome(self, running: asyncio.Future[Outcome], *, may_retry: bool = True) -> None:
        """Stream the running code's output, wait for its outcome, and store and publish the end.

        A sandbox found gone before the code delivered anything (E2B dropped it, or a local one was
        reaped) is replaced once: lease closed ("gone"), a fresh sandbox, the notice, and the same code
        runs there. A sandbox lost mid-output ends the run as "gone" (failed) instead.
        """
        run, writer = self.run, self.writer
        if not running.done():
            writer.release()  # else it all goes out with the final state, in one commit
        began = time.monotonic()
        try:
            # The backend enforces RUN_TIMEOUT_S; this outer bound only guards against a hung backend.
            outcome: Outcome = await asyncio.wait_for(running, timeout=settings.RUN_TIMEOUT_S + 30)
        except asyncio.TimeoutError:
            run.sandbox = None
            writer.note("The sandbox stopped answering, so it was replaced.")
            await sandboxes.sandbox_release(session_id=run.session.id, reason=SandboxLease.EndReason.GONE)
            await self.finish(Execution.Status.TIMED_OUT, duration_ms=_ms_since(began))
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # The sandbox's close cancelled the code (not this task): an admin, a budget or a revoked key.
            if running.cancelled() and not (task and task.cancelling()) and sandboxes.sandbox_is_stopped(session_id=run.session.id):
                await self._finish_killed(sandboxes.sandbox_stopped_notice(session_id=run.session.id), duration_ms=_ms_since(began))
                return
            raise
        except SandboxGone as exc:
            if stopped := sandboxes.sandbox_stopped_notice(session_id=run.session.id):
                # Closed over the user's head (an admin, a budget, a revoked key): no retry.
                await self._finish_killed(stopped, duration_ms=_ms_since(began))
                return
            if may_retry and writer.events_received == 0 and not run.cancel.is_set():
                run.sandbox = None
                if (acquired := await self.acquire(replacing=True)) is not None:
                    retry = await self.start_code(acquired.sandbox, notice=acquired.notice)
                    await self._await_outcome(retry, may_retry=False)
                return
            outcome = Outcome("gone", _ms_since(began))
            writer.note(str(exc) or "The sandbox stopped; the next run starts a new one.")
        except SandboxError as exc:
            run.sandbox = None
            if stopped := sandboxes.sandbox_stopped_notice(session_id=run.session.id):
                await self._finish_killed(stopped, duration_ms=_ms_since(began))
                return
            writer.note(str(exc))
            await self.finish(Execution.Status.FAILED, duration_ms=_ms_since(began), error=(type(exc).__name__, str(exc)))
            return
        finally:
            run.sandbox = None
        await self._outcome_finish(outcome)

    async def _outcome_finish(self, outcome: Outcome) -> None:
        """End the run as its code's `outcome` says (or "killed", when its sandbox was closed over
        the user's head), and keep or close its sandbox."""
        session_id = self.run.session.id
        stopped = "" if outcome.status == "ok" else sandboxes.sandbox_stopped_notice(session_id=session_id)
        if stopped:
            await self._finish_killed(stopped, duration_ms=outcome.duration_ms)
            return
        if outcome.status == "gone":
            await sandboxes.sandbox_release(session_id=session_id, reason=SandboxLease.EndReason.GONE)
        else:
            sandboxes.sandbox_touch(session_id=session_id)
        await self.finish(_status_for(outcome, cancelled=self.run.cancel.is_set()), duration_ms=outcome.duration_ms)

    # The end.

    async def _finish_killed(self, notice: str, *, duration_ms: int | None) -> None:
        """The sandbox was closed under the run by an admin, a budget or a revoked key: the run ends
        "killed" with `notice` inline (not the user's error, and not counted as one)."""
        self.writer.note(notice)
        await self.finish(Execution.Status.KILLED, duration_ms=duration_ms)

    async def _refuse(self, exc: SandboxUnavailable) -> None:
        """No sandbox for the run: the user's live-sandbox limit (`quota`) or degraded mode
        (`unavailable`). An error frame on the session's sockets, and the run ends rejected."""
        quota = isinstance(exc, sandboxes.LiveSandboxLimit)
        await publish(self.run.group, {"type": "run.error", "frame": events.error_frame("quota" if quota else "unavailable", exc.reason)})
        await self.finish(Execution.Status.REJECTED, error=("QuotaExceeded" if quota else "SandboxUnavailable", exc.reason))

    async def finish(self, status: str, *, duration_ms: int | None = None, error: tuple[str, str] | None = None) -> None:
        """Store the output and the final state (one commit), then publish `execution.finished`.
        `error` (name, value) is stored when the code reported none."""
        run, writer = self.run, self.writer
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
        store = asyncio.ensure_future(
            db_retry(
                _finish_sync, execution_id=run.execution_id, session_id=run.session.id, fields=fields,
                session_busy=later_run_waits(run), chunks=[chunk for batch in last_batches for chunk in batch],
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

    async def _finish_quietly(self, status: str) -> None:
        try:
            await asyncio.shield(self.finish(status))
        except BaseException:
            log.exception("could not store the end of run %s", self.run.execution_id)


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


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


def _mark_started_sync(*, execution_id: int, session_id: uuid.UUID, notice: str, set_started: bool) -> None:
    fields: dict[str, Any] = {"notice": notice[:300]} if notice else {}
    with transaction.atomic():
        if set_started:
            fields.update(status=Execution.Status.RUNNING, started_at=timezone.now())
            ChatSession.objects.filter(pk=session_id).update(status=ChatSession.Status.RUNNING)
        Execution.objects.filter(pk=execution_id).update(**fields)


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
