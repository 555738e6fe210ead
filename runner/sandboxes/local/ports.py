"""Reaching a TCP port inside a local sandbox from the host (E2B's `get_host`).

Each confined process (a command, a kernel) is a bwrap with a network namespace of its own that
has only loopback. To reach `127.0.0.1:<port>` in it, a short-lived thread of ours joins that
namespace, makes a socket there and leaves; the socket stays bound to the sandbox's namespace.
The namespace is taken from a pidfd of the one child of a bwrap we started (checked, once the
pidfd pins it, to still be that child and in the sandbox's cgroup, so a reused pid can't lend us
another sandbox's namespace), and refused when it is our own. Nothing of the sandbox's is read as a path; nothing else runs in that thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import threading
from collections.abc import Iterable

from runner.sandboxes.base import PortClosed

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT_S = 2.0
_libc = ctypes.CDLL(None, use_errno=True)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(part) for part in f.read().split()]
    except (OSError, ValueError):
        return []


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _socket_in(pidfd: int, family: int) -> socket.socket | None:
    """A new TCP socket in the network namespace of the process behind `pidfd` (never our own), made
    by a thread of its own that returns to our namespace before it ends."""
    made: list[socket.socket] = []

    def work() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            home = os.fstat(own).st_ino
            _setns(pidfd)
            try:
                if os.stat("/proc/thread-self/ns/net").st_ino != home:
                    made.append(socket.socket(family, socket.SOCK_STREAM))
            finally:
                _setns(own)
        except OSError:
            pass  # it ended meanwhile, or we may not join it: no socket
        finally:
            os.close(own)

    thread = threading.Thread(target=work, name="sandbox-port", daemon=True)
    thread.start()
    thread.join()
    return made[0] if made else None


def _ours(pidfd: int, pid: int, outer_pid: int, procs_file: str | None) -> bool:
    """The process pinned by `pidfd` is `pid`, a child of `outer_pid` and (with `procs_file`, the
    sandbox cgroup's cgroup.procs, which only root writes) in the sandbox's cgroup: checked after the
    pin, then the pin checked to be still alive, so a pid reused meanwhile is never taken for it."""
    if pid not in _children(outer_pid):
        return False
    if procs_file is not None:
        try:
            with open(procs_file, "rb") as f:
                if str(pid).encode() not in f.read().split():
                    return False
        except OSError:
            return False
    return not select.select([pidfd], [], [], 0)[0]  # a pidfd reads ready once its process exited


def _connect_in(outer_pid: int, port: int, procs_file: str | None) -> socket.socket | None:
    """A socket connected to loopback:`port` in the sandbox of the bwrap `outer_pid`, or None."""
    for child in _children(outer_pid):
        try:
            pidfd = os.pidfd_open(child)
        except OSError:
            continue
        try:
            if not _ours(pidfd, child, outer_pid, procs_file):
                continue
            for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                sock = _socket_in(pidfd, family)
                if sock is None:
                    return None
                sock.settimeout(CONNECT_TIMEOUT_S)
                try:
                    sock.connect((address, port))
                except OSError as exc:
                    sock.close()
                    if exc.errno not in (errno.ECONNREFUSED, errno.EADDRNOTAVAIL, errno.ENETUNREACH, errno.EAFNOSUPPORT):
                        return None
                    continue
                sock.setblocking(False)
                return sock
        finally:
            os.close(pidfd)
    return None


def connect(outer_pids: Iterable[int], port: int, procs_file: str | None) -> socket.socket:
    """A non-blocking socket connected to `port` inside the first of the sandbox's confined
    processes (bwrap pids we started; their sandbox's cgroup.procs, if it has a cgroup) where
    something listens on it; PortClosed when none does. Blocking: call it in a thread."""
    if not 1 <= port <= 65535:
        raise PortClosed(f"{port} is not a TCP port")
    for pid in list(outer_pids):
        sock = _connect_in(pid, port, procs_file)
        if sock is not None:
            return sock
    raise PortClosed(f"nothing in the sandbox listens on port {port}")
