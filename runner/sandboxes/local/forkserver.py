"""Python kernels forked from a template process (kernel_files/zygote.py), not started afresh.

One template per server process, in a bwrap of its own (jail.bwrap_argv(template=True)): it has
imported ipykernel, numpy, pandas and matplotlib, and forks a child per request. The server sends
it, over a unix SOCK_SEQPACKET socket, the child's own socket, its stderr pipe and detached
copies (open_tree) of the sandbox's workspace and control-dir mounts; the child reports its pid,
the server writes that pid into the sandbox's cgroup, and only then does the child make its
namespaces and start the kernel (zygote.py says how). The template is replaced when it dies and
when the kernels' venv changes (`venv_identity`); a retired template's kernels keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from django.conf import settings

from runner.sandboxes.local import jail, mounts
from runner.sandboxes.local.cgroups import Cgroup
from runner.sandboxes.local.limits import Isolation, Limits

log = logging.getLogger(__name__)

TEMPLATE_START_TIMEOUT_S = 120.0  # the first start builds matplotlib's font cache
CHILD_TIMEOUT_S = 30.0


class ForkFailed(Exception):
    """No kernel could be forked (the template would not start, or died twice)."""


class _TemplateGone(Exception):
    pass


def venv_identity(kenv: Path) -> tuple[int, ...]:
    """What changes when bin/setup rebuilds or adds to the kernels' venv: the identity and mtime
    of the venv, its bin/ and its site-packages dirs."""
    parts: list[int] = []
    for path in [kenv, kenv / "bin", *sorted(kenv.glob("lib/python*/site-packages"))]:
        try:
            info = os.stat(path)
        except OSError:
            parts += [0, 0, 0]
            continue
        parts += [info.st_dev, info.st_ino, info.st_mtime_ns]
    return tuple(parts)


class ForkedProcess:
    """A forked kernel's outermost process (not our child): Popen's poll/wait/kill over a pidfd;
    the exit status comes over its socket (as bwrap's: 128+N for signal N)."""

    def __init__(self, pid: int, pidfd: int, sock: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._sock = sock
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
                self._finish()
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("forked kernel", timeout or 0)
            self.poll()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        with self._lock:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _finish(self) -> None:
        code = -signal.SIGKILL  # killed before it could say
        with contextlib.suppress(OSError):
            said = self._sock.recv(4096, socket.MSG_DONTWAIT)
            if said.startswith(b"exit "):
                code = int(said[5:])
            elif said.startswith(b"failed"):
                code = 1
        self.returncode = code
        self._sock.close()
        os.close(self._pidfd)


class _Template:
    """One template process and the server's end of its socket."""

    def __init__(self, popen: subprocess.Popen[bytes], control: socket.socket, identity: tuple[int, ...],
                 stderr: Any) -> None:
        self.popen = popen
        self.control = control
        self.identity = identity
        self.stderr = stderr
        self.send_lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def said(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(0)
            return str(self.stderr.read()[-2000:].decode(errors="replace")).strip()
        return ""

    def retire(self, *, kill: bool) -> None:
        """Close our end (it then exits; its kernels keep running); `kill`: kill it now."""
        with contextlib.suppress(OSError):
            self.control.close()
        if kill and self.alive():
            self.popen.kill()

    def send(self, request: dict[str, Any], fds: list[int]) -> None:
        try:
            with self.send_lock:
                socket.send_fds(self.control, [json.dumps(request).encode()], fds)
        except OSError as exc:
            raise _TemplateGone(f"the template did not take the request ({exc})") from None


class ForkServer:
    """Forks Python kernels from this process's template (thread-safe)."""

    def __init__(self, isolation: Isolation, *, kfiles: Path, kenv: Path, spawn: Any) -> None:
        self.isolation = isolation
        self.kfiles = kfiles
        self.kenv = kenv
        self._spawn = spawn  # runs a callable in the kernels' spawner thread (bwrap --die-with-parent)
        self._template: _Template | None = None
        self._retired: list[_Template] = []
        self._lock = threading.Lock()  # event loops come and go (tests, async_to_sync): not asyncio's

    @property
    def template_pid(self) -> int | None:
        t = self._template
        return t.pid if t is not None and t.alive() else None

    async def fork(self, *, workspace: Path, control: Path, cgroup: Cgroup | None, limits: Limits,
                   stderr_fd: int, argv: list[str]) -> ForkedProcess:
        """A new kernel process (in `cgroup` before it runs anything of its own). Retried once on
        a new template if the template dies meanwhile; raises ForkFailed otherwise."""
        request = {
            "argv": argv,
            "tmpfs_bytes": limits.tmpfs_mb * 1024 * 1024,
            "fsize": limits.workspace_quota_mb * 1024 * 1024,
            "data": 0 if cgroup is not None else limits.memory_mb * 2 * 1024 * 1024,
        }
        mount_fds = [mounts.detached_clone(workspace), mounts.detached_clone(control)]
        try:
            problem = ""
            for _attempt in range(2):
                template = await self._current()
                try:
                    return await self._fork_once(template, request, [stderr_fd, *mount_fds], cgroup)
                except _TemplateGone as exc:
                    problem = str(exc)
                    log.warning("the Python kernels' template %s died while forking (%s); starting another",
                                template.pid, problem)
                    with self._lock:
                        if self._template is template:
                            self._template = None
                    template.retire(kill=True)
                    await asyncio.to_thread(_reap, template)
            raise ForkFailed(f"the Python kernels' template died twice while forking: {problem}")
        finally:
            for fd in mount_fds:
                os.close(fd)

    async def _fork_once(self, template: _Template, request: dict[str, Any], fds: list[int],
                         cgroup: Cgroup | None) -> ForkedProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            try:
                template.send(request, [theirs.fileno(), *fds])
            finally:
                theirs.close()  # the template's copy (then the child's) is the only one left
            pid = await asyncio.to_thread(_receive_pid, ours)
            pidfd = os.pidfd_open(pid)
            if not _descends_from(pid, template.pid):
                # Never write a pid the template did not fork into a cgroup (0 would move this server).
                os.close(pidfd)
                raise _TemplateGone(f"the child's pid {pid} is not the template's")
        except BaseException:
            ours.close()
            raise
        process = ForkedProcess(pid, pidfd, ours)
        try:
            for procs in cgroup.procs_files if cgroup is not None else []:
                with open(procs, "w") as f:
                    f.write(str(pid))
            ours.send(b"go")
        except BaseException:
            process.kill()
            await asyncio.to_thread(process.wait, 5)
            raise
        return process

    async def _current(self) -> _Template:
        await asyncio.to_thread(self._lock.acquire)
        try:
            template = self._template
            identity = venv_identity(Path(settings.SANDBOX_KERNEL_ENV))
            if template is not None and (not template.alive() or template.identity != identity):
                why = "it exited" if not template.alive() else "the kernels' venv changed"
                log.info("replacing the Python kernels' template %s: %s", template.pid, why)
                template.retire(kill=not template.alive())
                self._retired.append(template)
                self._template = template = None
            self._retired = [t for t in self._retired if t.alive()]
            if template is None:
                template = await self._start(identity)
                self._template = template
            return template
        finally:
            self._lock.release()

    async def _start(self, identity: tuple[int, ...]) -> _Template:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stderr = tempfile.TemporaryFile()
        try:
            argv = jail.bwrap_argv(
                self.isolation, workspace=None, control=None, kfiles=self.kfiles, kenv=self.kenv,
                command=[f"{jail.VENV}/bin/python", "-I", f"{jail.SANDPIT}/zygote.py", str(theirs.fileno())],
                env=jail.sandbox_env("python"), limits=Limits.from_settings(), cgroup=None, template=True,
            )
            with jail.hidden_options(argv) as (argv, fds):
                popen = await self._spawn(lambda: subprocess.Popen(
                    argv, env=jail.OUTER_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                    start_new_session=True, close_fds=True, pass_fds=(*fds, theirs.fileno()), cwd="/"))
        except BaseException:
            ours.close()
            stderr.close()
            raise
        finally:
            theirs.close()
        template = _Template(popen, ours, identity, stderr)
        ours.settimeout(TEMPLATE_START_TIMEOUT_S)
        try:
            said = await asyncio.to_thread(ours.recv, 4096)
        except OSError as exc:
            said = f"no answer ({exc})".encode()
        ours.settimeout(None)
        if said != b"ready":
            template.retire(kill=True)
            await asyncio.to_thread(_reap, template)
            raise ForkFailed(f"the Python kernels' template did not start: {said.decode(errors='replace') or 'it exited'}"
                             f"; it said: {template.said() or '(nothing)'}")
        log.info("the Python kernels' template is ready (pid %s)", popen.pid)
        return template

    def close(self) -> None:
        """Retire every template (blocking); their kernels are killed by their owners."""
        for template in [t for t in [self._template, *self._retired] if t is not None]:
            template.retire(kill=True)
            _reap(template)
        self._template = None
        self._retired = []


def _receive_pid(sock: socket.socket) -> int:
    """The forked child's pid in this process's pid namespace (from its SCM_CREDENTIALS)."""
    sock.settimeout(CHILD_TIMEOUT_S)
    try:
        message, ancillary, _flags, _addr = sock.recvmsg(16, socket.CMSG_SPACE(12))
    except TimeoutError:
        raise _TemplateGone(f"no child within {CHILD_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise _TemplateGone(str(exc)) from None
    finally:
        sock.settimeout(None)
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and message == b"pid":
            pid, _uid, _gid = struct.unpack("3i", data[:12])
            return int(pid)
    raise _TemplateGone("the template closed the request unanswered" if not message else f"it said {message!r}")


def _descends_from(pid: int, ancestor: int, depth: int = 4) -> bool:
    """Whether `ancestor` is among the first `depth` parents of `pid` (from /proc)."""
    for _ in range(depth):
        if pid <= 1:
            return False
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def _reap(template: _Template) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        template.popen.wait(timeout=5)
    with contextlib.suppress(OSError):
        template.stderr.close()
