"""envd's EntryInfo for the files API: metadata from lstat (mode, owner, group, modified time,
a folder's own size), a symlink's target (looked up through the files API by name, never
followed on the host) and user metadata (`X-Metadata-*` upload headers, kept as xattrs).
The folders it reaches are the sandbox's writable ones: /home/user and /tmp."""

from __future__ import annotations

import datetime
import posixpath
import re
import stat as stat_
from typing import Any

from runner.e2b_api.wire import Request, api_error
from runner.sandboxes.base import FileInfo, Sandbox

HOME = "/home/user"


def absolute(path: str) -> str:
    """A sandbox path as envd shows it: absolute, normalised (relative ones are under /home/user)."""
    return posixpath.normpath(path if path.startswith("/") else f"{HOME}/{path}")


# envd's FileType for each kind (envd has no FIFO, socket or device type: UNSPECIFIED, and the
# mode and permissions say which it is).
_ENTRY_TYPES = {"file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY", "symlink": "FILE_TYPE_SYMLINK"}
# The mode an entry is shown with when its backend doesn't say (the E2B backend's listings).
_MODE_BITS = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "fifo": 0o010644, "socket": 0o140755,
              "device": 0o020644}
# A link is followed (in the sandbox's paths, by name, never on the host) at most this many times.
LINK_HOPS_MAX = 8
# The folders the files API reaches (a sandboxed process can write to no others).
AREAS = {HOME: FileInfo(name="user", path=HOME, is_dir=True, size=0, mode=0o040755, owner="user", group="user"),
         "/tmp": FileInfo(name="tmp", path="/tmp", is_dir=True, size=0, mode=0o041777, owner="root", group="root")}


def _timestamp(seconds: float) -> str:
    """A protobuf JSON Timestamp (RFC 3339, UTC)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat().replace("+00:00", "Z")


def entry(info: FileInfo, target: FileInfo | None = None, target_path: str | None = None) -> dict[str, Any]:
    """envd's EntryInfo (proto JSON) for an entry, from lstat. A symlink is described as envd does:
    its target's type and mode (`target`, None when it can't be reached), `symlinkTarget` the
    target's absolute path, `permissions` the link's own."""
    mode = info.mode or _MODE_BITS[info.type]
    shown = target if info.type == "symlink" else info
    found: dict[str, Any] = {
        "name": info.name,
        "type": _ENTRY_TYPES.get(shown.type, "FILE_TYPE_UNSPECIFIED") if shown is not None else "FILE_TYPE_UNSPECIFIED",
        "path": absolute(info.path),
        "size": str(info.entry_size if info.entry_size is not None else info.size),
        "mode": ((shown.mode or _MODE_BITS[shown.type]) & 0o777) if shown is not None else 0,
        "permissions": stat_.filemode(mode),
        "owner": info.owner or "user",
        "group": info.group or "user",
    }
    if info.modified:
        found["modifiedTime"] = _timestamp(info.modified)
    if info.type == "symlink":
        found["symlinkTarget"] = target_path or absolute(info.path)
    if info.metadata:
        found["metadata"] = dict(info.metadata)
    return found


async def describe(handle: Sandbox, info: FileInfo) -> dict[str, Any]:
    """entry(info), a symlink's target looked up through the files API (by name, at most
    LINK_HOPS_MAX links; one that leaves the workspace and /tmp, or dangles, has no type)."""
    if info.type != "symlink":
        return entry(info)
    if info.link is None:  # a backend that doesn't read links (E2B's): the link as a link
        return entry(info, info)
    here, current, target = absolute(info.path), info, None
    for _ in range(LINK_HOPS_MAX):
        here = posixpath.normpath(posixpath.join(posixpath.dirname(here), current.link or ""))
        try:
            current = await stat(handle, here)
        except (FileNotFoundError, ValueError, OSError):
            break
        if current.type != "symlink":
            target = current
            break
    return entry(info, target, here)


async def stat(handle: Sandbox, path: str) -> FileInfo:
    full = absolute(path)
    if full in AREAS:
        return AREAS[full]
    parent, name = posixpath.split(full)
    for info in await handle.list_files(parent):
        if info.name == name:
            return info
    raise FileNotFoundError(path)


async def is_dir(handle: Sandbox, path: str) -> bool:
    return (await stat(handle, path)).is_dir


async def describe_path(handle: Sandbox, path: str) -> dict[str, Any] | None:
    try:
        return await describe(handle, await stat(handle, path))
    except (FileNotFoundError, ValueError, OSError):
        return None


METADATA_HEADER = "x-metadata-"
METADATA_KEYS_MAX = 32
METADATA_VALUE_MAX_BYTES = 4096
_METADATA_KEY = re.compile(r"[a-z0-9!#$%&'*+\-.^_`|~]{1,200}")


def upload_metadata(request: Request) -> dict[str, str]:
    """The upload's user metadata (`X-Metadata-<key>: value` headers, keys lower-cased, as envd
    reads them); 400 for a bad key or value, or past METADATA_KEYS_MAX keys."""
    found = {name[len(METADATA_HEADER):]: value for name, value in request.headers.items()
             if name.startswith(METADATA_HEADER)}
    if len(found) > METADATA_KEYS_MAX:
        raise api_error(400, f"at most {METADATA_KEYS_MAX} metadata keys per upload")
    for key, value in found.items():
        if not _METADATA_KEY.fullmatch(key):
            raise api_error(400, f"metadata key {key[:50]!r} is not valid (letters, digits and !#$%&'*+-.^_`|~)")
        if len(value.encode()) > METADATA_VALUE_MAX_BYTES or not value.isprintable():
            raise api_error(400, f"metadata value for {key[:50]!r} must be printable and at most {METADATA_VALUE_MAX_BYTES} bytes")
    return found
