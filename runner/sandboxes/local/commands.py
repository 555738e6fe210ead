"""Commands in a local sandbox (E2B's `commands.run`, and the files API's remove, rename and
make-dir): one short-lived process, confined like the kernels (no network, the workspace only),
with its stdout and stderr streamed apart and its exit code returned.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Callable
from typing import Protocol

from runner.sandboxes.base import OnEvent, Stderr, Stdout, emit
from runner.sandboxes.local import files, jail, processes

ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class Confiner(Protocol):
    def __call__(self, *, command: list[str]) -> list[str]: ...


def sandbox_dir(path: str) -> str:
    """A command's cwd as an absolute in-sandbox path: an absolute one is any folder of the sandbox
    (env -C resolves it inside the jail, where nothing of the host is), a relative one is in the
    workspace. ValueError for a NUL byte or a relative path leaving the workspace."""
    if "\0" in path:
        raise ValueError("a cwd may not contain a NUL byte")
    if path.startswith("/"):
        return posixpath.normpath(path)
    parts = files.parts_of(path)
    return "/".join([jail.HOME, *parts]) if parts else jail.HOME


def command_argv(argv: list[str], *, cwd: str, envs: dict[str, str]) -> list[str]:
    """`argv` run in `cwd` (a folder of the sandbox) with `envs` added. ValueError for a bad name or path."""
    for name in envs:
        if not name or not set(name) <= ENV_NAME_CHARS or name[0].isdigit():
            raise ValueError(f"{name[:50]!r} is not an environment variable name")
    if not argv or "=" in argv[0]:
        raise ValueError("a command is required (and its name can't contain '=')")
    return ["/usr/bin/env", "-C", sandbox_dir(cwd), "--", *(f"{k}={v}" for k, v in envs.items()), *argv]


async def run_confined(confine: Callable[..., list[str]], argv: list[str], *, on_event: OnEvent, timeout_s: float,
                       stdin: asyncio.Queue[bytes | None] | None = None, pids: set[int] | None = None) -> int | None:
    """Run `confine(command=argv)`, streaming stdout and stderr as events; its exit code (negative:
    killed by that signal), or None when it passed `timeout_s` and was killed. Cancelling the
    caller kills the process tree too. With `stdin`, what is put on the queue is written to the
    process's stdin as it comes (None closes it: EOF); without, its stdin is /dev/null. Its pid is
    in `pids` while it runs."""
    with jail.hidden_options(confine(command=argv)) as (confined, fds):
        proc = await asyncio.create_subprocess_exec(
            *confined, env=jail.OUTER_ENV, stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True, pass_fds=fds, cwd="/",
        )
    assert proc.stdout is not None and proc.stderr is not None
    running = pids if pids is not None else set()
    running.add(proc.pid)

    async def pump(stream: asyncio.StreamReader, make: type[Stdout] | type[Stderr]) -> None:
        while chunk := await stream.read(65536):
            await emit(on_event, make(chunk.decode(errors="replace")))

    async def feed(queue: asyncio.Queue[bytes | None], pipe: asyncio.StreamWriter) -> None:
        try:
            while (data := await queue.get()) is not None:
                pipe.write(data)
                await pipe.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # it closed its stdin, or ended: what is sent after is dropped, as in envd
        finally:
            pipe.close()

    # Tasks of our own (not a gather): on a timeout or a cancel each is cancelled and awaited
    # here, so no future is left holding an exception nobody retrieves.
    tasks = [asyncio.ensure_future(pump(proc.stdout, Stdout)), asyncio.ensure_future(pump(proc.stderr, Stderr))]
    if stdin is not None:
        assert proc.stdin is not None
        feeder: asyncio.Future[None] | None = asyncio.ensure_future(feed(stdin, proc.stdin))
    else:
        feeder = None
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.wait(tasks)  # both pipes at their end: the process closed them
            await proc.wait()
    except TimeoutError:
        return None
    finally:
        running.discard(proc.pid)
        if proc.returncode is None:  # timed out or cancelled: nothing outlives the call
            processes.signal_processes([pid for pid, _ in reversed(processes.process_tree(proc.pid))] + [proc.pid])
            await asyncio.shield(proc.wait())
        for task in [*tasks, *([feeder] if feeder is not None else [])]:
            task.cancel()
        await asyncio.shield(asyncio.gather(*tasks, *([feeder] if feeder is not None else []), return_exceptions=True))
    for task in tasks:
        task.result()  # a pump's own failure (none expected) is the caller's
    return proc.returncode
