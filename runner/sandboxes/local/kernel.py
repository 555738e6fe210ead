"""One Jupyter kernel in bwrap, spoken to over ZMQ ipc sockets in its control directory.

The client side uses plain (blocking-API) zmq sockets driven by the running event loop's reader
callbacks, plus a pidfd for the kernel process: no threads, no asyncio subprocess transport, so a
kernel can outlive the event loop that started it (tests, async_to_sync) and the run path stays
as short as a raw client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.session import Session
from zmq.utils.monitor import recv_monitor_message

from runner.sandboxes.base import Error, OnEvent, OnInput, OutputLost, Result, Stderr, Stdout, emit
from runner.sandboxes.local import jail, processes

log = logging.getLogger(__name__)

DELIMITER = b"<IDS|MSG>"
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
# A message bigger than this drops the connection instead of growing the server's memory.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Messages queued per socket in the server at most: with 64 KiB flushes, 16 MiB at worst.
RECEIVE_QUEUE = 256
# Messages read per pass before they are delivered.
DRAIN_BATCH = 16
START_TIMEOUT_S = 30.0
# Stopping a cell: the interrupt is re-sent if it went out before the cell started and no reply
# came RESEND_AFTER_S after it did, and (Python) every RESEND_EVERY_S while the cell still runs
# (an interrupt can be swallowed: by code that catches KeyboardInterrupt, or landing in a hook
# before the cell); processes the cell forked are killed every STRAYS_EVERY_S; with no reply after
# PROBE_AFTER_S a kernel_info probe is sent (and no more interrupts, which could cut it short), and
# a kernel that hasn't answered it PROBE_GRACE_S later is declared stuck.
RESEND_AFTER_S = 0.3
RESEND_EVERY_S = 0.6
STRAYS_EVERY_S = 0.2
PROBE_AFTER_S = 2.0
PROBE_GRACE_S = 3.0
# After execute_reply, how long to wait for the idle status that closes the output stream.
IDLE_GRACE_S = 2.0
# Deno's kernel sends a cell's console output (through a stdio task) and its value or displays
# (through an op on the JavaScript thread) on paths of their own, which can reach iopub after the
# cell's idle status, even after the next request is read (the output then carries that parent).
# So each cell is followed by a silent barrier cell that sends a marker down both paths: once both
# markers are in, everything the cell sent before them is too. The bound is for a kernel whose
# JavaScript thread never gets to the barrier (a timer the cell left spinning, say).
DENO_BARRIER_WAIT_S = 5.0
DENO_BARRIER_MIME = "application/x-sandpit-barrier"
# How much of a kernel's own stderr (its start-up errors, ipykernel's log) is kept for diagnosis.
STDERR_TAIL_BYTES = 4096


def _command(language: str) -> list[str]:
    # python -I: nothing from the workspace (PYTHONPATH's sitecustomize.py, say) runs as the
    # interpreter starts; launcher.py puts PYTHONPATH on sys.path once the socket dir is locked.
    conn = f"{jail.CONTROL}/kernel.json"
    if language == "python":
        return [
            f"{jail.VENV}/bin/python", "-I", f"{jail.SANDPIT}/launcher.py", "python", "-f", conn,
            f"--IPKernelApp.exec_files={jail.SANDPIT}/python_startup.py",
            # No history database, no output cache; Jupyter's coloured tracebacks (ANSI SGR codes: the
            # page renders them, the Markdown export strips them, the .ipynb export keeps them).
            "--HistoryManager.enabled=False", "--InteractiveShell.cache_size=0",
            "--InteractiveShell.colors=neutral", "--InlineBackend.close_figures=True",
        ]
    if language == "bash":
        return [f"{jail.VENV}/bin/python", "-I", f"{jail.SANDPIT}/launcher.py", "bash", "-f", conn]
    if language == "r":
        # IRkernel binds the ipc sockets itself. No ~/.Rprofile or ~/.Renviron (the workspace's):
        # nothing of the user's runs before the server has locked the socket dir (R_ENVIRON_USER
        # names a file that doesn't exist, see jail.sandbox_env).
        return [R_BIN, "--no-echo", "--no-restore", "--no-save", "--no-init-file",
                "-e", "IRkernel::main()", "--args", conn]
    # javascript and typescript: one deno kernel, its TCP sockets relayed to ipc inside.
    return [f"{jail.VENV}/bin/python", "-I", f"{jail.SANDPIT}/relay.py", conn, f"{jail.VENV}/bin/deno"]


# bwrap --die-with-parent fires when the *thread* that started it exits, so every kernel is
# started from this one long-lived thread, whichever thread's event loop asked for it.
SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandpit-spawner")

KERNEL_KIND = {"python": "python", "bash": "bash", "javascript": "deno", "typescript": "deno", "r": "r"}
# R and IRkernel come from Debian (r-base-core, r-cran-irkernel; bin/setup installs them).
R_BIN = "/usr/bin/R"
IRKERNEL_DIR = Path("/usr/lib/R/site-library/IRkernel")


def r_available() -> bool:
    """Whether this machine has R with IRkernel (the local backend offers "r" only then)."""
    return Path(R_BIN).exists() and IRKERNEL_DIR.is_dir()


class KernelDied(Exception):
    """The kernel process exited; `detail` says why, for the user."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Kernel:
    """A kernel process plus its client sockets. Not thread-safe; one run at a time."""

    def __init__(self, *, kind: str, control_dir: Path, argv_for: Callable[[list[str]], list[str]],
                 owner: tuple[int, int]) -> None:
        self.kind = kind
        self.owner = owner  # uid, gid the kernel runs as (its connection file is chowned to them)
        self.control_dir = control_dir
        self._argv_for = argv_for
        self.proc: subprocess.Popen[bytes] | None = None
        self.protected_pids: set[int] = set()
        self._sigint_pids: set[int] = set()
        self.session = Session(key=secrets.token_hex(32).encode(), signature_scheme="hmac-sha256",
                               username="sandpit")
        self.sockets: dict[str, zmq.Socket] = {}
        # Reports iopub's disconnects: ZMQ drops the connection on a message over MAX_MESSAGE_BYTES.
        self._iopub_monitor: zmq.Socket | None = None
        self._pidfd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._interrupt_requested = False
        self.stderr: StderrTail | None = None
        self.lock = asyncio.Lock()

    # --- life cycle -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, context: zmq.Context) -> None:
        """Start the kernel and return when it answers; raises KernelDied or TimeoutError.

        The control dir is new (see jail.make_control_dir). The kernel binds its sockets in its
        SOCKETS/ sub-dir, which the sandbox user owns until all of them exist; then it is locked
        (root's) and each socket checked, and only then does this (root) process connect: it never
        resolves a path that code in the sandbox could have swapped for a link.
        """
        conn = {
            "transport": "ipc", "ip": f"{jail.CONTROL}/{jail.SOCKETS}/k",
            "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
            "key": self.session.key.decode(), "signature_scheme": "hmac-sha256",
            "kernel_name": self.kind, "interrupt_mode": "message",
        }
        as_root = os.geteuid() == 0
        sockets_fd = jail.make_control_dir(self.control_dir, conn, self.owner if as_root else None)
        try:
            await self._spawn()
            await self._wait_for_sockets(sockets_fd)
            try:
                jail.lock_sockets(sockets_fd, self.owner[0], as_root=as_root)
            except jail.ControlTampered as exc:
                raise KernelDied(str(exc)) from None  # the run says "The <language> kernel could not start: ..."
        finally:
            os.close(sockets_fd)
        for name in CHANNELS:
            if name == "hb":
                continue
            kind = zmq.SUB if name == "iopub" else zmq.DEALER
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            sock.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
            sock.setsockopt(zmq.RECONNECT_IVL, 5)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                self._iopub_monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            else:
                sock.setsockopt(zmq.IDENTITY, self.session.bsession)
            sock.connect(self._endpoint(name))
            self.sockets[name] = sock
        await self._wait_ready()
        tree = processes.process_tree(self.proc.pid)
        self.protected_pids = {pid for pid, comm in tree if comm != "bwrap"}
        # IRkernel ignores interrupt_request: it stops a cell on SIGINT to R itself (not to bwrap).
        self._sigint_pids = {pid for pid, comm in tree if comm == "R"} if self.kind == "r" else set()

    async def _spawn(self) -> None:
        """Start the kernel's process tree (from SPAWNER), its stderr read into self.stderr."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            with jail.hidden_options(self._argv_for(_command(self.kind))) as (argv, fds):
                popen = functools.partial(
                    subprocess.Popen, argv, env=jail.OUTER_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=write_end, start_new_session=True, close_fds=True, pass_fds=fds, cwd="/",
                )
                self.proc = await asyncio.get_running_loop().run_in_executor(SPAWNER, popen)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.stderr = StderrTail(read_end, self.kind)
        self._pidfd = os.pidfd_open(self.proc.pid)

    async def _wait_for_sockets(self, sockets_fd: int) -> None:
        """Until every socket name exists in the (still unlocked) socket dir; looked at through
        its fd, never following a link. Raises KernelDied or TimeoutError."""
        deadline = time.monotonic() + START_TIMEOUT_S
        pause_s = 0.002
        while not jail.sockets_present(sockets_fd):
            if not self.alive:
                said = await asyncio.to_thread(self.stderr_tail, log_as="exited while starting", wait_s=1.0)
                raise KernelDied(f"the {self.kind} kernel exited while starting (status {self.proc.returncode})"
                                 f"{_quoted(said)}")
            if time.monotonic() > deadline:
                said = self.stderr_tail(log_as="did not start in time")
                raise TimeoutError(f"the {self.kind} kernel did not start within {START_TIMEOUT_S:.0f} s"
                                   f"{_quoted(said)}")
            await self._wait(pause_s)  # wakes early if the process exits
            pause_s = min(pause_s * 1.5, 0.02)
        self._unregister()  # the next _wait registers the ZMQ sockets too (made after this)

    async def _wait_ready(self) -> None:
        """kernel_info until both the reply and an iopub message arrive (iopub is subscribed)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        shell, iopub = self.sockets["shell"], self.sockets["iopub"]
        got_reply = got_iopub = False
        next_send = 0.0
        while not (got_reply and got_iopub):
            now = time.monotonic()
            if now > deadline:
                said = self.stderr_tail(log_as="did not start in time")
                raise TimeoutError(f"the {self.kind} kernel did not start within {START_TIMEOUT_S:.0f} s"
                                   f"{_quoted(said)}")
            if now >= next_send:
                self.session.send(shell, "kernel_info_request", {})
                next_send = now + 0.5
            for msg in self._drain(iopub):
                got_iopub = True
            for msg in self._drain(shell):
                if msg["msg_type"] == "kernel_info_reply":
                    got_reply = True
            if got_reply and got_iopub:
                break
            if not self.alive:
                said = await asyncio.to_thread(self.stderr_tail, log_as="exited while starting", wait_s=1.0)
                raise KernelDied(f"the {self.kind} kernel exited while starting (status {self.proc.returncode})"
                                 f"{_quoted(said)}")
            await self._wait(min(next_send, deadline) - time.monotonic())
        self._drain(self.sockets["control"])

    def stderr_tail(self, *, log_as: str = "", wait_s: float = 0.0) -> str:
        """The last STDERR_TAIL_BYTES the kernel wrote to its stderr (after it ends when wait_s > 0).

        With `log_as`, also logged as a warning (the kernel's environment is clean, so this holds
        nothing of the host's).
        """
        said = self.stderr.text(wait_s) if self.stderr is not None else ""
        if log_as:
            log.warning("the %s kernel %s; its stderr ended with:\n%s", self.kind, log_as, said.rstrip() or "(nothing)")
        return said

    def kill(self) -> None:
        """Close the client side and kill the kernel's processes (idempotent; blocks for a few ms)."""
        self.close_client()
        self.terminate()

    async def stop(self) -> None:
        """kill() without blocking the event loop."""
        self.close_client()
        await asyncio.to_thread(self.terminate)

    def close_client(self) -> None:
        """Stop watching and close the sockets (on the event loop's thread)."""
        self._unregister()
        if self._iopub_monitor is not None:
            self._iopub_monitor.close(linger=0)
            self._iopub_monitor = None
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.sockets.clear()
        self._wake()  # a run waiting on these sockets notices they are gone
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def terminate(self) -> None:
        """Kill every process of the kernel, innermost first, and reap bwrap (thread-safe)."""
        proc = self.proc
        if proc is None:
            jail.remove_control_dir(self.control_dir)
            return
        if proc.poll() is None:
            processes.signal_processes([pid for pid, _ in reversed(processes.process_tree(proc.pid))], signal.SIGKILL)
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        jail.remove_control_dir(self.control_dir)  # its HMAC key goes with it

    def kill_strays(self) -> None:
        """Kill processes user code started (not the kernel's own), e.g. a fork bomb's.

        The kernel's own processes are stopped meanwhile, so they can't fork more.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        tree = processes.process_tree(self.proc.pid, with_zombies=False)
        if all(comm == "bwrap" or pid in self.protected_pids for pid, comm in tree):
            return
        protected = [pid for pid, _ in tree if pid in self.protected_pids]
        processes.signal_processes(protected, signal.SIGSTOP)
        try:
            for _ in range(100):
                strays = [pid for pid, comm in processes.process_tree(self.proc.pid, with_zombies=False)
                          if comm != "bwrap" and pid not in self.protected_pids]
                if not strays:
                    return
                processes.signal_processes(strays, signal.SIGKILL)
        finally:
            processes.signal_processes(protected, signal.SIGCONT)

    # --- waiting without threads ----------------------------------------------------------

    def _register(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._unregister()
        self._loop = loop
        for sock in self.sockets.values():
            loop.add_reader(sock.getsockopt(zmq.FD), self._wake_socket, sock)
        if self._pidfd >= 0:
            loop.add_reader(self._pidfd, self._wake_exited)

    def _unregister(self) -> None:
        if self._loop is None or self._loop.is_closed():
            self._loop = None
            return
        for sock in self.sockets.values():
            try:
                self._loop.remove_reader(sock.getsockopt(zmq.FD))
            except (zmq.ZMQError, ValueError, RuntimeError):
                pass
        if self._pidfd >= 0:
            try:
                self._loop.remove_reader(self._pidfd)
            except (ValueError, RuntimeError):
                pass
        self._loop = None

    def _wake_socket(self, sock: zmq.Socket) -> None:
        # A zmq FD stays readable until ZMQ_EVENTS is read: without this, a message arriving
        # between runs (nobody waiting) left the loop polling that FD in a busy spin, a whole CPU
        # until the next run. Reading it re-arms the FD; `_wait` checks EVENTS itself after
        # arming its waiter, so a message pending now is still seen.
        try:
            sock.getsockopt(zmq.EVENTS)
        except zmq.ZMQError:
            pass
        self._wake()

    def _wake_exited(self) -> None:
        # A pidfd stays readable once the process has exited: stop watching it (else the same
        # busy spin); `_wait` checks `proc.poll()` itself after arming its waiter.
        if self._loop is not None and self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _deno_flush(self, msg_id: str, on_event: OnEvent) -> None:
        """Deliver the rest of Deno cell `msg_id`'s output: what its kernel sends after idle (see
        DENO_BARRIER_WAIT_S). Returns once both of the barrier's markers are in, or the barrier
        failed, or DENO_BARRIER_WAIT_S passed (late output then stays lost, as before)."""
        shell, iopub = self.sockets["shell"], self.sockets["iopub"]
        nonce = secrets.token_hex(8)
        marker_line = f"{DENO_BARRIER_MIME}:{nonce}\n"
        barrier = self.session.msg("execute_request", {
            "code": f'console.log("{marker_line[:-1]}"); await Deno.jupyter.broadcast("display_data", '
                    f'{{data: {{"{DENO_BARRIER_MIME}": "{nonce}"}}, metadata: {{}}, transient: {{}}}});',
            "silent": True, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": False,
        })
        barrier_id = barrier["header"]["msg_id"]
        self.session.send(shell, barrier)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DENO_BARRIER_WAIT_S
        streamed = broadcast = False
        while not (streamed and broadcast):
            for message in self._drain(iopub):
                parent_id = message["parent_header"].get("msg_id")
                if parent_id not in (msg_id, barrier_id):
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream" and parent_id == barrier_id and content.get("text", "").endswith(marker_line):
                    streamed = True
                    content = dict(content, text=content["text"][:-len(marker_line)])
                    if not content["text"]:
                        continue
                elif kind == "display_data" and content.get("data", {}).get(DENO_BARRIER_MIME) == nonce:
                    broadcast = True
                    continue
                elif kind == "error" and parent_id == barrier_id:
                    log.warning("the deno kernel's output barrier failed: %s: %s", content.get("ename"), content.get("evalue"))
                    return
                # Late output of the cell, under its own parent or (read after the barrier's request) the barrier's.
                event = _output_event(kind, content)
                if event is not None:
                    await emit(on_event, event)
            for message in self._drain(shell):
                if message["parent_header"].get("msg_id") == barrier_id and message["content"].get("status") != "ok":
                    log.warning("the deno kernel's output barrier did not run: %s", message["content"])
                    return
            if streamed and broadcast:
                return
            if not self.sockets or self._interrupt_requested or self.proc is None or self.proc.poll() is not None:
                return
            if loop.time() >= deadline:
                log.warning("the deno kernel's output barrier did not come back within %.0f s; later output of the "
                            "cell may be lost", DENO_BARRIER_WAIT_S)
                return
            await self._wait(min(deadline - loop.time(), 1.0))

    async def _wait(self, timeout_s: float) -> None:
        """Sleep until a socket may be readable, the process exits, interrupt() is called, or timeout."""
        self._register()
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        # zmq's FD is edge-triggered: check for pending messages after arming the waiter.
        if any(sock.getsockopt(zmq.EVENTS) & zmq.POLLIN for sock in self.sockets.values()):
            return
        if self.proc is not None and self.proc.poll() is not None:
            return
        handle = loop.call_later(max(timeout_s, 0.0), self._wake)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def _drain(self, sock: zmq.Socket, limit: int = DRAIN_BATCH) -> list[dict[str, Any]]:
        """Up to `limit` pending messages (bounded: the socket refills while we read)."""
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return messages
            message = self._decode(frames)
            if message is not None:
                messages.append(message)
        return messages

    def _iopub_disconnects(self) -> int:
        """How many times iopub's connection dropped since the last call (never blocks)."""
        monitor, count = self._iopub_monitor, 0
        while monitor is not None:
            try:
                recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.ZMQError:  # zmq.Again: nothing (more) to report
                break
            count += 1
        return count

    async def _report_lost_output(self, on_event: OnEvent) -> None:
        """A dropped iopub connection while the kernel lives means a message over
        MAX_MESSAGE_BYTES was thrown away: reconnect (ZMQ doesn't after that error) and say so."""
        if not self._iopub_disconnects() or self.proc is None or self.proc.poll() is not None:
            return
        iopub = self.sockets.get("iopub")
        if iopub is not None:
            endpoint = self._endpoint("iopub")
            with contextlib.suppress(zmq.ZMQError):
                iopub.disconnect(endpoint)
            iopub.connect(endpoint)
        await emit(on_event, OutputLost(MAX_MESSAGE_BYTES + 1, f"an output message over {MAX_MESSAGE_BYTES // 2**20} MiB "
                                        "(a huge display or plot, say) was too large to receive"))

    def _endpoint(self, channel: str) -> str:
        """The channel's socket, in the locked (root-owned, checked) sockets dir."""
        return f"ipc://{self.control_dir}/{jail.SOCKETS}/k-{CHANNELS.index(channel) + 1}"

    def _decode(self, frames: list[bytes]) -> dict[str, Any] | None:
        """A signed Jupyter message, or None for a bad one.

        Leaner than Session.deserialize (no date parsing, no metadata): this is the hot path of
        streaming output, and dates are never used.
        """
        try:
            parts = frames[frames.index(DELIMITER) + 1:]
            signature, header, parent, metadata, content = parts[:5]
        except ValueError:
            return None
        mac = self.session.auth.copy()
        for part in (header, parent, metadata, content):
            mac.update(part)
        if not hmac.compare_digest(mac.hexdigest().encode(), signature):
            return None
        try:
            head = json.loads(header)
            return {"msg_type": head["msg_type"], "header": head, "parent_header": json.loads(parent),
                    "content": json.loads(content)}
        except (ValueError, KeyError, TypeError):
            return None

    # --- running code -----------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop the current cell: the running execute() sends the interrupt (once; see there)."""
        self._interrupt_requested = True
        self._wake()

    def send_interrupt(self) -> None:
        """Send one interrupt_request now (message mode: SIGINT to the outer bwrap would kill it);
        R gets a SIGINT of its own instead."""
        if self._sigint_pids:
            if self.alive:  # R is inside bwrap's tree, which lives as long as the kernel does
                processes.signal_processes(sorted(self._sigint_pids), signal.SIGINT)
            return
        if "control" in self.sockets:
            self.session.send(self.sockets["control"], "interrupt_request", {})

    async def execute(
        self, code: str, on_event: OnEvent, timeout_s: float, *, silent: bool = False, on_input: OnInput | None = None
    ) -> str:
        """Run `code` (see _execute); an input request still waiting for `on_input` is cancelled at the end."""
        answers: set[asyncio.Future[None]] = set()
        try:
            return await self._execute(code, on_event, timeout_s, silent=silent, on_input=on_input, answers=answers)
        finally:
            for answer in answers:
                answer.cancel()
            if answers:  # let them unwind before the run's outcome is known
                await asyncio.wait(answers)

    async def _answer(self, on_input: OnInput, request: dict[str, Any]) -> None:
        """Ask `on_input` for the line the kernel's input_request wants, and send it back on stdin."""
        content = request["content"]
        value = await on_input(str(content.get("prompt", "")), bool(content.get("password", False)))
        if "stdin" in self.sockets:
            self.session.send(self.sockets["stdin"], "input_reply", {"value": value}, parent=request)

    async def _execute(
        self, code: str, on_event: OnEvent, timeout_s: float, *, silent: bool, on_input: OnInput | None,
        answers: set[asyncio.Future[None]],
    ) -> str:
        """Run `code`; deliver its output in order; return "ok", "error", "timeout" or "interrupted".

        To stop a cell (timeout, or interrupt() from another task) one interrupt is sent, plus one
        more if it went out before the kernel had started the cell (it would have been ignored).
        Never a stream of them: a second SIGINT landing while the kernel handles the first can lose
        the reply. If no reply comes, a kernel_info probe tells a kernel that lost the request (it
        answers: the outcome stands, variables kept) from a stuck one.

        Raises KernelDied when the kernel exits, or is stuck, mid-run.
        """
        if not self.sockets:
            raise KernelDied("the sandbox was closed")
        shell, iopub, control = self.sockets["shell"], self.sockets["iopub"], self.sockets["control"]
        stdin = self.sockets.get("stdin")
        if stdin is not None:
            self._drain(stdin)
        self._drain(iopub)
        self._drain(shell)
        self._iopub_disconnects()  # an earlier run's
        self._interrupt_requested = False
        msg = self.session.msg("execute_request", {
            "code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
            "allow_stdin": on_input is not None, "stop_on_error": True,
        })
        msg_id = msg["header"]["msg_id"]
        self.session.send(shell, msg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        stopped_by = ""  # "timeout" or "interrupted"
        stopped_at = strays_killed_at = executing_since = sent_at = 0.0
        sent_before_executing = resent = False
        probe_id, probe_sent_at, probe_answered = "", 0.0, False
        reply: dict[str, Any] | None = None
        reply_at = heard_at = 0.0
        idle = False
        while True:
            if not self.sockets:
                raise KernelDied("the sandbox was closed while this ran")
            for message in self._drain(iopub):
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                heard_at = loop.time()
                kind, content = message["msg_type"], message["content"]
                if kind == "error" and (stopped_by or self._interrupt_requested) and content.get("ename") == "KeyboardInterrupt":
                    continue  # our own interrupt: the outcome says so
                event = _output_event(kind, content)
                if event is not None:
                    await emit(on_event, event)
                elif kind == "execute_input" and not executing_since:
                    executing_since = heard_at
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
            await self._report_lost_output(on_event)
            for message in self._drain(shell):
                parent_id = message["parent_header"].get("msg_id")
                if parent_id == msg_id and message["msg_type"] == "execute_reply":
                    reply = message["content"]
                    reply_at = loop.time()
                elif probe_id and parent_id == probe_id:
                    probe_answered = True
            self._drain(control)
            for request in self._drain(stdin) if stdin is not None else ():
                if on_input is not None and request["msg_type"] == "input_request" and not stopped_by \
                        and request["parent_header"].get("msg_id") == msg_id:
                    answers.add(asyncio.ensure_future(self._answer(on_input, request)))
            now = loop.time()
            # Output may still be queued behind the reply: wait for idle while it keeps coming.
            if reply is not None and (idle or now - max(reply_at, heard_at) > IDLE_GRACE_S):
                break
            if reply is None and stopped_by and (probe_answered or idle):
                break  # the shell is free: the cell was stopped before it could reply
            if self.proc is None or self.proc.poll() is not None:
                detail = _exit_detail(self.proc.returncode if self.proc else None)
                await asyncio.to_thread(self.stderr_tail, log_as=f"died mid-run ({detail})", wait_s=1.0)
                raise KernelDied(detail)
            if not stopped_by and (self._interrupt_requested or now >= deadline):
                stopped_by = "interrupted" if self._interrupt_requested else "timeout"
                if self.kind == "python":
                    # A fork bomb's processes would starve the kernel of the CPU it needs to stop.
                    # (Not for bash: bash_kernel stops its own foreground job, and would lose track.)
                    await asyncio.to_thread(self.kill_strays)
                self.send_interrupt()
                stopped_at = strays_killed_at = sent_at = loop.time()
                sent_before_executing = not executing_since
            elif stopped_by and reply is None:
                if sent_before_executing and executing_since and not resent and now - executing_since > RESEND_AFTER_S:
                    # The first one came before the cell ran, so it did nothing. Also when the probe
                    # is out (a kernel slow to start the cell, under load): the probe waits behind the
                    # cell, so this interrupt lands in the cell, and the probe's grace runs from it.
                    self.send_interrupt()
                    resent, sent_at = True, now
                    if probe_id:
                        probe_sent_at = now
                elif probe_id:
                    pass  # no more interrupts: one landing in the probe's handler would cut it short
                elif (self.kind == "python" and executing_since and now - sent_at > RESEND_EVERY_S
                      and now - stopped_at < PROBE_AFTER_S - 0.3):
                    # The cell still runs: the last one was swallowed. (Python only: bash_kernel
                    # handles an interrupt by resyncing with bash, which a second one would upset.)
                    self.send_interrupt()
                    sent_at = now
                if self.kind == "python" and now - strays_killed_at >= STRAYS_EVERY_S:
                    await asyncio.to_thread(self.kill_strays)  # forked copies keep forking meanwhile
                    strays_killed_at = loop.time()
                if not probe_id and now - stopped_at > PROBE_AFTER_S:
                    probe = self.session.msg("kernel_info_request", {})
                    probe_id, probe_sent_at = probe["header"]["msg_id"], now
                    self.session.send(shell, probe)
                elif probe_id and now - probe_sent_at > PROBE_GRACE_S:
                    self.stderr_tail(log_as="did not respond to an interrupt")
                    raise KernelDied("the kernel did not respond to the interrupt (is the code forking "
                                     "or stuck in native code?), so it was stopped")
            if reply is not None:
                wait = max(reply_at, heard_at) + IDLE_GRACE_S - now
            elif stopped_by:
                wait = STRAYS_EVERY_S
            else:
                wait = deadline - now
            await self._wait(min(wait, 1.0))
        await self._report_lost_output(on_event)
        if stopped_by:
            await asyncio.to_thread(self.kill_strays)
            return stopped_by
        if self.kind == "deno":
            await self._deno_flush(msg_id, on_event)
        assert reply is not None
        if reply.get("status") == "abort" and self._interrupt_requested:
            return "interrupted"
        return "ok" if reply.get("status") == "ok" else "error"


class StderrTail:
    """The last STDERR_TAIL_BYTES written to a pipe, read by a daemon thread until end of file.

    A thread (not the event loop) so the pipe is drained whatever loop is running, or none: a
    kernel never blocks on a full stderr pipe.
    """

    def __init__(self, fd: int, name: str) -> None:
        self._data = b""
        self._thread = threading.Thread(target=self._read, args=(fd,), daemon=True,
                                        name=f"sandpit-{name}-stderr")
        self._thread.start()

    def _read(self, fd: int) -> None:
        try:
            while chunk := os.read(fd, 65536):
                self._data = (self._data + chunk)[-STDERR_TAIL_BYTES:]
        except OSError:
            pass
        finally:
            os.close(fd)

    def text(self, wait_s: float = 0.0) -> str:
        """What was kept, after waiting up to wait_s for the writer to finish."""
        if wait_s > 0:
            self._thread.join(wait_s)
        return self._data.decode(errors="replace")


def _quoted(said: str, limit: int = 1000) -> str:
    """The end of a kernel's stderr, for an error message ("" when it said nothing)."""
    said = said.strip()
    if not said:
        return ""
    if len(said) > limit:
        said = "…" + said[-limit:]
    return f"; it said:\n{said}"


def _exit_detail(returncode: int | None) -> str:
    """Why the kernel process ended, for the user (bwrap exits with 128+N when its child got signal N)."""
    if returncode is not None and returncode > 128:
        returncode = -(returncode - 128)
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the kernel was killed ({name})"
    return f"the kernel exited (status {returncode})"


def _output_event(kind: str, content: dict[str, Any]) -> Stdout | Stderr | Result | Error | None:
    """The Sandbox event for an iopub output message (stream, display, result, error); None for others."""
    if kind == "stream":
        text = content.get("text", "")
        return Stdout(text) if content.get("name") == "stdout" else Stderr(text)
    if kind in ("display_data", "execute_result", "update_display_data"):
        return Result(_bundle(content.get("data", {})), is_main=kind == "execute_result")
    if kind == "error":
        return Error(content.get("ename", ""), content.get("evalue", ""), list(content.get("traceback", [])))
    return None


def _bundle(data: dict[str, Any]) -> dict[str, str]:
    """A MIME bundle with string values (JSON values such as application/json are dumped)."""
    return {mime: value if isinstance(value, str) else json.dumps(value) for mime, value in data.items()}
