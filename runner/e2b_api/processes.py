"""The processes an API sandbox runs (envd's process table): every command started through
Process/Start, foreground or background alike (the SDK's `background=True` is client-side: envd
sees the same Start), from its start until its stream ends. Process/List, Connect, SendSignal,
SendInput, CloseStdin and Update find them here, by pid or by tag. A pty (`sandbox.pty`) is one
of them too, with its Terminal.

A pid is the sandbox's own number for its process. Each Sandpit command runs in a pid namespace
of its own (where it is pid 2), so the number envd would show has no meaning across commands:
pids are handed out per sandbox from FIRST_PID up, never reused while the sandbox lives, and so
never one that a later command's `kill -0 <pid>` would find in its own namespace.

The table is this server process's (the run and its stdin pipe live here too). A sandbox has at
most SANDBOX_PROCESSES_MAX processes at once; Start past it is refused (resource_exhausted).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from runner.e2b_api.wire import rpc_error
from runner.sandboxes.base import TERMINAL_SIZE_MAX, Terminal

FIRST_PID = 1000


class TooManyProcesses(Exception):
    pass


@dataclass(eq=False)
class Process:
    pid: int
    tag: str | None
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str
    stdin: asyncio.Queue[bytes | None] | None  # None: started without stdin (it reads /dev/null), or a pty
    terminal: Terminal | None = None  # set for a pty (sandbox.pty): its input and size
    execution_id: int = 0  # set once its run is started
    # Connect streams following it: each gets the Start stream's envelopes (True with the last),
    # or None when it ended without a last one sent (its Start stream's client went away).
    followers: set[asyncio.Queue[tuple[bytes, bool] | None]] = field(default_factory=set)

    def info(self) -> dict[str, Any]:
        """envd's ProcessInfo (proto JSON)."""
        config: dict[str, Any] = {"cmd": self.cmd, "args": self.args, "envs": self.envs, "cwd": self.cwd}
        out: dict[str, Any] = {"config": config, "pid": self.pid}
        if self.tag is not None:
            out["tag"] = self.tag
        return out

    def publish(self, data: bytes, last: bool = False) -> None:
        for queue in self.followers:
            queue.put_nowait((data, last))


_tables: dict[str, dict[int, Process]] = {}
_last_pid: dict[str, int] = {}  # kept while the server runs (an int a sandbox), so no pid comes twice


def register(sandbox_id: str, *, tag: str | None, cmd: str, args: list[str], envs: dict[str, str], cwd: str,
             stdin: bool, terminal: Terminal | None = None) -> Process:
    """A new process in `sandbox_id`'s table; TooManyProcesses past SANDBOX_PROCESSES_MAX."""
    table = _tables.setdefault(sandbox_id, {})
    most = settings.SANDBOX_PROCESSES_MAX
    if len(table) >= most:
        raise TooManyProcesses(f"this sandbox already runs {most} processes, the most it may (SANDBOX_PROCESSES_MAX); "
                               "kill one or wait for one to end")
    pid = _last_pid[sandbox_id] = _last_pid.get(sandbox_id, FIRST_PID - 1) + 1
    process = table[pid] = Process(pid=pid, tag=tag, cmd=cmd, args=args, envs=envs, cwd=cwd,
                                   stdin=asyncio.Queue() if stdin and terminal is None else None, terminal=terminal)
    return process


def unregister(sandbox_id: str, process: Process) -> None:
    """`process` has ended: out of the table; its followers get their end."""
    table = _tables.get(sandbox_id, {})
    if table.get(process.pid) is process:
        del table[process.pid]
    for queue in process.followers:
        queue.put_nowait(None)
    process.followers.clear()
    if process.stdin is not None:
        process.stdin.put_nowait(None)
    if process.terminal is not None:
        with contextlib.suppress(asyncio.QueueFull):  # a full queue's reader is gone with its run
            process.terminal.input.put_nowait(None)


def listed(sandbox_id: str) -> list[Process]:
    return list(_tables.get(sandbox_id, {}).values())


def find(sandbox_id: str, selector: dict[str, Any]) -> Process | None:
    """The process a ProcessSelector (`{"pid": n}` or `{"tag": "..."}`) names, None when none."""
    table = _tables.get(sandbox_id, {})
    if "pid" in selector:
        try:
            return table.get(int(selector["pid"]))
        except (TypeError, ValueError):
            return None
    if "tag" in selector:
        return next((p for p in table.values() if p.tag == str(selector["tag"])), None)
    return None


# The most one SendInput may type at a pty (a pty's queue holds TERMINAL_INPUT_CHUNKS of them).
PTY_INPUT_MAX_BYTES = 256 * 1024
DEFAULT_SIZE = (80, 24)


def terminal_size(pty: Any) -> tuple[int, int]:
    """(cols, rows) of envd's PTY message (`{"size": {"cols": c, "rows": r}}`; no size: 80x24);
    invalid_argument for anything else."""
    if not isinstance(pty, dict) or not isinstance(pty.get("size", {}), dict):
        raise rpc_error(400, "invalid_argument", "pty must be a PTY message: {\"size\": {\"cols\": C, \"rows\": R}}")
    size = pty.get("size")
    if not size:
        return DEFAULT_SIZE
    cols, rows = size.get("cols"), size.get("rows")
    for name, value in (("cols", cols), ("rows", rows)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= TERMINAL_SIZE_MAX:
            raise rpc_error(400, "invalid_argument", f"pty size {name} must be a whole number from 1 to {TERMINAL_SIZE_MAX}")
    return cols, rows


def terminal_input(process: Process, data: bytes) -> None:
    """Type `data` at `process`'s pty; a clear error when it has none, for too much at once, or
    when its input isn't being read."""
    if process.terminal is None:
        raise rpc_error(412, "failed_precondition", f"process with pid {process.pid} has no pty (it was started "
                        "without one): send its input as stdin")
    if len(data) > PTY_INPUT_MAX_BYTES:
        raise rpc_error(400, "invalid_argument", f"the input is {len(data)} bytes; a pty takes at most "
                        f"{PTY_INPUT_MAX_BYTES} bytes at a time (send it in parts, or write a file)")
    try:
        process.terminal.input.put_nowait(data)
    except asyncio.QueueFull:
        raise rpc_error(429, "resource_exhausted", f"the pty of process {process.pid} isn't reading its input "
                        "(too much is waiting): try again once it has read some") from None
