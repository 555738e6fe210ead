"""E2BSandbox: runs, files and installs in one E2B sandbox."""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from typing import Any

from e2b_code_interpreter import AsyncSandbox, CommandExitException, EntryInfo, FileType, NotFoundException
from e2b_code_interpreter.models import ExecutionError, OutputMessage
from e2b_code_interpreter.models import Result as E2BResult

from runner.sandboxes.base import (
    LANGUAGES,
    Error,
    Event,
    FileInfo,
    FileTooLarge,
    OnEvent,
    OnInput,
    Outcome,
    Result,
    SandboxError,
    SandboxGone,
    SandboxUsage,
    Stderr,
    Stdout,
    emit,
)
from runner.sandboxes.e2b.config import E2BConfig
from runner.sandboxes.e2b.errors import is_broken_stream, scrub, translate_error
from runner.sandboxes.e2b.inputs import WORKSPACE, install_command, mime_bundle, workspace_path

log = logging.getLogger("runner.sandboxes.e2b")

# The SDK's own execution timeout sits past ours, so ours always fires first.
SDK_TIMEOUT_SLACK_S = 30.0
# The error E2B's code interpreter reports when a context's kernel died and was restarted.
KERNEL_RESTARTED = "ContextRestarting"
# Settling after a cut: empty probe runs under these deadlines (the last one repeats) until one
# ends normally, for at most SETTLE_BUDGET_S. The first probe usually lands in the kernel's abort
# window and hangs, so its deadline is pure cost; doubling reaches a round trip to E2B's edge soon.
SETTLE_PROBE_DEADLINES_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
SETTLE_BUDGET_S = 10.0
# E2B's metrics API is asked about one sandbox at most this often, and waited for this long.
METRICS_EVERY_S = 30.0
METRICS_TIMEOUT_S = 3.0


class E2BSandbox:
    """One E2B sandbox. Runs in it are serialised by the caller (one run per session at a time)."""

    def __init__(self, sdk: AsyncSandbox, config: E2BConfig) -> None:
        self._sdk = sdk
        self._config = config
        self.id: str = sdk.sandbox_id
        self._task: asyncio.Task[Any] | None = None
        self._interrupted = False
        # Languages whose context may still be unwinding a cut run (see _settle).
        self._unsettled: set[str] = set()
        # Not in the Protocol: the run service checks it, as it does the local backend's.
        self.closed = False
        self._metrics: tuple[float, SandboxUsage] | None = None  # (monotonic s, last reading), see usage()

    # --- runs -----------------------------------------------------------------------------------

    async def run(
        self, code: str, *, language: str, on_event: OnEvent, timeout_s: float, on_input: OnInput | None = None,
        kernel: str = "",
    ) -> Outcome:
        """Run code in the language's context. Never raises for errors in the user's code.

        `on_input` is never called: E2B's code interpreter has no stdin, so `input()` raises there.
        `kernel` is not used: every run of a language is in that language's one context.

        Raises SandboxGone if the sandbox is already gone when the run starts (nothing was
        delivered), SandboxUnavailable or SandboxError if E2B refuses the request; a sandbox lost
        mid-run is Outcome "gone" with an Error event.
        """
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language {language!r}; choose one of {sorted(LANGUAGES)}")
        started = time.monotonic()
        self._interrupted = False
        if language in self._unsettled:  # a cut whose settle never finished (e.g. its task was cancelled)
            await self._settle(language)
            if self._interrupted:  # stopped while settling: the code never went out
                return Outcome(status="interrupted", duration_ms=int((time.monotonic() - started) * 1000))
        errored = restarted = False
        delivered = 0

        async def deliver(event: Event) -> None:
            nonlocal delivered
            delivered += 1
            await emit(on_event, event)

        async def on_stdout(message: OutputMessage) -> None:
            await deliver(Stdout(message.line))

        async def on_stderr(message: OutputMessage) -> None:
            await deliver(Stderr(message.line))

        async def on_result(result: E2BResult) -> None:
            await deliver(Result(data=mime_bundle(result), is_main=bool(result.is_main_result)))

        async def on_error(error: ExecutionError) -> None:
            nonlocal errored, restarted
            errored = True
            if error.name == KERNEL_RESTARTED:
                restarted = True
                await deliver(
                    Error(
                        ename="KernelRestarted",
                        evalue=f"The {language} kernel stopped (it crashed, was killed or ran out of memory) and E2B "
                        "restarted it. Its variables are gone; the next run starts fresh.",
                    )
                )
                return
            await deliver(Error(ename=error.name, evalue=error.value, traceback=error.traceback.splitlines()))

        call = self._sdk.run_code(
            code,
            language=language,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            on_result=on_result,
            on_error=on_error,
            timeout=timeout_s + SDK_TIMEOUT_SLACK_S,
            request_timeout=self._config.request_timeout_s,
        )
        # The keep-alive goes out beside the run, not before it: it costs the run no round trip.
        keep_alive = asyncio.ensure_future(self._keep_alive())
        # Until the request ends normally, a cut (deadline, Stop, cancel, broken stream) may have
        # left the context unwinding an interrupt.
        self._unsettled.add(language)
        try:
            status, failure = await self._run_with_deadline(call, timeout_s)
        finally:
            await _settle_keep_alive(keep_alive, self.id)
        if status == "ok" and not (failure is not None and is_broken_stream(failure)):
            self._unsettled.discard(language)  # it ended, or never reached the kernel
        if failure is not None:
            status = await self._report_failure(failure, on_event, nothing_delivered=delivered == 0)
        elif status == "ok" and restarted:
            status = "gone"
        elif status == "ok" and errored:
            status = "error"
        duration_ms = int((time.monotonic() - started) * 1000)
        if language in self._unsettled and status != "gone":
            # Settled before the outcome goes back, so a run queued behind this one waits as
            # queued, and whichever process runs it next finds the context ready.
            await self._settle(language)
        return Outcome(status=status, duration_ms=duration_ms)

    async def _settle(self, language: str) -> None:
        """Make the language's context take requests again after a cut.

        When a run's stream closes, E2B's server interrupts the kernel and lets the next request
        straight in. ipykernel aborts requests that reach it while it unwinds the interrupt
        (reply status "aborted"), and E2B's server, which only knows "abort", never ends that
        request's stream: a user run sent now would hang to its deadline and print nothing.
        So empty probes go out, each under a short deadline (cutting one is itself a cut), until
        one ends normally: the kernel is then idle and past its abort window. Gives up after
        SETTLE_BUDGET_S, leaving the language unsettled so the next run tries again first.
        """
        give_up_at = time.monotonic() + SETTLE_BUDGET_S
        attempt = 0
        while (remaining_s := give_up_at - time.monotonic()) > 0:
            probe_s = SETTLE_PROBE_DEADLINES_S[min(attempt, len(SETTLE_PROBE_DEADLINES_S) - 1)]
            attempt += 1
            probe = asyncio.ensure_future(
                self._sdk.run_code("", language=language, timeout=probe_s + SDK_TIMEOUT_SLACK_S, request_timeout=self._config.request_timeout_s)
            )
            try:
                done, _ = await asyncio.wait({probe}, timeout=min(probe_s, remaining_s))
            except asyncio.CancelledError:
                await _cancel(probe)
                raise
            if not done:
                await _cancel(probe)
                continue
            failure = probe.exception()
            if failure is None:
                self._unsettled.discard(language)
                log.debug("E2B sandbox %s: %s context settled after %d probe(s)", self.id, language, attempt)
                return
            if not is_broken_stream(failure):  # gone, refused, unreachable: the next run will say so
                log.info("E2B sandbox %s: settling the %s context failed: %s", self.id, language, scrub(str(failure), self._config))
                return
        log.warning("E2B sandbox %s: the %s context did not settle within %.0f s after a cut", self.id, language, SETTLE_BUDGET_S)

    async def _run_with_deadline(self, call: Any, timeout_s: float) -> tuple[Any, BaseException | None]:
        """Await an SDK call under our deadline. Returns (status, exception raised by the call)."""
        task = asyncio.ensure_future(call)
        self._task = task
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        except asyncio.CancelledError:
            await _cancel(task)
            raise
        finally:
            self._task = None
        if not done:
            # Closing the streaming request is how E2B is told to interrupt the kernel.
            await _cancel(task)
            return "timeout", None
        if task.cancelled():
            return "interrupted", None
        failure = task.exception()
        if failure is not None and self._interrupted:
            return "interrupted", None
        return "ok", failure

    async def _report_failure(self, failure: BaseException, on_event: OnEvent, *, nothing_delivered: bool) -> str:
        """Turn an SDK failure during a run into an Error event and a status, or raise.

        A sandbox found gone before anything was delivered raises SandboxGone, so the caller can
        start a fresh sandbox and run the code there.
        """
        error = translate_error(failure, self._config, doing="run the code")
        if isinstance(error, SandboxGone) and nothing_delivered:
            raise error
        if isinstance(error, SandboxGone):
            await emit(on_event, Error(ename="SandboxGone", evalue=str(error)))
            return "gone"
        if is_broken_stream(failure):
            await emit(
                on_event,
                Error(
                    ename="ConnectionLost",
                    evalue="The connection to the E2B sandbox broke during the run. The output so far is kept; "
                    "the sandbox and its variables are probably still there.",
                ),
            )
            return "error"
        raise error

    async def interrupt(self) -> None:
        """Stop the current run: its request is closed, and E2B interrupts the kernel."""
        self._interrupted = True
        task = self._task
        if task is not None and not task.done():
            await _cancel(task)

    async def _keep_alive(self) -> None:
        """Push E2B's timeout forward, so an active session is not reaped under the user."""
        try:
            await self._sdk.set_timeout(self._config.idle_timeout_s)
        except Exception as exc:
            raise translate_error(exc, self._config, doing="reach the E2B sandbox") from None

    # --- files ----------------------------------------------------------------------------------

    async def _path(self, path: str) -> str:
        """The absolute sandbox path for a workspace path, refusing paths through symlinks.

        envd follows links anywhere in the VM; like the local backend, the files API does not.
        (The check and the access are two requests, so code running at the same moment could
        still swap a link in; on E2B that reaches only this session's own VM.)
        """
        target = workspace_path(path)
        relative = posixpath.relpath(target, WORKSPACE)
        if relative == ".":
            return target
        parts = relative.split("/")
        prefixes = [posixpath.join(WORKSPACE, *parts[: i + 1]) for i in range(len(parts))]
        infos = await asyncio.gather(*(self._lstat(prefix) for prefix in prefixes))
        for prefix, info in zip(prefixes, infos):
            if info is None:
                break  # it doesn't exist yet, so nothing below it can be a link
            if info.type == FileType.SYMLINK:
                shown = posixpath.relpath(prefix, WORKSPACE)
                raise ValueError(f"{path!r} goes through the symlink {shown!r}; the files API does not follow links.")
        return target

    async def _lstat(self, path: str) -> EntryInfo | None:
        try:
            return await self._sdk.files.get_info(path)
        except NotFoundException:
            return None
        except Exception as exc:
            raise translate_error(exc, self._config, doing="look up the file") from None

    async def write_file(self, path: str, data: bytes) -> None:
        if len(data) > self._config.file_max_bytes:
            raise FileTooLarge(f"The file is larger than the {self._config.file_max_bytes} byte limit.")
        target = await self._path(path)
        try:
            await self._sdk.files.write(target, data)
        except Exception as exc:
            raise translate_error(exc, self._config, doing="write the file") from None

    async def read_file(self, path: str) -> bytes:
        target = await self._path(path)
        try:
            data = await self._sdk.files.read(target, format="bytes")
        except NotFoundException:
            raise FileNotFoundError(f"No such file in the workspace: {path}") from None
        except Exception as exc:
            raise translate_error(exc, self._config, doing="read the file") from None
        if len(data) > self._config.file_max_bytes:
            raise ValueError(f"The file is larger than the {self._config.file_max_bytes} byte limit.")
        return bytes(data)

    async def list_files(self, path: str = ".") -> list[FileInfo]:
        target = await self._path(path)
        try:
            entries = await self._sdk.files.list(target, depth=1)
        except NotFoundException:
            raise FileNotFoundError(f"No such directory in the workspace: {path}") from None
        except Exception as exc:
            raise translate_error(exc, self._config, doing="list the files") from None
        files = [
            FileInfo(
                name=entry.name,
                path=posixpath.relpath(entry.path, WORKSPACE),
                is_dir=entry.type == FileType.DIR,
                size=0 if entry.type == FileType.DIR else int(entry.size or 0),
                modified=entry.modified_time.timestamp() if entry.modified_time else 0.0,
            )
            for entry in entries
        ]
        return sorted(files, key=lambda f: f.name)

    async def delete_file(self, path: str) -> None:
        target = await self._path(path)
        if target == WORKSPACE:
            raise ValueError("The workspace itself can't be deleted; name a file or folder in it.")
        if await self._lstat(target) is None:
            raise FileNotFoundError(f"No such file in the workspace: {path}")
        try:
            await self._sdk.files.remove(target)
        except Exception as exc:
            raise translate_error(exc, self._config, doing="delete the file") from None

    async def rename_file(self, path: str, to: str) -> None:
        source, target = await self._path(path), await self._path(to)
        if WORKSPACE in (source, target):
            raise ValueError("Name a file or folder in the workspace, not the workspace itself.")
        if await self._lstat(source) is None:
            raise FileNotFoundError(f"No such file in the workspace: {path}")
        if await self._lstat(target) is not None:
            raise FileExistsError(f"{to!r} already exists")
        try:
            await self._sdk.files.rename(source, target)
        except NotFoundException:
            raise FileNotFoundError(f"No such folder in the workspace: {posixpath.dirname(to)}") from None
        except Exception as exc:
            raise translate_error(exc, self._config, doing="rename the file") from None

    # --- packages -------------------------------------------------------------------------------

    async def install(self, packages: list[str], *, language: str, on_event: OnEvent, timeout_s: float) -> Outcome:
        """Install packages with pip (python, bash) or npm (javascript, typescript), streaming output."""
        command = install_command(packages, language)
        self._interrupted = False
        await self._keep_alive()
        started = time.monotonic()

        async def on_stdout(text: str) -> None:
            await emit(on_event, Stdout(text))

        async def on_stderr(text: str) -> None:
            await emit(on_event, Stderr(text))

        async def start_and_wait() -> Any:
            handle = await self._sdk.commands.run(
                command, background=True, on_stdout=on_stdout, on_stderr=on_stderr, cwd=WORKSPACE, timeout=timeout_s + SDK_TIMEOUT_SLACK_S
            )
            try:
                return await handle.wait()
            except BaseException:  # our deadline or a Stop: the command must not outlive the install
                try:
                    await asyncio.shield(handle.kill())
                except Exception:
                    log.debug("killing the install command failed", exc_info=True)
                raise

        status, failure = await self._run_with_deadline(start_and_wait(), timeout_s)
        if isinstance(failure, CommandExitException):
            tool = command.split()[0]
            await emit(on_event, Error(ename="InstallFailed", evalue=f"{tool} exited with status {failure.exit_code}"))
            status, failure = "error", None
        if failure is not None:
            status = await self._report_failure(failure, on_event, nothing_delivered=False)
        return Outcome(status=status, duration_ms=int((time.monotonic() - started) * 1000))

    # --- usage ----------------------------------------------------------------------------------

    async def usage(self) -> SandboxUsage:
        """E2B's latest metrics for this sandbox (CPU %, memory), at most one call per
        METRICS_EVERY_S; all None where the SDK or the API gives none (old templates, an outage)."""
        now = time.monotonic()
        if self._metrics is not None and now - self._metrics[0] < METRICS_EVERY_S:
            return self._metrics[1]
        found = SandboxUsage()
        try:
            metrics = await asyncio.wait_for(self._sdk.get_metrics(), METRICS_TIMEOUT_S)
            if metrics:
                last = metrics[-1]
                found = SandboxUsage(cpu_percent=round(float(last.cpu_used_pct), 1),
                                     memory_bytes=int(last.mem_used), memory_limit_bytes=int(last.mem_total) or None)
        except Exception as exc:  # the metrics are a nicety: "n/a" on the page, never an error
            log.debug("no metrics for E2B sandbox %s: %s", self.id, scrub(str(exc), self._config))
        self._metrics = (now, found)
        return found

    # --- lifetime -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Kill the sandbox; billing stops. A sandbox already gone is fine."""
        self.closed = True
        try:
            await self._sdk.kill()
        except Exception as exc:
            log.warning("killing E2B sandbox %s failed: %s", self.id, scrub(str(exc), self._config))


async def _settle_keep_alive(keep_alive: asyncio.Future[None], sandbox_id: str) -> None:
    """Wait for a keep-alive sent beside a run. Its failure never fails the run: a sandbox that is
    really gone fails the run itself, and anything else (a rate limit) is retried next run."""
    try:
        await asyncio.shield(keep_alive)
    except SandboxError as exc:
        log.info("E2B keep-alive for sandbox %s failed: %s", sandbox_id, exc)
    except asyncio.CancelledError:
        keep_alive.cancel()
        raise


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait for it to end, without swallowing our own cancellation."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark it retrieved; the run's outcome is already decided
