"""Facts about processes from /proc: identity (pid + start time), boot id, trees; signalling."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def process_start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot ("" if it doesn't exist): pid + this = identity."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def pid_namespace() -> str:
    """This process's pid namespace inode: pids mean something only within one namespace."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return "0"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_tree(root_pid: int, *, with_zombies: bool = True) -> list[tuple[int, str]]:
    """(pid, comm) of every descendant of `root_pid`, parents before children."""
    children: dict[int, list[tuple[int, str]]] = {}
    zombies: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        head, _, tail = stat.rpartition(")")
        comm = head.partition("(")[2]
        fields = tail.split()
        try:
            ppid = int(fields[1])
        except (IndexError, ValueError):
            continue
        if fields[0] == "Z":
            zombies.add(int(name))
        children.setdefault(ppid, []).append((int(name), comm))
    found: list[tuple[int, str]] = []
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    if not with_zombies:
        found = [(pid, comm) for pid, comm in found if pid not in zombies]
    return found


def signal_processes(pids: list[int], signum: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
