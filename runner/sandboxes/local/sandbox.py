"""LocalSandbox: one session's workspace, cgroup and kernels (started per language on first use)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
import time
from pathlib import Path
from typing import Protocol

import zmq
from django.conf import settings

from runner.sandboxes.base import (
    LANGUAGES, Error, FileInfo, OnEvent, OnInput, Outcome, SandboxGone, SandboxUsage, Stderr, Stdout, Terminal, emit,
    validate_packages,
)
from runner.sandboxes.local import cgroups, commands, files, jail, mounts, ports, processes, quota
from runner.sandboxes.local import terminal as terminal_run
from runner.sandboxes.local.kernel import KERNEL_KIND, Kernel, KernelDied
from runner.sandboxes.local.watch import Watch

TMP = "/tmp"


class TooManyKernels(Exception):
    """A sandbox already has SANDBOX_KERNELS_MAX kernels running."""


def kernel_key(kind: str, name: str = "") -> str:
    """Where a kernel is kept in `LocalSandbox.kernels`: its kind, or kind/name for a named one."""
    return f"{kind}/{name}" if name else kind
from runner.sandboxes.local.workspace import LocalWorkspace, over_quota_message, quota_bytes


class SandboxHost(Protocol):
    """What a LocalSandbox needs from the backend that owns it (LocalBackend satisfies it)."""

    @property
    def zmq_context(self) -> zmq.Context: ...

    @property
    def as_root(self) -> bool: ...

    @property
    def kernel_owner(self) -> tuple[int, int]: ...

    @property
    def empty_dir(self) -> Path:
        """An empty root-owned directory (the lower layer of the workspace's overlay)."""
        ...

    def new_kernel(self, sandbox: LocalSandbox, kind: str) -> Kernel:
        """A kernel of this kind confined to `sandbox` (not started yet)."""
        ...

    def confined_argv(self, sandbox: LocalSandbox, *, command: list[str], language: str, control: Path | None,
                      network: bool = False) -> list[str]:
        """The argv that runs `command` confined to `sandbox`."""
        ...

    def forget(self, sandbox: LocalSandbox) -> None:
        """`sandbox` is closing: drop it from the backend's books."""
        ...


def install_command(packages: list[str], language: str) -> tuple[list[str], str]:
    """The command that installs `packages` for `language` (run confined), and the tool's name.

    Raises ValueError for an unknown language or a package that isn't a plain name.
    """
    if language in ("python", "bash"):
        requirements = validate_packages(packages, language=language)
        # -I: ignore PYTHONPATH, the user site and the cwd, so nothing the user left in the
        # workspace (a sitecustomize.py, say) runs while the network is up.
        command = [f"{jail.VENV}/bin/python", "-I", "-m", "pip", "install", "--no-input", "--progress-bar", "off",
                   "--only-binary=:all:", "--upgrade", "--target", jail.PACKAGES]
        if settings.SANDBOX_PIP_INDEX_URL:
            command += ["--index-url", settings.SANDBOX_PIP_INDEX_URL]
        return [*command, "--", *requirements], "pip"
    if language in ("javascript", "typescript"):
        specifiers = [f"npm:{name}" for name in validate_packages(packages, language=language)]
        # Fetch into a fresh cache in /tmp (nothing the user planted in theirs is read while the
        # network is up), without any config file, then copy it into the kernel's cache.
        script = (
            'set -e; cd /tmp; DENO_DIR=/tmp/deno "$0" cache --no-config "$@"; '
            f'mkdir -p "{jail.DENO_DIR}"; cp -a /tmp/deno/npm "{jail.DENO_DIR}/"'
        )
        return ["/bin/sh", "-c", script, f"{jail.VENV}/bin/deno", *specifiers], "deno cache"
    raise ValueError(f"install doesn't support {language!r}; choose python, bash, javascript or typescript")


class LocalSandbox:
    """A session's sandbox. Satisfies runner.sandboxes.base.Sandbox."""

    def __init__(self, host: SandboxHost, sandbox_id: str, root: Path, cgroup: cgroups.Cgroup | None) -> None:
        self.id = sandbox_id
        self.host = host
        self.root = root
        # The workspace folder (the overlay's upper layer, as root); it moves to the session's
        # persistent place when a session takes a warm sandbox. See view().
        self.workspace = root / "home"
        self._view: Path | None = None  # the overlay that shows it, once mounted
        self._scratch: Path | None = None  # overlay's workdir
        self._view_lock = threading.Lock()
        self._tmp: Path | None = None  # the sandbox's /tmp (a tmpfs, as root), once mounted
        self.watches: set[Watch] = set()
        self.cgroup = cgroup
        self.kernels: dict[str, Kernel] = {}
        self._commands: set[int] = set()  # pids of the running commands' bwraps
        self._starting: dict[str, asyncio.Future[Kernel]] = {}
        self._running: Kernel | None = None
        self._in_run = False
        self._stop_pending = False  # interrupt() came while the kernel was still starting
        self._run_lock = asyncio.Lock()
        self._installs = 0  # installs done; a Python kernel that saw fewer drops its import caches
        self._installs_seen: dict[str, int] = {}
        self._usage_bytes = 0  # the workspace's size at the last check (see _check_usage_soon)
        self._usage_checked_at = 0.0
        self._leftovers_watch: asyncio.Future[None] | None = None  # see _watch_leftovers
        self._leftovers_killed_at_bytes = 0  # the usage at which they were killed, for the next run's note
        self.owner_id: int | None = None
        self.session_id = ""
        self.last_used = time.monotonic()
        self.closed = False
        self._cpu_sample: tuple[float, int] | None = None  # (monotonic s, cgroup CPU ns) at the last usage()

    def __repr__(self) -> str:
        return f"<LocalSandbox {self.id} session={self.session_id or '-'} kernels={sorted(self.kernels)}>"

    @property
    def busy(self) -> bool:
        """A run is in progress (or waiting for its kernel)."""
        return self._in_run

    # --- kernels ----------------------------------------------------------------------------

    def kernel_ready(self, language: str, name: str = "") -> bool:
        """Whether `language`'s kernel (named `name`) is up, so a run on it starts at once."""
        kernel = self.kernels.get(kernel_key(KERNEL_KIND.get(language, ""), name))
        return kernel is not None and kernel.alive

    async def kernel_start(self, language: str, name: str = "") -> None:
        """Start `language`'s kernel (named `name`) if it isn't up (a run would start it too)."""
        await self.kernel(KERNEL_KIND[language], name)

    async def kernel(self, kind: str, name: str = "") -> Kernel:
        """The running kernel of this kind (and name), started if needed (concurrent callers share
        one start). Raises TooManyKernels when starting it would pass SANDBOX_KERNELS_MAX."""
        key = kernel_key(kind, name)
        existing = self.kernels.get(key)
        if existing is not None and existing.alive:
            return existing
        if existing is not None:
            await existing.stop()
            self.kernels.pop(key, None)
        pending = self._starting.get(key)
        if pending is None:
            if len(self.kernels) + len(self._starting) >= settings.SANDBOX_KERNELS_MAX:
                raise TooManyKernels(
                    f"this sandbox already runs {settings.SANDBOX_KERNELS_MAX} kernels, the most it may "
                    f"(SANDBOX_KERNELS_MAX); remove a code context first")
            pending = self._starting[key] = asyncio.ensure_future(self._start_kernel(kind, key))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self._starting.pop(key, None)

    async def _start_kernel(self, kind: str, key: str) -> Kernel:
        if self.closed:
            raise SandboxGone("this sandbox was closed")
        kernel = self.host.new_kernel(self, kind)
        try:
            await kernel.start(self.host.zmq_context)
        except BaseException:
            kernel.close_client()
            await asyncio.shield(asyncio.to_thread(kernel.terminate))
            raise
        if self.closed:
            await kernel.stop()
            raise SandboxGone("this sandbox was closed")
        self.kernels[key] = kernel
        self._installs_seen[key] = self._installs
        return kernel

    # --- the Protocol ---------------------------------------------------------------------

    async def run(
        self, code: str, *, language: str, on_event: OnEvent, timeout_s: float, on_input: OnInput | None = None,
        kernel: str = "",
    ) -> Outcome:
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}; choose one of {sorted(LANGUAGES)}")
        if self.closed:
            raise SandboxGone("this sandbox was closed")
        started = time.monotonic()
        self.last_used = started
        async with self._run_lock:
            self._in_run, self._stop_pending = True, False
            try:
                return await self._run_locked(code, language, on_event, timeout_s, started, on_input, kernel)
            finally:
                self._in_run = False

    async def _run_locked(self, code: str, language: str, on_event: OnEvent, timeout_s: float,
                          started: float, on_input: OnInput | None = None, name: str = "") -> Outcome:
        kind = KERNEL_KIND[language]
        key = kernel_key(kind, name)
        try:
            kernel = await self.kernel(kind, name)
        except TooManyKernels as exc:
            await emit(on_event, Error("KernelLimit", str(exc), []))
            return Outcome("error", _ms_since(started))
        except (KernelDied, TimeoutError, OSError) as exc:
            await emit(on_event, Stderr(f"The {language} kernel could not start: {exc}\n"))
            return Outcome("gone", _ms_since(started))
        if self._stop_pending:
            return Outcome("interrupted", _ms_since(started))
        if self._leftovers_killed_at_bytes:
            message = quota.stop_message(self._leftovers_killed_at_bytes, what="What earlier runs left running")
            self._leftovers_killed_at_bytes = 0
            await emit(on_event, Stderr(f"Note: {message}\n"))
        elif self._usage_bytes > quota_bytes():
            await emit(on_event, Stderr(f"Note: {over_quota_message(self._usage_bytes)}\n"))
        oom_before = self.cgroup.oom_kills() if self.cgroup else 0
        self._running = kernel
        over_quota: list[int] = []

        async def stop_for_quota(usage_bytes: int) -> None:
            over_quota.append(usage_bytes)
            await emit(on_event, Error(quota.QUOTA_ERROR, quota.stop_message(usage_bytes), []))
            kernel.interrupt()
            while True:  # until the run ends (this task is cancelled then)
                await asyncio.sleep(settings.SANDBOX_QUOTA_CHECK_S)
                if await quota.measure(self.view()) > usage_bytes + quota.GROWTH_AFTER_STOP_BYTES:
                    await asyncio.to_thread(kernel.terminate)  # it swallowed the interrupt and writes on
                    return

        watcher = asyncio.ensure_future(quota.watch(self.view(), on_over=stop_for_quota, measured=self._measured))
        try:
            if kind == "python" and self._installs_seen.get(key, 0) < self._installs:
                self._installs_seen[key] = self._installs  # new packages on disk: drop the import system's stale caches
                await kernel.execute("import importlib; importlib.invalidate_caches()", _ignore, 10, silent=True)
            # Only the Python kernel asks for input (bash_kernel and Deno's don't).
            status = await kernel.execute(code, on_event, timeout_s, on_input=on_input if kind == "python" else None)
            if over_quota:
                status = "error"  # stopped for the quota: the run failed, with the error saying why
        except asyncio.CancelledError:
            kernel.send_interrupt()  # the caller gave up on this run: don't let it run on unseen
            raise
        except KernelDied as exc:
            await emit(on_event, Stderr(self._death_message(language, exc.detail, oom_before)))
            self.kernels.pop(key, None)
            await kernel.stop()
            return Outcome("gone", _ms_since(started))
        finally:
            watcher.cancel()
            self._running = None
            self.last_used = time.monotonic()
            self._check_usage_soon()
            self._watch_leftovers(kernel)
        return Outcome(status, _ms_since(started))  # type: ignore[arg-type]

    def _watch_leftovers(self, kernel: Kernel) -> None:
        """While processes a run left running live (a background writer, say), keep the quota
        watch on, and kill them once the workspace passes the quota."""
        if self.closed or (self._leftovers_watch is not None and not self._leftovers_watch.done()):
            return

        async def kill_them(usage_bytes: int) -> None:
            self._leftovers_killed_at_bytes = usage_bytes
            await asyncio.to_thread(kernel.kill_strays)

        async def watch() -> None:
            watcher = asyncio.ensure_future(quota.watch(self.view(), on_over=kill_them, measured=self._measured))
            try:
                while not watcher.done() and not self.closed and not self._in_run \
                        and await asyncio.to_thread(_has_strays, kernel):
                    await asyncio.sleep(LEFTOVERS_CHECK_S)
            finally:
                watcher.cancel()

        self._leftovers_watch = asyncio.ensure_future(watch())
        self._leftovers_watch.add_done_callback(lambda task: task.cancelled() or task.exception())

    def _death_message(self, language: str, detail: str, oom_before: int) -> str:
        if self.cgroup is not None and self.cgroup.oom_kills() > oom_before:
            why = f"the sandbox ran out of memory ({self.cgroup.limits.memory_mb} MiB)"
        else:
            why = detail.replace("the kernel", f"the {language} kernel", 1)
        return (f"\n{why[0].upper()}{why[1:]}. Its variables are gone; "
                f"the next {language} run starts a fresh kernel.\n")

    async def interrupt(self) -> None:
        kernel = self._running
        if kernel is not None:
            kernel.interrupt()
        elif self._in_run:
            self._stop_pending = True

    def _measured(self, usage_bytes: int) -> None:
        self._usage_bytes = usage_bytes  # (the after-run check keeps its own pace)

    def _check_usage_soon(self) -> None:
        """Measure the workspace in the background, at most every USAGE_CHECK_INTERVAL_S.

        While code runs, quota.watch stops it past the quota; after, processes it left running are
        watched the same way (_watch_leftovers). A run that starts over it says so first, and
        uploads and installs are refused.
        """
        now = time.monotonic()
        if self.closed or now - self._usage_checked_at < USAGE_CHECK_INTERVAL_S:
            return
        self._usage_checked_at = now

        async def measure() -> None:
            self._usage_bytes = await quota.measure(self.view())

        asyncio.ensure_future(measure()).add_done_callback(lambda task: task.cancelled() or task.exception())

    def view(self) -> Path:
        """Where the workspace is reached while this sandbox lives: bwrap binds it at /home/user,
        and the server's own file I/O and quota walks go through it. As root it is an overlay of
        the workspace folder (mounts.py), mounted on first use, so the sandbox's mountinfo shows `/`
        for /home/user, not the folder's host path; else the folder itself."""
        if self._view is not None or not self.host.as_root:
            return self._view or self.workspace
        with self._view_lock:
            if self._view is None:
                if self.closed:
                    raise SandboxGone("this sandbox was closed")
                # Overlay's workdir: new, root's, beside the upper dir (same filesystem), outside it.
                scratch = self.workspace.parent / f".ovl-{self.root.parent.name}.{self.id}"
                scratch.mkdir(mode=0o700)
                target = self.root / "ws"
                target.mkdir(mode=0o711)
                mounts.mount_workspace(target, self.workspace, scratch, self.host.empty_dir)
                self._scratch, self._view = scratch, target
        return self._view

    def tmp_dir(self) -> Path | None:
        """The sandbox's /tmp on the host: as root a tmpfs of SANDBOX_TMPFS_MB (mounted on first
        use, on a new root-owned dir in the sandbox's root-owned dir), bound at /tmp in every kernel
        and command of the sandbox and reached by the files API. None as non-root (each process
        then gets a private tmpfs, which the files API can't reach)."""
        if self._tmp is not None or not self.host.as_root:
            return self._tmp
        with self._view_lock:
            if self._tmp is None:
                if self.closed:
                    raise SandboxGone("this sandbox was closed")
                target = self.root / "tmp"
                target.mkdir(mode=0o700)
                mounts.mount_sandbox_tmp(target, size_bytes=settings.SANDBOX_TMPFS_MB * 1024 * 1024)
                self._tmp = target
        return self._tmp

    def _names(self) -> dict[int, str]:
        uid, gid = self.host.kernel_owner
        return {0: "root", uid: "user", gid: "user"}

    @property
    def files(self) -> LocalWorkspace:
        """The workspace's files, through view()."""
        owner = self.host.kernel_owner if self.host.as_root else None
        return LocalWorkspace(self.view(), owner=owner, names=self._names())

    def area(self, path: str) -> tuple[LocalWorkspace, str, str]:
        """Where a sandbox path's files are: (the folder's files, the path within it, the prefix
        that makes its listings' paths absolute: "" for the workspace, "/tmp" for /tmp)."""
        if path == TMP or path.startswith(TMP + "/"):
            tmp = self.tmp_dir()
            if tmp is None:
                raise ValueError("/tmp is reachable through the files API only when the server runs as root "
                                 "(as non-root each process has a private /tmp); use /home/user")
            owner = self.host.kernel_owner if self.host.as_root else None
            return LocalWorkspace(tmp, owner=owner, names=self._names(), quota=False), path[len(TMP):].strip("/"), TMP
        return self.files, path, ""

    async def _refuse_if_full(self, adding_bytes: int = 0) -> None:
        self._usage_bytes = await self.files.refuse_if_full(adding_bytes)
        self._usage_checked_at = time.monotonic()

    # The files API may store user metadata with a write (E2B's files.write(metadata=)).
    writes_metadata = True

    async def write_file(self, path: str, data: bytes, *, metadata: dict[str, str] | None = None) -> None:
        self._check_open()
        where, inside, _ = self.area(path)
        await where.write_file(inside, data, metadata=metadata)

    async def read_file(self, path: str) -> bytes:
        self._check_open()
        where, inside, _ = self.area(path)
        return await where.read_file(inside)

    async def list_files(self, path: str = ".") -> list[FileInfo]:
        self._check_open()
        where, inside, prefix = self.area(path)
        found = await where.list_files(inside or ".")
        return [dataclasses.replace(i, path=f"{prefix}/{i.path}") for i in found] if prefix else found

    async def delete_file(self, path: str) -> None:
        self._check_open()
        where, inside, _ = self.area(path)
        await where.delete_file(inside)

    async def rename_file(self, path: str, to: str) -> None:
        self._check_open()
        (where, inside, prefix), (_, inside_to, prefix_to) = self.area(path), self.area(to)
        if prefix != prefix_to:
            raise ValueError("a rename can't move between /tmp and /home/user (they are separate filesystems)")
        await where.rename_file(inside, inside_to)

    async def watch(self, path: str, *, recursive: bool) -> Watch:
        """A new inotify watch on the folder `path` (see watch.py); at most SANDBOX_WATCHERS_MAX
        per sandbox (ValueError past it). Closed by its user, or with the sandbox."""
        self._check_open()
        if len(self.watches) >= settings.SANDBOX_WATCHERS_MAX:
            raise ValueError(f"this sandbox already has {len(self.watches)} watches (SANDBOX_WATCHERS_MAX); stop one first")
        where, inside, _ = self.area(path)
        parts = files.parts_of(inside)
        made = Watch(str(where.path), parts, recursive=recursive, on_close=self.watches.discard)
        self.watches.add(made)
        return made

    async def install(self, packages: list[str], *, language: str, on_event: OnEvent, timeout_s: float) -> Outcome:
        """Install packages into the workspace, in a separate short-lived sandbox that may reach the
        package index (the kernels never can). Python and bash: pip, wheels only, into
        ~/.local/packages. JavaScript and TypeScript: `deno cache npm:...` into the kernel's Deno cache
        (then `import x from "npm:x"`). No package's own code runs while the network is up.

        Raises ValueError for anything but plain package names.
        """
        self._check_open()
        command, tool = install_command(packages, language)
        await self._refuse_if_full()
        argv = self.host.confined_argv(self, command=command, language="install", control=None, network=True)
        started = time.monotonic()
        with jail.hidden_options(argv) as (argv, fds):
            proc = await asyncio.create_subprocess_exec(
                *argv, env=jail.OUTER_ENV, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, pass_fds=fds, cwd="/",
            )
        assert proc.stdout is not None

        async def stream() -> int:
            while chunk := await proc.stdout.read(65536):
                await emit(on_event, Stdout(chunk.decode(errors="replace")))
            return await proc.wait()

        try:
            code = await asyncio.wait_for(stream(), timeout_s)
        except TimeoutError:
            await emit(on_event, Stderr(f"\n{tool} did not finish within {timeout_s:.0f} s and was stopped.\n"))
            return Outcome("timeout", _ms_since(started))
        finally:
            if proc.returncode is None:  # timed out or cancelled: the installer must not outlive the call
                processes.signal_processes([pid for pid, _ in reversed(processes.process_tree(proc.pid))] + [proc.pid])
                await asyncio.shield(proc.wait())
        self._installs += 1
        return Outcome("ok" if code == 0 else "error", _ms_since(started))

    # --- beyond the Protocol: what the E2B-compatible API needs (runner/e2b_api) -------------------

    async def restart_language(self, language: str, name: str = "") -> None:
        """Stop `language`'s kernel named `name` (its variables go; JavaScript and TypeScript share
        one); the next run in it starts a fresh one. Also how a removed context's kernel goes."""
        self._check_open()
        kernel = self.kernels.pop(kernel_key(KERNEL_KIND[language], name), None)
        if kernel is not None:
            await kernel.stop()

    async def open_port(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to `port` on the sandbox's loopback, in whichever of its running commands or
        kernels listens there (each has a network namespace of its own); PortClosed if none."""
        self._check_open()
        pids = [*self._commands, *(k.proc.pid for k in self.kernels.values() if k.proc is not None and k.alive)]
        procs = self.cgroup.procs_files[0] if self.cgroup is not None and self.cgroup.procs_files else None
        sock = await asyncio.get_running_loop().run_in_executor(None, ports.connect, pids, port, procs)
        return await asyncio.open_connection(sock=sock)

    async def command(self, argv: list[str], *, cwd: str = ".", envs: dict[str, str] | None = None,
                      on_event: OnEvent | None = None, timeout_s: float = 60.0,
                      stdin: asyncio.Queue[bytes | None] | None = None, terminal: Terminal | None = None) -> int | None:
        """Run `argv` in the sandbox (confined as the kernels: no network, its own files only) in
        `cwd`, streaming its output; its exit code, or None when it passed `timeout_s` (killed).
        With `stdin`, what is put on it goes to the command's stdin (None: EOF); else /dev/null.
        With `terminal`, it runs under a pty of that size instead (its output is all Stdout, its
        input the terminal's). Raises ValueError for a relative cwd leaving the workspace or a bad
        variable name."""
        self._check_open()
        full = commands.command_argv(argv, cwd=cwd, envs=envs or {})

        def confine(*, command: list[str]) -> list[str]:
            return self.host.confined_argv(self, command=command, language="bash", control=None)

        if terminal is not None:
            started = terminal_run.run_in_terminal(confine, full, terminal=terminal, on_event=on_event or _ignore,
                                                   timeout_s=timeout_s)
        else:
            started = commands.run_confined(confine, full, on_event=on_event or _ignore, timeout_s=timeout_s, stdin=stdin,
                                            pids=self._commands)
        running = asyncio.ensure_future(started)

        over_quota: list[int] = []

        async def stop_for_quota(usage_bytes: int) -> None:
            over_quota.append(usage_bytes)
            await emit(on_event or _ignore, Stderr(f"\n{quota.stop_message(usage_bytes, what='The command')}\n"))
            running.cancel()  # run_confined kills the process tree

        watcher = asyncio.ensure_future(quota.watch(self.view(), on_over=stop_for_quota, measured=self._measured))
        try:
            return await running
        except asyncio.CancelledError:
            if not over_quota:
                raise  # our caller gave up, not the quota
            return -signal.SIGKILL
        finally:
            watcher.cancel()
            running.cancel()
            self.last_used = time.monotonic()
            self._check_usage_soon()

    async def usage(self) -> SandboxUsage:
        """CPU (since the last call; over CPU_SAMPLE_S on the first) and memory, from the
        sandbox's cgroup; all None without one (not root, or cgroups not delegated)."""
        cgroup = self.cgroup
        if cgroup is None or self.closed:
            return SandboxUsage()
        now_s, cpu_ns = time.monotonic(), cgroup.cpu_used_ns()
        previous = self._cpu_sample
        if previous is None and cpu_ns is not None:
            await asyncio.sleep(CPU_SAMPLE_S)
            previous, (now_s, cpu_ns) = (now_s, cpu_ns), (time.monotonic(), cgroup.cpu_used_ns())
        percent = None
        if previous is not None and cpu_ns is not None and now_s > previous[0]:
            cores = max(cgroup.limits.cpus, 0.01)  # of its quota, as E2B's figure is of its vCPUs
            percent = round(max(cpu_ns - previous[1], 0) / 1e9 / (now_s - previous[0]) / cores * 100, 1)
        if cpu_ns is not None:
            self._cpu_sample = (now_s, cpu_ns)
        return SandboxUsage(cpu_percent=percent, memory_bytes=cgroup.memory_used_bytes(),
                            memory_limit_bytes=cgroup.limits.memory_mb * 1024 * 1024)

    async def close(self) -> None:
        """Stop every kernel and remove the workspace and cgroup. Idempotent."""
        if self.closed:
            return
        self.detach()
        await asyncio.to_thread(self.destroy)

    def detach(self) -> None:
        """Mark closed, leave the backend's books and close client sockets (on the loop's thread)."""
        self.closed = True
        self.host.forget(self)
        for watch in list(self.watches):
            watch.close()
        if self._leftovers_watch is not None:
            self._leftovers_watch.cancel()
        for pending in self._starting.values():
            pending.cancel()
        for kernel in self.kernels.values():
            kernel.close_client()

    def destroy(self) -> None:
        """Kill the kernels, remove the cgroup and the workspace (blocking; thread-safe after detach())."""
        self.closed = True
        for kernel in list(self.kernels.values()):
            kernel.kill()
        self.kernels.clear()
        if self.cgroup is not None:
            self.cgroup.remove()
        with self._view_lock:
            # Unmount before removing anything: rmtree must never walk into the workspace's overlay.
            mounts.remove_tree(self.root)
            if self._scratch is not None:
                mounts.remove_tree(self._scratch)

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxGone("this sandbox was closed")
        self.last_used = time.monotonic()


USAGE_CHECK_INTERVAL_S = 10.0
# The first CPU reading of a sandbox samples its cgroup over this long (later ones use the last reading).
CPU_SAMPLE_S = 0.2
# While a run's leftover processes live, how often to look whether they still do.
LEFTOVERS_CHECK_S = 1.0


def _has_strays(kernel: Kernel) -> bool:
    """Whether processes the code started (not the kernel's own) are alive (blocking: reads /proc)."""
    if kernel.proc is None or kernel.proc.poll() is not None:
        return False
    return any(comm != "bwrap" and pid not in kernel.protected_pids
               for pid, comm in processes.process_tree(kernel.proc.pid, with_zombies=False))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _ignore(_event: object) -> None:
    return None
