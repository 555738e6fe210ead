"""The runs this process owns, and each session's line of runs (one active run per session).

A `Run` holds what can't live in the row (the task, the sandbox, the cancel flag). A session's
line is a chain of futures: each run waits for the one before it in this process; runs owned by
other processes are waited for through the database (lifecycle.py).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from runner import events
from runner.events import ErrorCode
from runner.models import ChatSession, Execution
from runner.sandboxes.base import Sandbox, Terminal

ACTIVE = Execution.ACTIVE


class RunRejected(Exception):
    """A run that won't start: `code` is the protocol's error code, `message` is for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


@dataclass(eq=False)
class Command:
    """A run that is a command (the E2B API's `commands.run`): `argv` in the sandbox at `cwd` with
    `envs` added, for at most `timeout_s`. The run fills in how it ended, for the caller."""

    argv: list[str]
    cwd: str
    envs: dict[str, str]
    timeout_s: float
    exit_code: int | None = None  # negative: killed by that signal; None: it never exited
    error: str = ""  # why it couldn't start (a bad cwd or variable name)
    stdin: asyncio.Queue[bytes | None] | None = None  # its stdin, fed as it runs (None on it: EOF); None: /dev/null
    terminal: Terminal | None = None  # set: it runs under this pty (E2B's sandbox.pty), all output stdout


@dataclass(eq=False)
class Run:
    """A run this process owns: the handles that can't live in the row."""

    execution_id: int
    session: ChatSession
    group: str
    code: str
    language: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sandbox: Sandbox | None = None  # set while the code runs
    task: asyncio.Task[None] | None = None
    tail: asyncio.Future[None] | None = None  # resolves when this run is done and the next may go
    pending_input: PendingInput | None = None  # set while its code waits in input()
    starting: events.StartingFrame | None = None  # set while it waits for its sandbox
    command: Command | None = None  # set when the run is a command, not code for a kernel
    prelude: str = ""  # run before `code` in the same cell, never stored (the E2B API's envs and cwd)
    kernel: str = ""  # a kernel of the language's of its own (an E2B API context), "" the language's one
    stdin: bool = True  # input() asks the page for a line; False (API runs, as E2B): it raises at once

    @property
    def cell(self) -> str:
        """What the kernel runs: the prelude, then the code."""
        return self.prelude + self.code


@dataclass
class PendingInput:
    """A run's input() waiting for its line: the frame to show (again, to a socket that reconnects)."""

    reply: asyncio.Future[str]
    frame: events.InputRequestFrame


# Process-local registries: the runs this process owns, and per session the future that
# resolves when the last run in line here is done (each run waits for the one before it).
runs_here: dict[int, Run] = {}
_tails: dict[uuid.UUID, asyncio.Future[None]] = {}


def take_turn(session_id: uuid.UUID) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
    """Join the session's line, synchronously, so the order is the order of calls.
    Returns (the future of the run ahead, or None when nothing is ahead; our own future)."""
    ahead = _tails.get(session_id)
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _tails[session_id] = mine
    return (ahead if ahead is not None and not ahead.done() else None), mine


def pass_turn(session_id: uuid.UUID, ahead: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
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


def later_run_waits(run: Run) -> bool:
    """Whether a run that came after `run` waits in its session's line here."""
    return _tails.get(run.session.id) not in (None, run.tail)


def discard_result(future: asyncio.Future[Any]) -> None:
    """A done-callback for a future nobody awaits: retrieve its exception so it isn't logged."""
    if not future.cancelled():
        future.exception()


def execution_input_reply_local(*, execution_id: int, value: str) -> bool:
    """Give a run this process owns the line its input() waits for; False if it isn't waiting."""
    run = runs_here.get(execution_id)
    pending = run.pending_input if run is not None else None
    if pending is None or pending.reply.done():
        return False
    pending.reply.set_result(value)
    return True


def execution_inputs_pending(*, session_id: uuid.UUID) -> list[events.InputRequestFrame]:
    """The input requests of this session's runs here that still wait (for a socket that just joined)."""
    return [
        run.pending_input.frame
        for run in runs_here.values()
        if run.session.id == session_id and run.pending_input is not None and not run.pending_input.reply.done()
    ]


def execution_starting_pending(*, session_id: uuid.UUID) -> list[events.StartingFrame]:
    """The `execution.starting` frames of this session's runs here that still wait for a sandbox
    (for a socket that just joined), with their waits brought up to date."""
    frames = []
    for run in runs_here.values():
        if run.session.id == session_id and run.starting is not None:
            since = datetime.fromisoformat(run.starting["since"])
            frames.append({**run.starting, "waited_ms": max(0, int((timezone.now() - since).total_seconds() * 1000))})
    return frames  # type: ignore[return-value]
