"""The files API of a local sandbox: paths stay inside the workspace, whatever the user planted.

Every path is walked one component at a time with O_NOFOLLOW from an fd on the workspace, so
neither `..` nor a symlink (even one swapped in mid-call) can lead outside it. Files are opened
with O_NONBLOCK|O_NOCTTY and checked with fstat, so a FIFO, socket or device planted under a
file's name is refused at once instead of blocking the thread that opened it.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat

from runner.sandboxes.base import FileInfo, FileKind, FileTooLarge
from runner.sandboxes.local.jail import HOME


def parts_of(path: str) -> list[str]:
    """The components of a workspace path; raises ValueError for one that would leave it."""
    if "\0" in path:
        raise ValueError("a file path may not contain a NUL byte")
    if path.startswith("/"):
        if path == HOME or path.startswith(HOME + "/"):
            path = path[len(HOME):]
        else:
            raise ValueError(f"{path!r} is outside the workspace ({HOME}); use a path relative to it")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{path!r} contains '..'; paths must stay inside the workspace")
    return parts


def open_dir(root: str, parts: list[str], *, create: bool = False, uid: int = -1, gid: int = -1) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if uid >= 0:
                        os.chown(part, uid, gid, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _explain(exc, part) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _explain(exc: OSError, name: str) -> Exception:
    if exc.errno == errno.ELOOP:
        return ValueError(f"{name!r} is a symlink; the files API does not follow links")
    if exc.errno == errno.ENOTDIR:
        return ValueError(f"{name!r} is not a directory (or is a symlink)")
    if exc.errno == errno.ENOENT:
        return FileNotFoundError(f"{name!r} does not exist")
    return exc


def kind_of(mode: int) -> FileKind:
    """What an lstat/fstat mode is, in the files API's words."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


_NOT_REGULAR = {"dir": "a folder", "symlink": "a symlink", "fifo": "a FIFO (named pipe)", "socket": "a socket",
                "device": "a device"}


def _open_regular(dir_fd: int, name: str, path: str, flags: int) -> int:
    """An fd on the regular file `name` in `dir_fd`; ValueError (nothing waited for) for anything else.

    O_NONBLOCK makes the open of a FIFO return at once (or fail with ENXIO), and fstat on the fd
    (not the name, which the sandbox may swap) decides what was opened.
    """
    try:
        fd = os.open(name, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # ENXIO: a FIFO with no reader, or a socket
            try:
                kind = kind_of(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                kind = "device"
            raise ValueError(f"{path!r} is {_NOT_REGULAR.get(kind, 'something else')}, not a regular file") from None
        raise _explain(exc, name) from None
    try:
        kind = kind_of(os.fstat(fd).st_mode)
        if kind != "file":
            raise ValueError(f"{path!r} is {_NOT_REGULAR[kind]}, not a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


# User metadata (E2B's files.write(metadata=)) lives in xattrs under this prefix, as envd keeps it.
XATTR_PREFIX = "user.e2b."


def _set_metadata(fd: int, metadata: dict[str, str]) -> None:
    """Replace the file's metadata with `metadata` (an empty one clears it), on its fd."""
    for name in os.listxattr(fd):
        if name.startswith(XATTR_PREFIX):
            os.removexattr(fd, name)
    for key, value in metadata.items():
        os.setxattr(fd, XATTR_PREFIX + key, value.encode())


def _metadata(dir_fd: int, name: str) -> tuple[tuple[str, str], ...]:
    """The metadata of a file or folder `name` in `dir_fd`: read through an O_PATH|O_NOFOLLOW fd
    (`/proc/self/fd/N` names that inode and no other), never following a link."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return ()
    try:
        if kind_of(os.fstat(fd).st_mode) not in ("file", "dir"):
            return ()
        where = f"/proc/self/fd/{fd}"
        found = []
        for attr in sorted(os.listxattr(where)):
            if attr.startswith(XATTR_PREFIX):
                found.append((attr[len(XATTR_PREFIX):], os.getxattr(where, attr).decode(errors="replace")))
        return tuple(found)
    except OSError:
        return ()
    finally:
        os.close(fd)


def write(root: str, path: str, data: bytes, *, max_bytes: int, uid: int, gid: int,
          metadata: dict[str, str] | None = None) -> None:
    if len(data) > max_bytes:
        raise FileTooLarge(f"the file is {len(data)} bytes; the limit is {max_bytes}")
    parts = parts_of(path)
    if not parts:
        raise ValueError("a file path is required")
    dir_fd = open_dir(root, parts[:-1], create=True, uid=uid, gid=gid)
    try:
        # No O_TRUNC at open: the fd is truncated once fstat says it is a regular file.
        fd = _open_regular(dir_fd, parts[-1], path, os.O_WRONLY | os.O_CREAT)
        # Unbuffered, in envd's order (a watch sees create, chmod, write): owner, truncate, data.
        with os.fdopen(fd, "wb", buffering=0) as f:
            if uid >= 0:
                os.fchown(f.fileno(), uid, gid)
            if os.fstat(f.fileno()).st_size:
                os.ftruncate(f.fileno(), 0)
            view = memoryview(data)
            while view:
                view = view[f.write(view) or 0:]
            _set_metadata(f.fileno(), metadata or {})
    finally:
        os.close(dir_fd)


def read(root: str, path: str, *, max_bytes: int) -> bytes:
    parts = parts_of(path)
    if not parts:
        raise ValueError("a file path is required")
    dir_fd = open_dir(root, parts[:-1])
    try:
        fd = _open_regular(dir_fd, parts[-1], path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_size > max_bytes:
                raise FileTooLarge(f"{path!r} is {info.st_size} bytes; the limit is {max_bytes}")
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(dir_fd)


def listing(root: str, path: str, *, names: dict[int, str] | None = None) -> list[FileInfo]:
    """The entries of a folder, from lstat (a link is described, never followed). `names` maps
    uids and gids to the names the sandbox knows them by; others are shown as numbers."""
    parts = parts_of(path)
    names = names or {}
    fd = open_dir(root, parts)
    try:
        found = []
        for name in sorted(os.listdir(fd)):
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                link = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(info.st_mode) else None
            except OSError:
                continue
            rel = posixpath.join(*parts, name) if parts else name
            kind = kind_of(info.st_mode)
            found.append(FileInfo(name=name, path=rel, is_dir=kind == "dir", size=info.st_size if kind == "file" else 0,
                                  modified=info.st_mtime, kind=kind, mode=info.st_mode, link=link,
                                  owner=names.get(info.st_uid, str(info.st_uid)),
                                  group=names.get(info.st_gid, str(info.st_gid)), entry_size=info.st_size,
                                  metadata=_metadata(fd, name) if kind in ("file", "dir") else ()))
        return found
    finally:
        os.close(fd)


def remove(root: str, path: str) -> None:
    """Remove a file, link or folder (with its contents, never following links)."""
    parts = parts_of(path)
    if not parts:
        raise ValueError("the workspace itself can't be deleted; name a file or folder in it")
    dir_fd = open_dir(root, parts[:-1])
    try:
        try:
            info = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _explain(exc, parts[-1]) from None
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(parts[-1], dir_fd=dir_fd)  # fd-based: safe against links swapped in
        else:
            os.unlink(parts[-1], dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def move(root: str, path: str, to: str) -> None:
    """Rename `path` to `to` (whose folder must exist). Raises FileExistsError when `to` exists."""
    source, target = parts_of(path), parts_of(to)
    if not source or not target:
        raise ValueError("name a file or folder in the workspace, not the workspace itself")
    if target[: len(source)] == source:
        raise ValueError(f"{path!r} can't be moved into itself")
    source_fd = open_dir(root, source[:-1])
    try:
        target_fd = open_dir(root, target[:-1])
        try:
            try:
                os.stat(target[-1], dir_fd=target_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise FileExistsError(f"{to!r} already exists")
            try:
                os.rename(source[-1], target[-1], src_dir_fd=source_fd, dst_dir_fd=target_fd)
            except OSError as exc:
                raise _explain(exc, source[-1]) from None
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


def usage_bytes(root: str) -> int:
    """The disk space the files under `root` take. fd-based (os.fwalk): a folder swapped for a
    symlink mid-walk is not followed out of the workspace."""
    total = 0
    for _dirpath, _dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in filenames:
            try:
                total += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
            except OSError:
                pass
    return total
