"""The processes an API sandbox runs (envd's process table): every command started through
Process/Start, foreground or background alike (the SDK's `background=True` is client-side: envd
sees the same Start), from its start until its stream ends. Process/List, Connect, SendSignal,
SendInput and CloseStdin find them here, by pid or by tag.

A pid is the sandbox's own number for its process. Each Sandpit command runs in a pid namespace
of its own (where it is pid 2), so the number envd would show has no meaning across commands:
pids are handed out per sandbox from FIRST_PID up, never reused while the sandbox lives, and so
never one that a later command's `kill -0 <pid>` would find in its own namespace.

The table is this server process's (the run and its stdin pipe live here too). A sandbox has at
most SANDBOX_PROCESSES_MAX processes at once; Start past it is refused (resource_exhausted).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

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
    stdin: asyncio.Queue[bytes | None] | None  # None: started without stdin (it reads /dev/null)
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
             stdin: bool) -> Process:
    """A new process in `sandbox_id`'s table; TooManyProcesses past SANDBOX_PROCESSES_MAX."""
    table = _tables.setdefault(sandbox_id, {})
    most = settings.SANDBOX_PROCESSES_MAX
    if len(table) >= most:
        raise TooManyProcesses(f"this sandbox already runs {most} processes, the most it may (SANDBOX_PROCESSES_MAX); "
                               "kill one or wait for one to end")
    pid = _last_pid[sandbox_id] = _last_pid.get(sandbox_id, FIRST_PID - 1) + 1
    process = table[pid] = Process(pid=pid, tag=tag, cmd=cmd, args=args, envs=envs, cwd=cwd,
                                   stdin=asyncio.Queue() if stdin else None)
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
