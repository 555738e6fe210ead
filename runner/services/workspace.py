"""A session's files from the page: upload, delete, rename (reads, and the path checks, are in
selectors/workspace.py).

Everything goes through the Sandbox Protocol's files half (`base.Workspace`): the backend's
`workspace()` reaches the files with no kernel started (the local backend's workspace is on disk
per session; E2B's lives in its sandbox), and an upload to an E2B session with no live sandbox
starts one, as a run would.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from django.conf import settings

from runner.models import ChatSession
from runner.sandboxes.base import FileInfo, FileTooLarge, Workspace
from runner.selectors.workspace import NoWorkspace, workspace_clean_path, workspace_current
from runner.services.sandboxes import sandbox_acquire

NAME_MAX_CHARS = 255


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


def workspace_clean_name(*, name: str) -> str:
    """An uploaded file's name: one path component, or ValueError."""
    if "\0" in name:
        raise ValueError("A file name may not contain a NUL byte.")
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a file name (no folders, '..' or slashes).")
    if len(name) > NAME_MAX_CHARS:
        raise ValueError(f"A file name may be at most {NAME_MAX_CHARS} characters.")
    return name


async def workspace_open(*, session: ChatSession, start: bool = False) -> Workspace:
    """The session's files: its live sandbox or (local) its workspace on disk. With `start`, a
    session whose files need a sandbox (E2B) and has none gets one, as a run would.

    Raises NoWorkspace (nothing to read and `start` is false), SandboxUnavailable or SandboxError.
    """
    try:
        return await workspace_current(session=session)
    except NoWorkspace:
        if not start:
            raise
    return (await sandbox_acquire(session=session)).sandbox


async def workspace_upload(*, session: ChatSession, folder: str, uploads: list[Upload], overwrite: bool) -> list[FileInfo]:
    """Write `uploads` into `folder` and return their entries. Everything is checked before the
    first byte is written: names (ValueError), sizes (FileTooLarge) and, without `overwrite`,
    names that exist (FileExistsError naming them). The workspace quota is checked per file, so a
    FileTooLarge for the quota may come after earlier files were written."""
    folder = workspace_clean_path(path=folder)
    if not uploads:
        # Django's parser drops a part named '', '.' or '..' (or only a path) as it drops one cut short.
        raise ValueError("The upload holds no file to write: its name was empty, '.' or '..', or the upload was cut short.")
    limit = settings.SANDBOX_FILE_MAX_BYTES
    for upload in uploads:
        workspace_clean_name(name=upload.name)
        if len(upload.data) > limit:
            raise FileTooLarge(f"{upload.name} is {_mib(len(upload.data))}; the limit is {_mib(limit)} per file.")
    workspace = await workspace_open(session=session, start=True)
    if not overwrite:
        try:
            existing = {entry.name for entry in await workspace.list_files(folder or ".")}
        except FileNotFoundError:
            existing = set()
        clashes = sorted(u.name for u in uploads if u.name in existing)
        if clashes:
            raise FileExistsError(f"{', '.join(clashes)} already exist{'s' if len(clashes) == 1 else ''}; replace?")
    for upload in uploads:
        await workspace.write_file(posixpath.join(folder, upload.name), upload.data)
    written = {u.name for u in uploads}
    return [entry for entry in await workspace.list_files(folder or ".") if entry.name in written]


async def workspace_delete(*, session: ChatSession, path: str) -> None:
    """Delete a file or folder. Raises ValueError, FileNotFoundError or NoWorkspace."""
    path = workspace_clean_path(path=path, allow_root=False)
    await (await workspace_open(session=session)).delete_file(path)


async def workspace_rename(*, session: ChatSession, path: str, to: str) -> None:
    """Rename or move a file or folder. Raises ValueError, FileNotFoundError, FileExistsError or NoWorkspace."""
    path = workspace_clean_path(path=path, allow_root=False)
    to = workspace_clean_path(path=to, allow_root=False)
    await (await workspace_open(session=session)).rename_file(path, to)


def _mib(size_bytes: int) -> str:
    return f"{size_bytes / 2**20:.1f} MiB"


__all__ = [
    "NAME_MAX_CHARS", "NoWorkspace", "Upload", "workspace_clean_name", "workspace_clean_path", "workspace_delete", "workspace_open",
    "workspace_rename", "workspace_upload",
]
