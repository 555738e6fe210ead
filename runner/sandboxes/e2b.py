"""The E2B cloud backend: one E2B code-interpreter sandbox per chat session, via the official SDK.

This is the only module that imports `e2b_code_interpreter`. Nothing connects at import time.

- `create` starts a sandbox whose E2B `timeout` is the idle timeout, the backstop that ends its
  billing if this server dies; every run pushes that timeout forward (`set_timeout`).
- `connect` re-attaches to a sandbox by id, e.g. after our server restarted; a sandbox E2B no
  longer knows raises `SandboxGone`.
- `run` streams the SDK's callbacks as our events, in order, under our own deadline: the SDK's
  own execution timeout has been reported to fire late (e2b-dev/E2B#1881). Stopping or timing
  out closes the streaming request, which makes E2B interrupt the kernel; the sandbox lives on.
- Every SDK failure becomes a `SandboxError` whose message is fit for the page. The API key is
  never put in a message, a log line, or the sandbox's environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

import httpx
from e2b_code_interpreter import (
    AsyncSandbox,
    AuthenticationException,
    CommandExitException,
    EntryInfo,
    FileType,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotRunningException,
    ServiceBusyException,
    TimeoutException,
)
from e2b_code_interpreter.models import ExecutionError, OutputMessage
from e2b_code_interpreter.models import Result as E2BResult

from runner.sandboxes.base import (
    LANGUAGES,
    Error,
    Event,
    FileInfo,
    Health,
    OnEvent,
    Outcome,
    Result,
    SandboxError,
    SandboxGone,
    SandboxUnavailable,
    Stderr,
    Stdout,
    emit,
)

log = logging.getLogger(__name__)

WORKSPACE = "/home/user"
# The SDK's own execution timeout sits past ours, so ours always fires first.
SDK_TIMEOUT_SLACK_S = 30.0
# The error E2B's code interpreter reports when a context's kernel died and was restarted.
KERNEL_RESTARTED = "ContextRestarting"

# E2B result formats → MIME types, in the order a renderer should prefer them.
RESULT_MIME_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "svg": "image/svg+xml",
    "html": "text/html",
    "markdown": "text/markdown",
    "latex": "text/latex",
    "json": "application/json",
    "text": "text/plain",
}

# Package names `install` accepts: a name, optional extras and one version constraint. No
# options, paths or URLs.
PIP_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[[A-Za-z0-9._,-]+\])?((==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!_-]{1,50})?$")
NPM_PACKAGE = re.compile(r"^(@[a-z0-9][a-z0-9._~-]{0,99}/)?[a-z0-9][a-z0-9._~-]{0,99}(@[A-Za-z0-9.^~<>=*_-]{1,50})?$")
MAX_PACKAGES = 20


@dataclass(frozen=True)
class E2BConfig:
    """Where and how to reach E2B. Built from settings unless a caller passes its own."""

    api_key: str
    domain: str = ""
    api_url: str = ""
    sandbox_url: str = ""
    template: str = ""
    request_timeout_s: float = 30.0
    idle_timeout_s: int = 900
    file_max_bytes: int = 10 * 1024 * 1024
    # How long a health answer is reused: /healthz may be polled, but E2B should not be.
    health_cache_s: float = 5.0

    @classmethod
    def from_settings(cls) -> "E2BConfig":
        from django.conf import settings

        return cls(
            api_key=settings.E2B_API_KEY,
            domain=settings.E2B_DOMAIN,
            api_url=settings.E2B_API_URL,
            sandbox_url=settings.E2B_SANDBOX_URL,
            template=settings.E2B_TEMPLATE,
            request_timeout_s=settings.E2B_REQUEST_TIMEOUT_S,
            idle_timeout_s=settings.SANDBOX_IDLE_TIMEOUT_S,
            file_max_bytes=settings.SANDBOX_FILE_MAX_BYTES,
        )

    def sdk_options(self) -> dict[str, Any]:
        """Connection options for every SDK call, passed explicitly (the SDK would otherwise read
        E2B_* env vars itself; settings.py is the one reader of the environment). Debug mode, which
        skips E2B's API altogether, is always off."""
        options: dict[str, Any] = {"api_key": self.api_key, "request_timeout": self.request_timeout_s, "debug": False}
        if self.domain:
            options["domain"] = self.domain
        if self.api_url:
            options["api_url"] = self.api_url
        if self.sandbox_url:
            options["sandbox_url"] = self.sandbox_url
        return options

    def __repr__(self) -> str:  # keep the key out of any log line or traceback that prints us
        return f"E2BConfig(domain={self.domain!r}, api_url={self.api_url!r}, template={self.template!r})"


class E2BBackend:
    """Sandboxes in E2B cloud. One instance per process; it holds no sandbox state itself."""

    name = "e2b"
    languages: frozenset[str] = LANGUAGES

    def __init__(self, config: E2BConfig | None = None) -> None:
        self._config = config
        self._health: tuple[float, E2BConfig, Health] | None = None

    @property
    def config(self) -> E2BConfig:
        # Read on use, never at construction: building the backend touches neither settings nor
        # the network, and a settings change (a new key) applies without a new instance.
        return self._config if self._config is not None else E2BConfig.from_settings()

    def _check_key(self) -> None:
        if not self.config.api_key:
            raise SandboxUnavailable("E2B is selected but E2B_API_KEY is not set.")

    async def create(self, *, owner_id: int, session_id: str) -> "E2BSandbox":
        """Start a sandbox for one chat session. Raises SandboxUnavailable or SandboxError."""
        self._check_key()
        config = self.config
        try:
            sdk = await AsyncSandbox.create(
                template=config.template or None,
                timeout=config.idle_timeout_s,
                metadata={"sandpit_user": str(owner_id), "sandpit_session": session_id},
                **config.sdk_options(),
            )
        except Exception as exc:
            raise translate_error(exc, config, doing="start an E2B sandbox") from None
        return E2BSandbox(sdk, config)

    async def connect(self, sandbox_id: str) -> "E2BSandbox":
        """Re-attach to a running sandbox. Raises SandboxGone when E2B no longer has it."""
        self._check_key()
        config = self.config
        try:
            sdk = await AsyncSandbox.connect(sandbox_id, timeout=config.idle_timeout_s, **config.sdk_options())
        except Exception as exc:
            raise translate_error(exc, config, doing="reconnect to the E2B sandbox") from None
        return E2BSandbox(sdk, config)

    async def health(self) -> Health:
        """Whether E2B accepts our key and answers, checked by listing one sandbox.

        A failed check is retried on the next call after `health_cache_s` seconds, so degraded mode
        ends by itself once E2B is reachable again.
        """
        config = self.config
        if self._health is not None:
            checked_at, checked_config, health = self._health
            if checked_config == config and time.monotonic() - checked_at < config.health_cache_s:
                return health
        health = await self._check_health(config)
        self._health = (time.monotonic(), config, health)
        return health

    async def _check_health(self, config: E2BConfig) -> Health:
        if not config.api_key:
            return Health(ok=False, detail="E2B is selected but E2B_API_KEY is not set.", isolation="e2b")
        options = {**config.sdk_options(), "request_timeout": min(config.request_timeout_s, 10.0)}
        try:
            await AsyncSandbox.list(limit=1, **options).next_items()
        except Exception as exc:
            error = translate_error(exc, config, doing="check E2B's status")
            return Health(ok=False, detail=str(error), isolation="e2b")
        return Health(ok=True, detail="E2B cloud sandboxes are available.", isolation="e2b")


class E2BSandbox:
    """One E2B sandbox. Runs in it are serialised by the caller (one run per session at a time)."""

    def __init__(self, sdk: AsyncSandbox, config: E2BConfig) -> None:
        self._sdk = sdk
        self._config = config
        self.id: str = sdk.sandbox_id
        self._task: asyncio.Task[Any] | None = None
        self._interrupted = False

    # --- runs -----------------------------------------------------------------------------------

    async def run(self, code: str, *, language: str, on_event: OnEvent, timeout_s: float) -> Outcome:
        """Run code in the language's context. Never raises for errors in the user's code.

        Raises SandboxGone if the sandbox is already gone when the run starts (nothing was
        delivered), SandboxUnavailable or SandboxError if E2B refuses the request; a sandbox lost
        mid-run is Outcome "gone" with an Error event.
        """
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language {language!r}; choose one of {sorted(LANGUAGES)}")
        started = time.monotonic()
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
        try:
            status, failure = await self._run_with_deadline(call, timeout_s)
        finally:
            await _settle_keep_alive(keep_alive, self.id)
        if failure is not None:
            status = await self._report_failure(failure, on_event, nothing_delivered=delivered == 0)
        elif status == "ok" and restarted:
            status = "gone"
        elif status == "ok" and errored:
            status = "error"
        return Outcome(status=status, duration_ms=int((time.monotonic() - started) * 1000))

    async def _run_with_deadline(self, call: Any, timeout_s: float) -> tuple[Any, BaseException | None]:
        """Await an SDK call under our deadline. Returns (status, exception raised by the call)."""
        self._interrupted = False
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
        if _is_broken_stream(failure):
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
            raise ValueError(f"The file is larger than the {self._config.file_max_bytes} byte limit.")
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
            )
            for entry in entries
        ]
        return sorted(files, key=lambda f: f.name)

    # --- packages -------------------------------------------------------------------------------

    async def install(self, packages: list[str], *, language: str, on_event: OnEvent, timeout_s: float) -> Outcome:
        """Install packages with pip (python, bash) or npm (javascript, typescript), streaming output."""
        command = install_command(packages, language)
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

    # --- lifetime -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Kill the sandbox; billing stops. A sandbox already gone is fine."""
        try:
            await self._sdk.kill()
        except Exception as exc:
            log.warning("killing E2B sandbox %s failed: %s", self.id, scrub(str(exc), self._config))


# --- helpers ------------------------------------------------------------------------------------


def workspace_path(path: str) -> str:
    """The absolute sandbox path for a workspace path. Raises ValueError for anything outside it."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValueError("A file path must be a non-empty string.")
    joined = path if path.startswith("/") else posixpath.join(WORKSPACE, path)
    normalized = posixpath.normpath(joined)
    if ".." in path.split("/") or not (normalized == WORKSPACE or normalized.startswith(WORKSPACE + "/")):
        raise ValueError(f"The path {path!r} is outside the workspace ({WORKSPACE}); use a path inside it.")
    return normalized


def install_command(packages: list[str], language: str) -> str:
    """The shell command that installs `packages`. Raises ValueError for a name that isn't one."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; choose one of {sorted(LANGUAGES)}")
    if not packages:
        raise ValueError("Name at least one package to install.")
    if len(packages) > MAX_PACKAGES:
        raise ValueError(f"Install at most {MAX_PACKAGES} packages at a time.")
    pattern = NPM_PACKAGE if language in ("javascript", "typescript") else PIP_PACKAGE
    for name in packages:
        if not isinstance(name, str) or not pattern.fullmatch(name):
            raise ValueError(f"{name!r} is not a package name (options, paths and URLs are not allowed).")
    quoted = " ".join(shlex.quote(name) for name in packages)
    if language in ("javascript", "typescript"):
        return f"npm install --no-audit --no-fund {quoted}"
    return f"pip install --disable-pip-version-check --no-input {quoted}"


def mime_bundle(result: E2BResult) -> dict[str, str]:
    """An E2B Result as a MIME bundle; JSON payloads are serialised, other formats kept as is."""
    bundle: dict[str, str] = {}
    for field_name, mime in RESULT_MIME_TYPES.items():
        value = getattr(result, field_name, None)
        if value is None or value == "":
            continue
        bundle[mime] = value if isinstance(value, str) else json.dumps(value)
    return bundle


def scrub(text: str, config: E2BConfig) -> str:
    """`text` with the API key removed, for anything that may reach a log or a page."""
    return text.replace(config.api_key, "[E2B_API_KEY]") if config.api_key else text


def _is_broken_stream(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))


def translate_error(exc: BaseException, config: E2BConfig, *, doing: str) -> SandboxError:
    """The SandboxError for an SDK or network failure, with a message fit for the page."""
    message = scrub(str(exc), config)
    log.warning("E2B: could not %s: %s: %s", doing, type(exc).__name__, message)
    if isinstance(exc, SandboxError):
        return exc
    if isinstance(exc, AuthenticationException):
        return SandboxUnavailable("E2B API key rejected: check E2B_API_KEY (E2B answered 401 Unauthorized).")
    if isinstance(exc, RateLimitException):
        return SandboxUnavailable("E2B rate limit reached, try again in a moment.")
    if isinstance(exc, ServiceBusyException):
        return SandboxUnavailable("E2B is temporarily unavailable (503), try again in a moment.")
    if isinstance(exc, (SandboxNotRunningException, NotFoundException)) or any(
        sign in message for sign in ("was not found", "sandbox was killed")
    ):
        return SandboxGone("The E2B sandbox is gone (it timed out or was stopped); its variables and files are lost.")
    if isinstance(exc, TimeoutException):
        return SandboxUnavailable(f"E2B did not answer in time, so could not {doing}; try again in a moment.")
    if isinstance(exc, (httpx.TransportError, ConnectionError, OSError)):
        return SandboxUnavailable(f"E2B could not be reached (network error), so could not {doing}.")
    if isinstance(exc, SandboxException):
        status = getattr(exc, "status_code", None) or _leading_status(message)
        if status is not None and status >= 500:
            return SandboxUnavailable(f"E2B had an internal error (HTTP {status}), so could not {doing}; try again later.")
        if status is not None:
            return SandboxError(f"E2B refused to {doing} (HTTP {status}).")
    return SandboxError(f"Could not {doing} on E2B ({type(exc).__name__}).")


def _leading_status(message: str) -> int | None:
    match = re.match(r"^(\d{3})\b", message)
    return int(match.group(1)) if match else None


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


__all__ = ["E2BBackend", "E2BConfig", "E2BSandbox", "install_command", "workspace_path"]
