"""The Sandbox Protocol: the one interface between Sandpit and any place that runs code.

Everything above this module is backend-agnostic. A backend is one module in this package
(`local`, `e2b`) exposing a class that satisfies `Backend`, whose sandboxes satisfy `Sandbox`.

Contract, for every backend:
- `Backend.create()` returns a live sandbox or raises `SandboxUnavailable` (nothing can run:
  degraded mode, with a reason fit to show a user) or `SandboxError`.
- `Backend.connect(sandbox_id)` re-attaches to a sandbox made earlier (perhaps by another process)
  or raises `SandboxGone` when its state is lost.
- `Sandbox.run()` delivers events to `on_event` in kernel order, never raises for user-code
  errors (those are `Error` events and status "error"), and returns an `Outcome`:
  "ok", "error" (the code raised), "timeout" (the backend interrupted it after `timeout_s`;
  variables survive), "interrupted" (`interrupt()` was called; variables survive) or "gone"
  (the sandbox died; an event says why, and the next `run` starts fresh). With `on_input`, code
  that asks for input (Python's `input()`) waits for it; without it, or on a backend that can't ask
  (E2B), `input()` raises an error that says so. The wait counts toward `timeout_s`.
  `kernel` names a kernel of the language of its own (an E2B API code context), with its own
  variables; "" is the language's one kernel. A backend that has one kernel per language runs
  every name in it (the E2B backend does).
- File paths are relative to the sandbox's workspace (`/home/user`); anything that would leave
  it raises `ValueError` with a message fit to show a user (`FileTooLarge`, a ValueError, for a
  file over the size limit or a workspace over its quota), a missing file `FileNotFoundError`.
- `Sandbox.usage()` says what the sandbox uses now (CPU, memory; None where unknown) and never
  raises; the admin's live view shows it.
- `Backend.workspace()` reaches a session's files without starting anything: the local backend's
  workspace lives on disk per session and outlives its sandbox; an E2B workspace lives only as
  long as its sandbox (None when none is live).
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, Union, runtime_checkable

# The languages the page offers (its picker, the websocket's runs).
PAGE_LANGUAGES: frozenset[str] = frozenset({"python", "javascript", "typescript", "bash"})
# Every language a sandbox may run: the page's, plus R for the E2B-compatible API only (E2B's
# code interpreter has an R kernel; a backend says which it has in `Backend.languages`).
LANGUAGES: frozenset[str] = PAGE_LANGUAGES | {"r"}


# --- events, delivered in kernel order -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stdout:
    text: str


@dataclass(frozen=True, slots=True)
class Stderr:
    text: str


@dataclass(frozen=True, slots=True)
class Result:
    """A rich result: `data` is a MIME bundle such as {"text/plain": "...", "image/png": "<base64>"}."""

    data: dict[str, str]
    is_main: bool = False


@dataclass(frozen=True, slots=True)
class Error:
    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutputLost:
    """Output the code produced that never reached the server: a message over the size the server
    accepts (`size_bytes` at least). It counts against the run's output cap like kept output."""

    size_bytes: int
    what: str


Event = Union[Stdout, Stderr, Result, Error, OutputLost]
OnEvent = Callable[[Event], Awaitable[None] | None]
# The code asked for a line of input (Python's input()/getpass()): (prompt, password) -> the line.
# Cancelled when the run ends (Stop, timeout). A backend that can't ask leaves input() raising.
OnInput = Callable[[str, bool], Awaitable[str]]

OutcomeStatus = Literal["ok", "error", "timeout", "interrupted", "gone"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus
    duration_ms: int


# A pty's size limits (a window size is two unsigned shorts).
TERMINAL_SIZE_MAX = 65535
# Chunks of input a pty may have waiting (what it hasn't read yet); more is refused.
TERMINAL_INPUT_CHUNKS = 256


@dataclass(eq=False)
class Terminal:
    """A pty a command runs under (E2B's `sandbox.pty`): its size, changed with `resize` while it
    runs; what is put on `input` is typed at it (None: nothing more). The backend running it sets
    `on_resize` to apply a new size, and `started` once it is up: its first output (a shell's
    prompt), its end, or its failure to start."""

    cols: int
    rows: int
    input: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(maxsize=TERMINAL_INPUT_CHUNKS))
    on_resize: Callable[[int, int], None] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        if self.on_resize is not None:
            self.on_resize(cols, rows)


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str
    # How code is isolated, e.g. "bwrap+cgroup-v1 uid=sandpit-sbx", "bwrap+userns+prlimit", "e2b", "none".
    isolation: str


@dataclass(frozen=True, slots=True)
class SandboxUsage:
    """What a sandbox uses now, for the admin's live view; None where the backend can't say.

    `cpu_percent` is of the sandbox's CPU allowance (100: all its vCPUs, or its whole CPU quota,
    busy), averaged since the previous reading (or over a short sample on the first); `memory_bytes` is what its processes hold (local: the cgroup's
    count, page cache included); `memory_limit_bytes` its limit."""

    cpu_percent: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None


# What a workspace entry is; only "file" can be read, only "dir" listed.
FileKind = Literal["file", "dir", "symlink", "fifo", "socket", "device"]


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    path: str
    is_dir: bool
    size: int
    modified: float = 0.0  # seconds since the epoch; 0 when the backend doesn't say
    kind: FileKind | None = None  # None: a file or folder, as `is_dir` says
    mode: int = 0  # st_mode from lstat (kind and permission bits); 0 when the backend doesn't say
    owner: str = ""  # the owner's and group's names inside the sandbox ("" when unknown)
    group: str = ""
    link: str | None = None  # a symlink's target as written (readlink), never followed
    entry_size: int | None = None  # lstat's st_size for any kind (a folder's too); None when unknown
    metadata: tuple[tuple[str, str], ...] = ()  # user metadata stored on the file (E2B's, as xattrs)

    @property
    def type(self) -> FileKind:
        return self.kind or ("dir" if self.is_dir else "file")


# --- errors the rest of the code may catch ------------------------------------------------------


class SandboxError(Exception):
    """Something went wrong talking to a sandbox; the message is fit to show a user."""


class SandboxUnavailable(SandboxError):
    """No sandbox can run code right now (degraded mode). `reason` says why, for the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PortClosed(SandboxError):
    """Nothing in the sandbox listens on the port asked for."""


class SandboxGone(SandboxError):
    """The sandbox and its state are lost; start a new one and tell the user."""


class FileTooLarge(ValueError):
    """A file over the size limit, or a write that would take the workspace over its quota."""


# --- the Protocol -------------------------------------------------------------------------------


@runtime_checkable
class Workspace(Protocol):
    """A session's files (paths relative to /home/user). Every Sandbox is one."""

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def read_file(self, path: str) -> bytes: ...

    async def list_files(self, path: str = ".") -> list[FileInfo]: ...

    async def delete_file(self, path: str) -> None:
        """Remove a file, or a folder with everything in it."""
        ...

    async def rename_file(self, path: str, to: str) -> None:
        """Move a file or folder; raises FileExistsError when `to` exists."""
        ...


@runtime_checkable
class Sandbox(Protocol):
    id: str

    async def run(
        self, code: str, *, language: str, on_event: OnEvent, timeout_s: float, on_input: OnInput | None = None,
        kernel: str = "",
    ) -> Outcome: ...

    async def interrupt(self) -> None: ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def read_file(self, path: str) -> bytes: ...

    async def list_files(self, path: str = ".") -> list[FileInfo]: ...

    async def delete_file(self, path: str) -> None: ...

    async def rename_file(self, path: str, to: str) -> None: ...

    async def install(
        self, packages: list[str], *, language: str, on_event: OnEvent, timeout_s: float
    ) -> Outcome: ...

    async def close(self) -> None: ...

    async def usage(self) -> SandboxUsage:
        """CPU and memory now (never raises: what can't be read is None)."""
        ...


@runtime_checkable
class Backend(Protocol):
    name: str
    languages: frozenset[str]

    async def create(self, *, owner_id: int, session_id: str) -> Sandbox: ...

    async def connect(self, sandbox_id: str) -> Sandbox: ...

    async def health(self) -> Health: ...

    async def workspace(self, *, session_id: str, sandbox_id: str) -> Workspace | None:
        """The session's files without starting a sandbox (`sandbox_id` is the session's, or "");
        None when they live only in a sandbox that is gone."""
        ...


# --- input every backend checks the same way ---------------------------------------------------

MAX_PACKAGES = 20
# A PyPI requirement: a name, optional extras, optional version constraints. No options, paths or URLs.
PIP_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._,-]{1,100}\])?"
    r"(?:(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]{1,50}(?:,(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]{1,50})*)?"
)
# An npm package: an optional @scope, a name, an optional version or range. No paths, URLs or options.
NPM_PACKAGE = re.compile(r"(?:@[a-z0-9][a-z0-9._~-]{0,100}/)?[a-z0-9][a-z0-9._~-]{0,100}(?:@[A-Za-z0-9.^~<>=*+-]{1,50})?")


def validate_packages(packages: list[str], *, language: str) -> list[str]:
    """The packages `install` may fetch for `language`, checked (npm names for JavaScript and
    TypeScript, PyPI requirements otherwise). Raises ValueError, fit to show a user, for an unknown
    language, no packages, too many, or anything that is not a plain package name."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; choose one of {sorted(LANGUAGES)}")
    if not isinstance(packages, list) or not packages:
        raise ValueError("name at least one package to install")
    if len(packages) > MAX_PACKAGES:
        raise ValueError(f"install at most {MAX_PACKAGES} packages at once")
    npm = language in ("javascript", "typescript")
    pattern, example = (NPM_PACKAGE, "'left-pad' or 'left-pad@1.3.0'") if npm else (PIP_REQUIREMENT, "'requests' or 'requests==2.32.3'")
    for package in packages:
        if not isinstance(package, str) or not pattern.fullmatch(package):
            raise ValueError(f"{package!r} is not a package name (options, paths and URLs are not allowed), e.g. {example}")
    return list(packages)


async def emit(on_event: OnEvent, event: Event) -> None:
    """Deliver one event to a callback that may be sync or async."""
    result = on_event(event)
    if result is not None:
        await result


# --- choosing a backend -------------------------------------------------------------------------

# Names map lazily to classes, so importing this module never imports an SDK or connects anywhere.
BACKENDS: dict[str, str] = {
    "local": "runner.sandboxes.local:LocalBackend",
    "e2b": "runner.sandboxes.e2b:E2BBackend",
}

_instances: dict[str, Backend] = {}


def backend_name_from_settings() -> str:
    from django.conf import settings

    name = settings.SANDBOX_BACKEND
    if name == "auto":
        return "e2b" if settings.E2B_API_KEY else "local"
    return name


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name` ("local" or "e2b"), or the one settings choose.

    One instance per name per process (backends hold process-local handles such as kernel
    processes). Raises `ValueError` for an unknown name.
    """
    name = name or backend_name_from_settings()
    if name not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {name!r}; choose one of {sorted(BACKENDS)}")
    if name not in _instances:
        module_name, class_name = BACKENDS[name].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        _instances[name] = cls()
    return _instances[name]
