"""Commands under a pty in a local sandbox (E2B's `sandbox.pty`), confined like every command.

The pty is allocated here, on the host: bwrap gets its slave as stdin, stdout and stderr, and the
server keeps the master (output is read from it, input written to it, a resize is TIOCSWINSZ on
it). The sandbox holds nothing of the host but that slave. bwrap's `--new-session` starts the
command in a session of its own with no controlling terminal; util-linux's `setsid -w -c` inside
makes the pty that session's controlling terminal (a shell gets job control, ^C reaches its
foreground job) and passes the exit status back.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import os
import struct
import termios
from collections.abc import Callable

from runner.sandboxes.base import OnEvent, Stdout, Terminal, emit
from runner.sandboxes.local import jail, processes

READ_CHUNK_BYTES = 16 * 1024  # envd's pty chunk
# After the command exits, how long its last output may take to be read (the master reaches its
# end once every holder of the slave, all in the sandbox's pid namespace, is gone).
DRAIN_S = 2.0


def terminal_argv(argv: list[str]) -> list[str]:
    """`argv` in a new session whose controlling terminal is its stdin (the pty)."""
    return ["/usr/bin/setsid", "--wait", "--ctty", *argv]


def set_size(fd: int, cols: int, rows: int) -> None:
    """The pty's window size (its foreground process group gets SIGWINCH)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _ready(fd: int, *, write: bool) -> None:
    """Until `fd` can be read (or written)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


async def _pump(master: int, on_event: OnEvent, terminal: Terminal) -> None:
    """The pty's output as Stdout events (UTF-8, a character split across reads kept whole) until
    its end (EIO: no slave is open any more); the first sets `terminal.started`."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        await _ready(master, write=False)
        try:
            data = os.read(master, READ_CHUNK_BYTES)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not data:
            break
        terminal.started.set()
        if text := decoder.decode(data):
            await emit(on_event, Stdout(text))
    if text := decoder.decode(b"", final=True):
        await emit(on_event, Stdout(text))


async def _feed(master: int, terminal: Terminal) -> None:
    """What is put on the terminal's input, typed at the pty as it comes (waiting while the pty's
    input buffer is full); ends at None or once the pty is gone."""
    while (data := await terminal.input.get()) is not None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(master, view):]
            except BlockingIOError:
                await _ready(master, write=True)
            except OSError:
                return


async def run_in_terminal(confine: Callable[..., list[str]], argv: list[str], *, terminal: Terminal,
                          on_event: OnEvent, timeout_s: float) -> int | None:
    """Run `confine(command=argv)` under a new pty of `terminal`'s size, its output streamed as
    Stdout events; its exit code (negative: killed by that signal), or None when it passed
    `timeout_s` and was killed. Cancelling the caller kills the process tree too."""
    master, slave = os.openpty()
    try:
        set_size(master, terminal.cols, terminal.rows)
        os.set_blocking(master, False)
        with jail.hidden_options(confine(command=terminal_argv(argv))) as (confined, fds):
            proc = await asyncio.create_subprocess_exec(
                *confined, env=jail.OUTER_ENV, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                pass_fds=fds, cwd="/",
            )
    except BaseException:
        os.close(master)
        terminal.started.set()
        raise
    finally:
        os.close(slave)  # the sandbox's copies are the only ones left: its end is the master's EIO
    terminal.on_resize = lambda cols, rows: set_size(master, cols, rows)
    pump = asyncio.ensure_future(_pump(master, on_event, terminal))
    feeder = asyncio.ensure_future(_feed(master, terminal))
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
            await asyncio.wait([pump], timeout=DRAIN_S)
    except TimeoutError:
        return None
    finally:
        terminal.on_resize = None
        terminal.started.set()
        if proc.returncode is None:  # timed out or cancelled: nothing outlives the call
            processes.signal_processes([pid for pid, _ in reversed(processes.process_tree(proc.pid))] + [proc.pid])
            await asyncio.shield(proc.wait())
        for task in (pump, feeder):
            task.cancel()
        await asyncio.shield(asyncio.gather(pump, feeder, return_exceptions=True))
        os.close(master)
    if not pump.cancelled():
        pump.result()  # a pump's own failure (none expected) is the caller's
    return proc.returncode
