"""Reads of a session's files for the page: a folder's listing, a file's bytes, a preview; and the
workspace-relative path check that reads and writes (services/workspace.py) share."""

from __future__ import annotations

import base64
import csv
import io
import mimetypes
import posixpath
from dataclasses import dataclass, field
from typing import Any

from runner.models import ChatSession
from runner.sandboxes.base import FileKind, SandboxUnavailable, Workspace, get_backend

PATH_MAX_CHARS = 1024
PREVIEW_TEXT_BYTES = 64 * 1024
PREVIEW_CSV_ROWS = 200
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".svg": "image/svg+xml"}


class NoWorkspace(Exception):
    """The session's files live in a sandbox that isn't running (E2B): there is nothing to read."""


def workspace_clean_path(*, path: str, allow_root: bool = True) -> str:
    """`path` as a workspace-relative path ("" for the root), or ValueError (fit for a user) for a
    NUL byte, an absolute path, a `..` component or an over-long path. Backends check again."""
    if "\0" in path:
        raise ValueError("A file path may not contain a NUL byte.")
    if len(path) > PATH_MAX_CHARS:
        raise ValueError(f"A file path may be at most {PATH_MAX_CHARS} characters.")
    if path.startswith("/"):
        raise ValueError(f"{path!r} is absolute; use a path relative to the workspace (/home/user).")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{path!r} contains '..'; paths must stay inside the workspace.")
    if not parts and not allow_root:
        raise ValueError("Name a file or folder in the workspace.")
    return "/".join(parts)


async def workspace_current(*, session: ChatSession) -> Workspace:
    """The session's files as they are: its live sandbox or (local) its workspace on disk; nothing
    is started (services.workspace_open starts a sandbox when asked to).

    Raises NoWorkspace (the files need a sandbox that isn't running), SandboxUnavailable or SandboxError.
    """
    try:
        backend = get_backend()
    except Exception as exc:
        raise SandboxUnavailable(f"no sandbox backend could be loaded: {exc}") from exc
    sandbox_id = session.sandbox_id if session.backend == backend.name else ""
    workspace = await backend.workspace(session_id=str(session.id), sandbox_id=sandbox_id)
    if workspace is None:
        raise NoWorkspace("No sandbox is running for this session, so it has no files yet; they appear after a run or an upload.")
    return workspace


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    type: FileKind  # "fifo", "socket", "device" and "symlink" are listed as what they are, never read
    size: int
    modified: float

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "type": self.type, "size": self.size, "modified": self.modified}


@dataclass(frozen=True)
class Listing:
    path: str
    entries: list[Entry] = field(default_factory=list)
    # Why there is nothing to list ("" when the listing is real).
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "entries": [e.as_json() for e in self.entries]}
        if self.note:
            body["note"] = self.note
        return body


async def workspace_listing(*, session: ChatSession, path: str = "") -> Listing:
    """The folder's entries, folders first then by name. Raises ValueError for a bad path,
    FileNotFoundError for a missing folder, SandboxUnavailable/SandboxError from the backend."""
    path = workspace_clean_path(path=path)
    try:
        workspace = await workspace_current(session=session)
    except NoWorkspace as exc:
        return Listing(path=path, note=str(exc))
    infos = await workspace.list_files(path or ".")
    entries = [Entry(name=i.name, path=i.path, type=i.type, size=i.size, modified=i.modified) for i in infos]
    entries.sort(key=lambda e: (e.type != "dir", e.name.lower()))
    return Listing(path=path, entries=entries)


async def workspace_file(*, session: ChatSession, path: str) -> bytes:
    """The file's bytes (at most SANDBOX_FILE_MAX_BYTES). Raises ValueError, FileNotFoundError
    (also when the session's files are gone with its sandbox), FileTooLarge or SandboxError."""
    path = workspace_clean_path(path=path, allow_root=False)
    try:
        workspace = await workspace_current(session=session)
    except NoWorkspace as exc:
        raise FileNotFoundError(str(exc)) from None
    return await workspace.read_file(path)


def workspace_preview(*, name: str, data: bytes) -> dict[str, Any]:
    """What the panel shows for a file: {"kind": "image", "src": data URL} | {"kind": "csv",
    "rows": first 200 rows} | {"kind": "text", "text": first 64 KiB, "language": by extension}
    | {"kind": "binary"}; "truncated" says whether there is more."""
    extension = posixpath.splitext(name)[1].lower()
    if extension in _IMAGE_TYPES:
        return {"kind": "image", "src": f"data:{_IMAGE_TYPES[extension]};base64,{base64.b64encode(data).decode()}"}
    head = data[:PREVIEW_TEXT_BYTES]
    if b"\0" in head[:8192]:
        return {"kind": "binary", "size": len(data), "mime": mimetypes.guess_type(name)[0] or "application/octet-stream"}
    text = head.decode("utf-8", errors="replace")
    if len(data) > PREVIEW_TEXT_BYTES and text.endswith("\ufffd"):
        text = text.rstrip("\ufffd")  # a multi-byte character cut at the 64 KiB mark
    if extension in (".csv", ".tsv"):
        rows: list[list[str]] = []
        reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""),
                            delimiter="\t" if extension == ".tsv" else ",")
        try:
            for row in reader:
                if len(rows) == PREVIEW_CSV_ROWS:
                    return {"kind": "csv", "rows": rows, "truncated": True}
                rows.append(row)
        except csv.Error:
            pass  # not really CSV: show it as text
        else:
            return {"kind": "csv", "rows": rows, "truncated": False}
    return {"kind": "text", "text": text, "language": extension.lstrip("."), "truncated": len(data) > PREVIEW_TEXT_BYTES}


# Where the local backend's `install` puts Python packages (relative to the workspace).
PACKAGES_DIR = ".local/packages"


async def packages_installed(*, session: ChatSession) -> list[tuple[str, str]]:
    """(name, version) of the Python packages installed into the session's workspace, by name.
    Empty when none are, or when the backend installs elsewhere (E2B installs system-wide)."""
    try:
        workspace = await workspace_current(session=session)
        entries = await workspace.list_files(PACKAGES_DIR)
    except (NoWorkspace, FileNotFoundError):
        return []
    found = []
    for entry in entries:
        if entry.is_dir and entry.name.endswith(".dist-info"):
            name, _, version = entry.name[: -len(".dist-info")].rpartition("-")
            found.append((name.replace("_", "-"), version))
    return sorted(found, key=lambda p: p[0].lower())
