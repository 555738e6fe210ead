"""Filesystems of their own for what a sandbox binds, so its /proc/self/mountinfo names no host path.

A bind mount's `root` field in mountinfo is the source's path within its filesystem, whoever reads
it, so bwrap's binds of host folders told the sandbox where the state dir, the kernels' venv and
its workspace live. As root, every source a sandbox binds is instead the root of a mount of its
own, made by the server on the host (its root field is `/`, its source `sandpit`):

- a kernel's control dir: a small tmpfs per kernel start (`mount_tmpfs`);
- the kernels' venv and kernel files: a read-only overlay per server process (`mount_read_only`);
- a sandbox's /tmp: a size-limited tmpfs per sandbox, bound at /tmp in all its processes and
  reached by the files API (`mount_sandbox_tmp`);
- a session's workspace: an overlay per sandbox whose upper layer is the workspace folder and whose
  lower layer is empty (`mount_workspace`). Host-side file I/O of a live sandbox goes through
  that mount too (a change made beside an overlay, in its upper dir, is undefined behaviour).

Overlay options name their layers as `/proc/self/fd/N` (opened O_PATH|O_NOFOLLOW here and closed
after the mount), and that string is all mountinfo and /proc/self/mounts show of them. Nothing
is ever mounted inside a folder the sandbox can write to. Before removing a folder, `unmount_under`
detaches every mount at or below it (a plain rmtree would walk into a mounted workspace and delete
its files).

As non-root nothing can be mounted: bwrap binds the host folders, and mountinfo names them
(`Isolation.describe()` says so).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

SOURCE = b"sandpit"
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class MountFailed(OSError):
    """A mount that hides host paths could not be made."""


def _mount(target: Path, fstype: str, flags: int, options: str) -> None:
    if _libc.mount(SOURCE, os.fsencode(target), fstype.encode(), flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise MountFailed(err, f"mounting {fstype} on {target} failed: {os.strerror(err)}")


@contextlib.contextmanager
def _layer_fds(*paths: Path) -> Iterator[list[str]]:
    """`/proc/self/fd/N` names for O_PATH|O_NOFOLLOW fds of `paths` (each must be a real directory)."""
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC))
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def mount_tmpfs(target: Path, *, size_bytes: int, mode: int = 0o711) -> None:
    """A fresh root-owned tmpfs on the (root's, new, empty) directory `target`."""
    _mount(target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"size={size_bytes},nr_inodes=256,mode={mode:o},uid=0,gid=0")


def mount_sandbox_tmp(target: Path, *, size_bytes: int) -> None:
    """A sandbox's /tmp: a fresh tmpfs (root's, 1777 like any /tmp, no setuid or devices) on the
    (root's, new, empty) directory `target`, shared by all the sandbox's processes."""
    _mount(target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode=1777,uid=0,gid=0")


def mount_read_only(target: Path, source: Path, empty: Path) -> None:
    """`source` (a directory only root can change) seen read-only at `target`: an overlay of it
    over the empty directory `empty` (an overlay with no upper layer needs two lower ones)."""
    with _layer_fds(source, empty) as (lower, nothing):
        _mount(target, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, f"lowerdir={lower}:{nothing}")


def mount_workspace(target: Path, upper: Path, work: Path, empty: Path) -> None:
    """The workspace folder `upper` seen read-write at `target` (an overlay over `empty`); `work`
    is overlay's own scratch dir, new, root's, on `upper`'s filesystem and outside it."""
    with _layer_fds(empty, upper, work) as (lower, up, scratch):
        _mount(target, "overlay", MS_NOSUID | MS_NODEV, f"lowerdir={lower},upperdir={up},workdir={scratch}")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points_under(path: Path) -> list[str]:
    """This namespace's mount points at or below `path`, deepest first."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split(" ", 5)[4])
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def is_mount_point(path: Path) -> bool:
    return os.path.realpath(path) in mount_points_under(path)


def unmount_under(path: Path) -> None:
    """Detach every mount at or below `path` (lazily: a sandbox still using one keeps its copy).
    Raises MountFailed if one stays."""
    for _ in range(3):
        points = mount_points_under(path)
        if not points:
            return
        for point in points:
            _libc.umount2(os.fsencode(point), MNT_DETACH | UMOUNT_NOFOLLOW)
    left = mount_points_under(path)
    if left:
        raise MountFailed(0, f"could not unmount {', '.join(left)}")


def remove_tree(path: Path) -> None:
    """shutil.rmtree(path) once nothing is mounted below it; a mount that stays keeps the tree."""
    try:
        unmount_under(path)
    except MountFailed:
        return  # never walk into a mount: it may be a workspace
    shutil.rmtree(path, ignore_errors=True)
