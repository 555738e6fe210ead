"""LocalBackend: creates bwrap'd sandboxes, keeps a warm pool, reaps idle ones, sweeps leftovers.

State on disk, under SANDBOX_STATE_DIR/sbx/<owner>/<sandbox id>/ (a new control dir for each
kernel start, removed when that kernel ends; a warm sandbox's workspace `home/` until a session
takes it). A session's workspace lives under
SANDBOX_WORKSPACES_DIR/<session id>/ (see workspace.py) and outlives its sandboxes. <owner> is
"<pid>.<start time>" of the server process, and cgroups are named "<pid namespace>.<pid>.<start time>.<id>", so a start-up sweep removes only what dead processes
left behind, even with several servers and test runs sharing the machine.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
import weakref
from pathlib import Path

import zmq
from django.conf import settings

from runner.sandboxes.base import PAGE_LANGUAGES, Health, SandboxGone, SandboxUnavailable
from runner.sandboxes.local import capacity, cgroups, jail, mounts, processes
from runner.sandboxes.local.kernel import Kernel, r_available
from runner.sandboxes.local.limits import Isolation, Limits
from runner.sandboxes.local.sandbox import LocalSandbox
from runner.sandboxes.local.workspace import LocalWorkspace, prepare, workspace_path, workspaces_dir

log = logging.getLogger(__name__)

# The backend's own reaper waits this much longer than SANDBOX_IDLE_TIMEOUT_S (see reap_idle).
REAPER_GRACE_S = 60.0


class LocalBackend:
    """Jupyter kernels in bubblewrap on this machine. Satisfies runner.sandboxes.base.Backend.

    Python and bash are stateful ipykernel/bash_kernel kernels over ipc. JavaScript and TypeScript
    share one stateful Deno kernel whose TCP sockets are relayed to ipc inside the sandbox.
    """

    name = "local"
    languages = PAGE_LANGUAGES

    def __init__(self) -> None:
        # R (the E2B API's only) when this machine has R and IRkernel.
        self.languages = PAGE_LANGUAGES | ({"r"} if r_available() else set())
        self._isolation: Isolation | None = None
        self._live: dict[str, LocalSandbox] = {}
        self._pool: list[LocalSandbox] = []
        self._pool_filling = 0
        self._reaper: asyncio.Task[None] | None = None
        self._context: zmq.Context | None = None
        self._kfiles: Path | None = None
        self._kenv: Path | None = None
        self._owner_dir: Path | None = None
        self._pid = 0

    # --- set-up, once per process -----------------------------------------------------------

    @property
    def isolation(self) -> Isolation:
        if self._isolation is None or self._pid != os.getpid():
            self._isolation = jail.detect_isolation()
            self._pid = os.getpid()
            if not self._isolation.problem:
                try:
                    self._prepare()
                except mounts.MountFailed as exc:
                    self._isolation = dataclasses.replace(self._isolation, problem=(
                        f"the server (root) cannot mount the filesystems that hide host paths from "
                        f"sandboxes ({exc.strerror}); it needs CAP_SYS_ADMIN and overlayfs and tmpfs "
                        "(modprobe overlay)"))
                    return self._isolation
                # bwrap can be installed and still fail (user namespaces disabled, AppArmor): try it.
                problem = self._try_a_sandbox(["-c", "print('ok')"])
                if problem:
                    self._isolation = dataclasses.replace(self._isolation, problem=problem)
        return self._isolation

    @property
    def as_root(self) -> bool:
        return self.isolation.as_root

    @property
    def kernel_owner(self) -> tuple[int, int]:
        return self.isolation.uid, self.isolation.gid

    @property
    def zmq_context(self) -> zmq.Context:
        if self._context is None:
            self._context = zmq.Context()
        return self._context

    def _prepare(self) -> None:
        isolation = self._isolation
        assert isolation is not None
        state = Path(settings.SANDBOX_STATE_DIR)
        (state / "sbx").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # the sandbox user must be able to reach its workspace
            os.chmod(state, 0o755)
            os.chmod(state / "sbx", 0o711)
        self._kfiles = jail.kernel_files_dir(state, isolation.uid, isolation.gid)
        self._kenv = Path(settings.SANDBOX_KERNEL_ENV)
        owner = f"{os.getpid()}.{processes.process_start_time(os.getpid())}"
        self._owner_dir = state / "sbx" / owner
        sweep(state, isolation)
        self._owner_dir.mkdir(mode=0o711, exist_ok=True)
        (self._owner_dir / "boot_id").write_text(processes.boot_id())
        atexit.register(_close_all_at_exit, weakref.ref(self))
        if isolation.as_root:
            # What sandboxes bind read-only, as mounts of their own (mounts.py): mountinfo shows `/`.
            empty = self.empty_dir
            empty.mkdir(mode=0o755, exist_ok=True)
            for name, source in (("kenv", self._kenv), ("kfiles", self._kfiles)):
                target = self._owner_dir / name
                target.mkdir(mode=0o755, exist_ok=True)
                if not mounts.is_mount_point(target):
                    mounts.mount_read_only(target, source, empty)
            self._kenv, self._kfiles = self._owner_dir / "kenv", self._owner_dir / "kfiles"

    @property
    def owner_dir(self) -> Path:
        """This process's state dir (after set-up)."""
        assert self._owner_dir is not None
        return self._owner_dir

    @property
    def empty_dir(self) -> Path:
        """An empty root-owned directory: the lower layer of workspace overlays (mounts.py)."""
        return self.owner_dir / "empty"

    @property
    def live_count(self) -> int:
        return len(self._live)

    @property
    def warm_count(self) -> int:
        return len(self._pool)

    def has_room(self) -> bool:
        """Whether one more live sandbox fits now (SANDBOX_MAX_LIVE, or memory when it is 0: capacity.py)."""
        if settings.SANDBOX_MAX_LIVE > 0:
            return len(self._live) < settings.SANDBOX_MAX_LIVE
        used = [s.cgroup.memory_used_bytes() if s.cgroup is not None else None for s in self._live.values()]
        used += [None] * self._pool_filling  # warming kernels haven't allocated yet
        return capacity.has_room(live=len(self._live), used_bytes=used,
                                 available=capacity.available_bytes(cgroups.own_cgroup_paths()))

    def capacity_now(self) -> capacity.CapacityNow:
        """Live sandboxes against the cap, memory in use and left, the warm pool (blocking: reads cgroups)."""
        held = [s.cgroup.memory_used_bytes() if s.cgroup is not None else None for s in [*self._live.values(), *self._pool]]
        return capacity.CapacityNow(
            live=len(self._live), max_live=settings.SANDBOX_MAX_LIVE or None, ceiling=capacity.ceiling(),
            cap_text=capacity.describe(), sandboxes_memory_bytes=sum(used or 0 for used in held),
            available_bytes=capacity.available_bytes(cgroups.own_cgroup_paths()),
            headroom_bytes=settings.SANDBOX_MEMORY_HEADROOM_MB * capacity.MIB,
            warm=len(self._pool), warming=self._pool_filling, has_room=self.has_room(),
        )

    def busy_reason(self) -> str:
        """Why a new sandbox can't start now ("busy: ..."; the E2B API answers it with 429)."""
        return f"busy: {len(self._live)} sandboxes are running ({capacity.describe()}); try again in a few minutes"

    def self_test(self) -> str:
        """Start a throwaway sandbox and import the kernels in it; "" when that works, else why not."""
        return self.isolation.problem or self._try_a_sandbox(["-c", "import ipykernel, bash_kernel; print('ok')"])

    def _try_a_sandbox(self, python_args: list[str]) -> str:
        sandbox = self._new_sandbox()
        try:
            argv = self.confined_argv(sandbox, command=[f"{jail.VENV}/bin/python", *python_args],
                                      language="python", control=None)
            with jail.hidden_options(argv) as (argv, fds):
                done = subprocess.run(argv, env=jail.OUTER_ENV, capture_output=True, text=True, timeout=120,
                                      pass_fds=fds, cwd="/")
            if done.stdout.strip() == "ok":
                return ""
            return (f"a test sandbox failed (status {done.returncode}): {done.stderr.strip()[-500:]}; "
                    "check that bubblewrap can create user namespaces here")
        except (OSError, subprocess.SubprocessError) as exc:
            return f"a test sandbox failed: {exc}"
        finally:
            sandbox.destroy()

    # --- the Protocol -----------------------------------------------------------------------

    async def health(self) -> Health:
        isolation = self.isolation
        if isolation.problem:
            return Health(ok=False, detail=isolation.problem, isolation="none")
        if threading.current_thread() is threading.main_thread():
            # The server's own loop (not a throwaway one in a worker thread): warm up ahead of the
            # first session, so even it gets a started kernel.
            self.fill_pool()
        return Health(
            ok=True,
            detail=f"{len(self._live)} live sandboxes ({capacity.describe()}), {len(self._pool)} warm",
            isolation=isolation.describe(),
        )

    async def create(self, *, owner_id: int, session_id: str) -> LocalSandbox:
        """A sandbox for this session, from the warm pool when one is ready.

        Raises SandboxUnavailable when the machine can't isolate code or too many are live.
        """
        isolation = self.isolation
        if isolation.problem:
            raise SandboxUnavailable(isolation.problem)
        self._ensure_reaper()
        if not self.has_room():
            await self.reap_idle()
            if not self.has_room():
                raise SandboxUnavailable(self.busy_reason())
        home = workspace_path(session_id)
        sandbox = None
        if home.exists():
            # The session has files from earlier: bind them (a warm sandbox's mounts are fixed).
            sandbox = self._new_sandbox(workspace=home)
            asyncio.ensure_future(sandbox.kernel("python")).add_done_callback(_swallow)
        while self._pool and sandbox is None:
            candidate = self._pool.pop(0)
            if not candidate.closed and all(k.alive for k in candidate.kernels.values()):
                sandbox = await self._move_workspace(candidate, home)
            else:
                await candidate.close()
        if sandbox is None:
            sandbox = await self._move_workspace(self._new_sandbox(), home)
            # Start Python now, so a run that follows soon finds it (nearly) ready.
            task = asyncio.ensure_future(sandbox.kernel("python"))
            task.add_done_callback(_swallow)
        sandbox.owner_id = owner_id
        sandbox.session_id = session_id
        sandbox.last_used = time.monotonic()
        self._live[sandbox.id] = sandbox
        self.fill_pool()
        return sandbox

    async def workspace(self, *, session_id: str, sandbox_id: str) -> LocalWorkspace | LocalSandbox:
        """The session's live sandbox, or its workspace on disk (which may not exist yet: it is
        made on the first write). Raises ValueError for a session id that isn't a UUID."""
        live = self._live.get(sandbox_id)
        if live is not None and not live.closed and live.session_id == session_id:
            return live
        return LocalWorkspace(workspace_path(session_id), owner=self.kernel_owner if self.as_root else None)

    def discard_workspace(self, session_id: str) -> None:
        """Delete a session's workspace from disk (its files are lost)."""
        shutil.rmtree(workspace_path(session_id), ignore_errors=True)

    async def connect(self, sandbox_id: str) -> LocalSandbox:
        sandbox = self._live.get(sandbox_id)
        if sandbox is None or sandbox.closed:
            raise SandboxGone(f"sandbox {sandbox_id} no longer exists (its kernel stopped or the server restarted)")
        return sandbox

    # --- pool, reaper, bookkeeping ----------------------------------------------------------

    def _new_sandbox(self, workspace: Path | None = None) -> LocalSandbox:
        """A sandbox (no kernel yet) bound to `workspace`, or to a fresh one in its own state dir."""
        isolation = self.isolation
        assert self._owner_dir is not None
        sandbox_id = secrets.token_hex(6)
        root = self._owner_dir / sandbox_id
        root.mkdir(mode=0o711)
        if workspace is None:
            prepare(root / "home", owner=(isolation.uid, isolation.gid) if isolation.as_root else None)
        cgroup = None
        if isolation.as_root and isolation.cgroup_version:
            name = f"{processes.pid_namespace()}.{self._owner_dir.name}.{sandbox_id}"
            cgroup = cgroups.Cgroup(isolation, name, Limits.from_settings())
        sandbox = LocalSandbox(self, sandbox_id, root, cgroup)
        if workspace is not None:
            sandbox.workspace = workspace
        return sandbox

    async def _move_workspace(self, sandbox: LocalSandbox, home: Path) -> LocalSandbox:
        """Make a fresh sandbox's workspace the session's persistent one, `home` (a rename: a running
        kernel's bind mount follows it). If `home` appeared meanwhile, a new sandbox binds that."""
        home.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        try:
            os.rename(sandbox.workspace, home)
        except OSError:  # `home` appeared meanwhile, or lies on another filesystem
            await sandbox.close()
            if not home.exists():
                with contextlib.suppress(FileExistsError):
                    prepare(home, owner=self.kernel_owner if self.as_root else None)
            sandbox = self._new_sandbox(workspace=home)
            asyncio.ensure_future(sandbox.kernel("python")).add_done_callback(_swallow)
            return sandbox
        sandbox.workspace = home
        return sandbox

    def new_kernel(self, sandbox: LocalSandbox, kind: str) -> Kernel:
        # A new control dir for every start (never one an earlier kernel's code could have touched).
        prefix = {"python": "py", "bash": "sh", "deno": "js", "r": "r"}[kind]
        control = sandbox.root / f"{prefix}-{secrets.token_hex(4)}"
        if len(f"{control}/{jail.SOCKETS}/k-1") > jail.UNIX_PATH_MAX:
            raise OSError(f"the state dir path is too long for Unix sockets: {control}")
        kernel = Kernel(
            kind=kind,
            control_dir=control,
            argv_for=lambda command: self.confined_argv(sandbox, command=command, language=kind, control=control),
            owner=self.kernel_owner,
        )
        return kernel

    def confined_argv(self, sandbox: LocalSandbox, *, command: list[str], language: str, control: Path | None,
                      network: bool = False) -> list[str]:
        assert self._kfiles is not None and self._kenv is not None
        return jail.bwrap_argv(
            self.isolation, workspace=sandbox.view(), control=control, kfiles=self._kfiles, kenv=self._kenv,
            command=command,
            env=jail.sandbox_env(language), limits=Limits.from_settings(), cgroup=sandbox.cgroup,
            network=network, language=language, tmp=sandbox.tmp_dir(),
        )

    def fill_pool(self) -> None:
        """Start Python sandboxes in the background until SANDBOX_POOL_SIZE are warm or warming."""
        missing = settings.SANDBOX_POOL_SIZE - len(self._pool) - self._pool_filling
        for _ in range(max(missing, 0)):
            self._pool_filling += 1
            asyncio.ensure_future(self._warm_one()).add_done_callback(_swallow)

    async def _warm_one(self) -> None:
        sandbox = self._new_sandbox()
        try:
            await sandbox.kernel("python")
        except BaseException:
            sandbox.detach()
            await asyncio.shield(asyncio.to_thread(sandbox.destroy))
            raise
        finally:
            self._pool_filling -= 1
        self._pool.append(sandbox)

    def forget(self, sandbox: LocalSandbox) -> None:
        self._live.pop(sandbox.id, None)
        if sandbox in self._pool:
            self._pool.remove(sandbox)

    async def reap_idle(self) -> list[str]:
        """Close sandboxes with no run for SANDBOX_IDLE_TIMEOUT_S (+ a grace); returns their ids.

        This is the backend's backstop: the sessions service reaps at SANDBOX_IDLE_TIMEOUT_S
        itself (ending the lease as "idle"), so the grace lets it go first.
        """
        cutoff = time.monotonic() - settings.SANDBOX_IDLE_TIMEOUT_S - REAPER_GRACE_S
        idle = [s for s in self._live.values() if s.last_used < cutoff and not s.busy]
        for sandbox in idle:
            sandbox.detach()
        for sandbox in idle:
            await asyncio.to_thread(sandbox.destroy)
        return [s.id for s in idle]

    def _ensure_reaper(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reaper is not None and not self._reaper.done() and self._reaper.get_loop() is loop:
            return
        self._reaper = loop.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        interval = max(1.0, min(60.0, settings.SANDBOX_IDLE_TIMEOUT_S / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_idle()
            except Exception:  # keep reaping; a failed teardown is retried by the next sweep
                log.exception("reaping idle sandboxes failed")

    def close_all(self) -> None:
        """Tear down every sandbox of this process (at exit)."""
        for sandbox in list(self._live.values()) + list(self._pool):
            sandbox.destroy()
        self._live.clear()
        self._pool.clear()
        if self._owner_dir is not None:
            mounts.remove_tree(self._owner_dir)
            for work in workspaces_dir().glob(f".ovl-{self._owner_dir.name}.*"):
                mounts.remove_tree(work)


def _close_all_at_exit(ref: weakref.ref[LocalBackend]) -> None:
    backend = ref()
    if backend is not None and backend._pid == os.getpid():
        backend.close_all()


def _swallow(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


def sweep(state: Path, isolation: Isolation) -> None:
    """Remove state dirs (with their HMAC-keyed connection files) and cgroups of dead servers only."""
    this_boot = processes.boot_id()
    this_pidns = processes.pid_namespace()
    for owner_dir in (state / "sbx").iterdir():
        if _owner_alive(owner_dir.name) and _read(owner_dir / "boot_id") in (this_boot, ""):
            continue
        mounts.remove_tree(owner_dir)  # its mounts first: a workspace overlay must not be walked
    for work in workspaces_dir().glob(".ovl-*"):  # overlays' scratch dirs (sandbox.py)
        owner = work.name.removeprefix(".ovl-").rsplit(".", 1)[0]
        if not _owner_alive(owner):
            mounts.remove_tree(work)
    for parent in cgroups.sandpit_parents(isolation):
        try:
            children = [p for p in parent.iterdir() if p.is_dir()]
        except OSError:
            continue
        dead = []
        for child in children:
            # "<pid namespace>.<pid>.<start time>.<id>": only a server in our pid namespace can be
            # judged dead from here (the cgroup tree may be shared with other containers).
            pidns, _, owner = child.name.partition(".")
            if pidns == this_pidns and owner.count(".") == 2 and not _owner_alive(owner.rsplit(".", 1)[0]):
                dead.append(child)
        cgroups.remove_cgroup_dirs(dead)
    for leftover in state.glob(".kfiles-*"):
        pid = leftover.name.split("-")[1]
        if pid.isdigit() and not processes.process_start_time(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _owner_alive(owner: str) -> bool:
    pid, _, start = owner.partition(".")
    if not pid.isdigit() or not start:
        return False
    return processes.process_start_time(int(pid)) == start


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
