"""Filesystem watches on a sandbox's folders (envd's WatchDir and CreateWatcher), with inotify.

A watch is set on a folder reached the files API's way (one O_NOFOLLOW component at a time from
the area's root fd) and added through `/proc/self/fd/N` of that fd, so the kernel watches exactly
that inode and no name the sandbox controls is resolved. A recursive watch walks the tree with
`os.fwalk(follow_symlinks=False)` and adds each folder made later the same way, from the root.

Events are envd's: create, write, remove, rename, chmod, each naming the entry relative to the
watched folder. A watch holds at most WATCH_EVENTS_MAX unread events and WATCH_DIRS_MAX folders;
past either (or when the kernel's own queue overflows) it ends with `WatchOverflow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
from collections.abc import Callable

from inotify_simple import INotify
from inotify_simple import flags as IN

from runner.sandboxes.local import files

WATCH_EVENTS_MAX = 10_000
WATCH_DIRS_MAX = 4096
_MASK = (IN.CREATE | IN.MODIFY | IN.ATTRIB | IN.DELETE | IN.MOVED_FROM | IN.MOVED_TO | IN.DELETE_SELF
         | IN.MOVE_SELF | IN.ONLYDIR | IN.EXCL_UNLINK)
# inotify's bits in envd's order of event types (fsnotify's Create, Rename, Chmod, Write, Remove).
_TYPES = ((IN.CREATE | IN.MOVED_TO, "create"), (IN.MOVED_FROM | IN.MOVE_SELF, "rename"), (IN.ATTRIB, "chmod"),
          (IN.MODIFY, "write"), (IN.DELETE | IN.DELETE_SELF, "remove"))


class WatchOverflow(Exception):
    """A watch fell too far behind (or grew too large) and ended; the message says which."""


class Watch:
    """inotify on one folder (and, when `recursive`, every folder below it). Events queue up to
    WATCH_EVENTS_MAX; `drain()` takes them, `wait()` waits for some. Close it when done."""

    def __init__(self, root: str, parts: list[str], *, recursive: bool, on_close: Callable[[Watch], None]) -> None:
        self.root, self.parts, self.recursive = root, parts, recursive
        self._on_close = on_close
        self._inotify = INotify(nonblocking=True)
        self._dirs: dict[int, str] = {}  # watch descriptor -> the folder, relative to the watched one
        self._events: list[tuple[str, str]] = []  # (envd event type, name)
        self._ready = asyncio.Event()
        self.error: WatchOverflow | None = None
        self.closed = False
        try:
            fd = files.open_dir(root, parts)
            try:
                self._add_tree(fd, "") if recursive else self._add(fd, "")
            finally:
                os.close(fd)
        except BaseException:
            self._inotify.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._inotify.fileno(), self._read)

    def _add(self, dir_fd: int, rel: str) -> None:
        if len(self._dirs) >= WATCH_DIRS_MAX:
            raise WatchOverflow(f"the watch covers more than {WATCH_DIRS_MAX} folders; watch a smaller tree")
        wd = self._inotify.add_watch(f"/proc/self/fd/{dir_fd}", _MASK)
        self._dirs[wd] = rel

    def _add_tree(self, dir_fd: int, rel: str) -> None:
        self._add(dir_fd, rel)
        for path, _dirs, _files, fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
            if path != ".":
                self._add(fd, posixpath.join(rel, posixpath.normpath(path)) if rel else posixpath.normpath(path))

    def _add_new_dir(self, rel: str) -> None:
        """A folder made under a recursive watch: watched too (walked again from the root, never
        following a link), and what it already holds is reported as created."""
        try:
            fd = files.open_dir(self.root, self.parts + rel.split("/"))
        except (OSError, ValueError):
            return  # gone again, or swapped for something that isn't a folder
        try:
            self._add(fd, rel)
            for path, dirs, names, sub_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
                base = rel if path == "." else posixpath.join(rel, posixpath.normpath(path))
                if path != ".":
                    self._add(sub_fd, base)
                for name in dirs + names:
                    self._push("create", posixpath.join(base, name))
        finally:
            os.close(fd)

    def _push(self, kind: str, name: str) -> None:
        if len(self._events) >= WATCH_EVENTS_MAX:
            raise WatchOverflow(f"more than {WATCH_EVENTS_MAX} events were waiting to be read; the watch ended")
        self._events.append((kind, name))

    def _read(self) -> None:
        """Take what inotify has queued now (the loop calls this when its fd is readable)."""
        if self.closed or self.error is not None:
            return
        try:
            for event in self._inotify.read(timeout=0):
                if event.mask & IN.Q_OVERFLOW:
                    raise WatchOverflow("the kernel's event queue overflowed; the watch ended")
                folder = self._dirs.get(event.wd)
                if folder is None:
                    continue
                if event.mask & IN.IGNORED:
                    self._dirs.pop(event.wd, None)
                    continue
                if event.mask & (IN.DELETE_SELF | IN.MOVE_SELF) and folder != "":
                    continue  # a subfolder's own end: its parent's watch reported it
                name = posixpath.join(folder, event.name) if event.name else (folder or ".")
                for bits, kind in _TYPES:
                    if event.mask & bits:
                        self._push(kind, name)
                if self.recursive and event.mask & IN.ISDIR and event.mask & (IN.CREATE | IN.MOVED_TO):
                    self._add_new_dir(name)
        except WatchOverflow as exc:
            self.error = exc
        except OSError as exc:
            self.error = WatchOverflow(f"the watch failed: {exc}")
        if self._events or self.error is not None:
            self._ready.set()

    def drain(self) -> list[tuple[str, str]]:
        """The events so far (what inotify queued up to now included), oldest first; raises
        WatchOverflow once the watch has ended on a bound."""
        self._read()
        if self.error is not None:
            raise self.error
        events, self._events = self._events, []
        self._ready.clear()
        return events

    async def wait(self) -> list[tuple[str, str]]:
        """The next events, waiting until there are some ([] once the watch is closed)."""
        while not self._events and self.error is None and not self.closed:
            await self._ready.wait()
            self._ready.clear()
        return self.drain()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # the loop may be closed already
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
        self._ready.set()
        self._on_close(self)
