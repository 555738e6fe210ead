"""A session's workspace on disk: the folder a LocalSandbox binds at /home/user.

It lives under SANDBOX_WORKSPACES_DIR/<session id>/, outside any one sandbox's state dir, so it
survives a kernel restart, the idle reaper and a server restart; the files API reaches it with no
kernel running. Satisfies runner.sandboxes.base.Workspace.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from django.conf import settings

from runner.sandboxes.base import FileInfo, FileTooLarge
from runner.sandboxes.local import files

# ChatSession ids are UUIDs; anything else must not become a path.
_SESSION_ID = re.compile(r"[0-9a-fA-F-]{1,64}")

T = TypeVar("T")
# Workspace I/O (reads, writes, listings, usage walks) runs on its own bounded pool, never the
# loop's default one: however slow a workspace is, Stop, timeouts and teardown don't queue behind it.
_io_pool: ThreadPoolExecutor | None = None


def io_pool() -> ThreadPoolExecutor:
    global _io_pool
    if _io_pool is None:
        _io_pool = ThreadPoolExecutor(max_workers=settings.SANDBOX_FILES_IO_THREADS, thread_name_prefix="workspace-io")
    return _io_pool


async def in_io_pool(fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """`fn(*args, **kwargs)` on the workspace I/O pool."""
    return await asyncio.get_running_loop().run_in_executor(io_pool(), functools.partial(fn, *args, **kwargs))


def workspaces_dir() -> Path:
    return Path(settings.SANDBOX_WORKSPACES_DIR)


def workspace_path(session_id: str) -> Path:
    """Where the session's workspace lives. Raises ValueError for an id that isn't a plain UUID."""
    if not _SESSION_ID.fullmatch(session_id):
        raise ValueError(f"{session_id!r} is not a session id")
    return workspaces_dir() / session_id.lower()


def quota_bytes() -> int:
    return settings.SANDBOX_WORKSPACE_QUOTA_MB * 1024 * 1024


def over_quota_message(usage_bytes: int) -> str:
    return (f"The workspace holds {usage_bytes / 2**20:.0f} MiB, over its quota of "
            f"{settings.SANDBOX_WORKSPACE_QUOTA_MB} MiB. Delete files; until then uploads and installs "
            "are refused.")


def prepare(path: Path, *, owner: tuple[int, int] | None) -> None:
    """Make an empty workspace at `path` (with ~/.local/packages, where `install` puts packages),
    owned by the sandbox user when `owner` is given. The parent is created private to us."""
    parent = path.parent
    parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    (path / ".local" / "packages").mkdir(parents=True)
    if owner is not None:
        # Innermost first: until `path` is the sandbox user's, nothing in it can be swapped for a link.
        for made in (path / ".local" / "packages", path / ".local", path):
            os.chown(made, *owner, follow_symlinks=False)


class LocalWorkspace:
    """The files of one workspace folder, with the same checks whether or not a kernel runs."""

    def __init__(self, path: Path, *, owner: tuple[int, int] | None, names: dict[int, str] | None = None,
                 quota: bool = True) -> None:
        self.path = path
        # (uid, gid) new files and folders are given when the server runs as root, else None.
        self.owner = owner
        self.names = names or {}  # uid/gid -> the name the sandbox shows (listings' owner, group)
        self.quota = quota  # False for a folder with a size limit of its own (a sandbox's /tmp tmpfs)

    def __repr__(self) -> str:
        return f"<LocalWorkspace {self.path}>"

    def _ensure(self) -> None:
        if not self.path.exists():
            try:
                prepare(self.path, owner=self.owner)
            except FileExistsError:
                pass  # made at the same moment by a sandbox starting for the session

    async def usage_bytes(self) -> int:
        if not self.path.exists():
            return 0
        return await in_io_pool(files.usage_bytes, str(self.path))

    async def refuse_if_full(self, adding_bytes: int = 0) -> int:
        """The workspace's size now; raises FileTooLarge if `adding_bytes` more would pass the quota."""
        if not self.quota:
            return 0
        usage = await self.usage_bytes()
        if usage + adding_bytes > quota_bytes():
            raise FileTooLarge(over_quota_message(usage))
        return usage

    async def write_file(self, path: str, data: bytes, *, metadata: dict[str, str] | None = None) -> None:
        files.parts_of(path)  # a bad name is refused before anything is measured or made
        await self.refuse_if_full(len(data))
        self._ensure()
        uid, gid = self.owner if self.owner is not None else (-1, -1)
        await in_io_pool(files.write, str(self.path), path, data,
                                max_bytes=settings.SANDBOX_FILE_MAX_BYTES, uid=uid, gid=gid, metadata=metadata)

    async def read_file(self, path: str) -> bytes:
        files.parts_of(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{path!r} does not exist")
        return await in_io_pool(files.read, str(self.path), path, max_bytes=settings.SANDBOX_FILE_MAX_BYTES)

    async def list_files(self, path: str = ".") -> list[FileInfo]:
        parts = files.parts_of(path)
        if not self.path.exists():
            if parts:
                raise FileNotFoundError(f"{path!r} does not exist")
            return []
        return await in_io_pool(files.listing, str(self.path), path, names=self.names)

    async def delete_file(self, path: str) -> None:
        files.parts_of(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{path!r} does not exist")
        await in_io_pool(files.remove, str(self.path), path)

    async def rename_file(self, path: str, to: str) -> None:
        files.parts_of(path), files.parts_of(to)
        if not self.path.exists():
            raise FileNotFoundError(f"{path!r} does not exist")
        await in_io_pool(files.move, str(self.path), path, to)
