"""An API sandbox's files as envd serves them, driven by the real `e2b` SDK against a real Daphne
on the local backend: directory watches (sync and async, recursive), entries' metadata, folder
sizes and link targets, user metadata, and /tmp, shared by the sandbox's processes and reached
by the files API with the workspace's no-escape rules."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from django.contrib.auth import get_user_model
from e2b import (
    AsyncSandbox,
    FileNotFoundException,
    FilesystemEventType,
    FileType,
    InvalidArgumentException,
    Sandbox,
    SandboxException,
)
from e2b_code_interpreter import Sandbox as CodeSandbox

from runner import services
from tests.fixtures_daphne import Daphne

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.geteuid() != 0, reason="a sandbox's shared /tmp is a tmpfs the server (root) mounts"),
]

User = get_user_model()
CREATE, WRITE, REMOVE, CHMOD, RENAME = (FilesystemEventType.CREATE, FilesystemEventType.WRITE, FilesystemEventType.REMOVE,
                                        FilesystemEventType.CHMOD, FilesystemEventType.RENAME)


def _server(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch, **settings: str) -> Daphne:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30",
                     **settings)
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    user = User.objects.create_user(username="alice", password="pw")
    _row, key = services.api_key_create(owner=user, name="test")
    monkeypatch.setenv("E2B_API_KEY", key)
    return server


@pytest.fixture
def sandpit(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[Daphne]:
    yield _server(daphnes, monkeypatch, SANDBOX_WATCHERS_MAX="3")


def _pairs(events: list) -> list[tuple[FilesystemEventType, str]]:
    return [(e.type, e.name) for e in events]


def test_a_sync_watch_sees_create_write_chmod_rename_and_remove(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        sandbox.files.make_dir("w")
        handle = sandbox.files.watch_dir("w", include_entry=True)
        sandbox.files.write("w/a.txt", "one")
        events = handle.get_new_events()
        # As envd: the upload creates the file, gives it to the sandbox user, then writes it.
        assert _pairs(events) == [(CREATE, "a.txt"), (CHMOD, "a.txt"), (WRITE, "a.txt")]
        assert events[2].entry is not None and events[2].entry.path == "/home/user/w/a.txt"
        assert events[2].entry.type == FileType.FILE and events[2].entry.size == 3
        sandbox.commands.run("chmod 600 w/a.txt && mv w/a.txt w/b.txt && rm w/b.txt && mkdir w/sub")
        assert _pairs(handle.get_new_events()) == [
            (CHMOD, "a.txt"), (RENAME, "a.txt"), (CREATE, "b.txt"), (REMOVE, "b.txt"), (CREATE, "sub")]
        # Not recursive: what happens inside a subfolder isn't seen.
        sandbox.files.write("w/sub/deep.txt", "x")
        assert handle.get_new_events() == []
        handle.stop()
        with pytest.raises(SandboxException):
            handle.get_new_events()
        with pytest.raises(FileNotFoundException):
            sandbox.files.watch_dir("missing")
        with pytest.raises(InvalidArgumentException):
            sandbox.files.watch_dir("w/sub/deep.txt")  # a file, not a folder
    finally:
        sandbox.kill()


def test_a_recursive_watch_follows_folders_made_after_it_started(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        sandbox.files.make_dir("r/old")
        handle = sandbox.files.watch_dir("r", recursive=True)
        sandbox.files.write("r/old/a.txt", "a")
        sandbox.files.make_dir("r/new")
        sandbox.files.write("r/new/b.txt", "b")
        sandbox.commands.run("mkdir -p r/new/x/y && echo hi > r/new/x/y/c.txt")
        # Events are read as inotify delivers them, so poll. A file written into a folder before
        # the folder's own watch exists is reported by the walk as created (its write may come too).
        wanted = [(CREATE, "old/a.txt"), (WRITE, "old/a.txt"), (CREATE, "new"), (CREATE, "new/b.txt"),
                  (WRITE, "new/b.txt"), (CREATE, "new/x"), (CREATE, "new/x/y/c.txt")]
        seen: list = []
        deadline = time.monotonic() + 10
        while not set(wanted) <= set(seen) and time.monotonic() < deadline:
            seen += _pairs(handle.get_new_events())
            time.sleep(0.05)
        for expected in wanted:
            assert expected in seen, (expected, seen)
        handle.stop()
    finally:
        sandbox.kill()


async def test_an_async_watch_streams_events_until_stopped(sandpit: Daphne) -> None:
    sandbox = await AsyncSandbox.create()
    try:
        await sandbox.files.make_dir("aw/sub")
        seen: list = []
        exits: list = []
        handle = await sandbox.files.watch_dir("aw", on_event=seen.append, on_exit=exits.append, recursive=True)
        await sandbox.files.write("aw/sub/f.txt", "hello")
        await sandbox.files.remove("aw/sub/f.txt")
        for _ in range(100):
            if (REMOVE, "sub/f.txt") in _pairs(seen):
                break
            await asyncio.sleep(0.05)
        assert _pairs(seen) == [(CREATE, "sub/f.txt"), (CHMOD, "sub/f.txt"), (WRITE, "sub/f.txt"), (REMOVE, "sub/f.txt")]
        await handle.stop()
        assert exits == [None]
    finally:
        await sandbox.kill()


def test_watches_are_bounded_per_sandbox(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        handles = [sandbox.files.watch_dir("/home/user") for _ in range(3)]
        with pytest.raises(SandboxException, match="SANDBOX_WATCHERS_MAX"):
            sandbox.files.watch_dir("/home/user")
        handles[0].stop()
        sandbox.files.watch_dir("/home/user").stop()  # room again
    finally:
        sandbox.kill()


def test_a_connect_envelope_is_parsed_as_one_not_as_json(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        body = b'{"path": "/home/user"}'
        response = httpx.post(f"{sandbox.envd_api_url}/filesystem.Filesystem/WatchDir",
                              content=struct.pack(">BI", 0, len(body)) + body,
                              headers={"Content-Type": "application/connect+json", "Connect-Timeout-Ms": "500",
                                       "E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49983",
                                       **({"X-Access-Token": sandbox._envd_access_token} if sandbox._envd_access_token else {})},
                              timeout=10)
        assert response.status_code == 200, response.text
        assert b"utf-32" not in response.content and b'{"start": {}}' in response.content
        assert b"deadline_exceeded" in response.content  # it ran until the client's deadline
    finally:
        sandbox.kill()


def test_entries_carry_metadata_folder_sizes_and_link_targets(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        sandbox.files.write("m/file.txt", "test")
        before = time.time()
        sandbox.commands.run("ln -s file.txt m/link && ln -s /etc/passwd m/out && ln -s ../m m/up && ln -s nowhere m/dangling")
        info = sandbox.files.get_info("m/file.txt")
        assert (info.type, info.size, info.mode, info.permissions, info.owner, info.group) == (
            FileType.FILE, 4, 0o644, "-rw-r--r--", "user", "user")
        assert info.modified_time is not None and info.modified_time.tzinfo is not None
        assert abs(info.modified_time.timestamp() - before) < 60
        assert info.symlink_target is None
        folder = sandbox.files.get_info("m")
        assert folder.type == FileType.DIR and folder.size > 0 and folder.permissions == "drwxr-xr-x"
        link = sandbox.files.get_info("m/link")
        assert (link.type, link.symlink_target, link.mode) == (FileType.FILE, "/home/user/m/file.txt", 0o644)
        up = sandbox.files.get_info("m/up")
        assert (up.type, up.symlink_target) == (FileType.DIR, "/home/user/m")
        # A link out of the files API's folders is described, never followed on the host.
        out = sandbox.files.get_info("m/out")
        assert out.symlink_target == "/etc/passwd" and out.type != FileType.FILE
        assert sandbox.files.get_info("m/dangling").symlink_target == "/home/user/m/nowhere"
        with pytest.raises(SandboxException):
            sandbox.files.read("m/out")
        with pytest.raises(SandboxException):
            sandbox.files.write("m/out", "overwrite /etc/passwd?")
        with pytest.raises(SandboxException):
            sandbox.files.list("m/up")
        assert {e.name for e in sandbox.files.list("m")} >= {"file.txt", "link", "up"}
    finally:
        sandbox.kill()


def test_user_metadata_is_stored_listed_kept_on_rename_and_cleared_by_an_overwrite(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        written = sandbox.files.write("meta.txt", "x", metadata={"author": "ann", "stage": "draft"})
        assert written.metadata == {"author": "ann", "stage": "draft"}
        assert sandbox.files.get_info("meta.txt").metadata == {"author": "ann", "stage": "draft"}
        moved = sandbox.files.rename("meta.txt", "moved.txt")
        assert moved.metadata == {"author": "ann", "stage": "draft"}
        assert sandbox.files.write("moved.txt", "y").metadata is None
        assert sandbox.files.get_info("moved.txt").metadata is None
        with pytest.raises(InvalidArgumentException):
            sandbox.files.write("bad.txt", "z", metadata={"bad key": "v"})
    finally:
        sandbox.kill()


def test_tmp_is_one_folder_for_the_files_api_commands_and_kernels(sandpit: Daphne) -> None:
    sandbox = CodeSandbox.create()
    try:
        sandbox.files.write("/tmp/from-api.txt", "api")
        ls = sandbox.commands.run("ls /tmp && cat /tmp/from-api.txt && echo cmd > /tmp/from-cmd.txt")
        assert "from-api.txt" in ls.stdout.split() and ls.stdout.endswith("api")
        assert sandbox.files.read("/tmp/from-cmd.txt") == "cmd\n"
        execution = sandbox.run_code("open('/tmp/from-cmd.txt').read() + open('/tmp/from-api.txt').read()")
        assert execution.error is None and execution.text is not None and "cmd\\napi" in execution.text
        sandbox.run_code("open('/tmp/from-kernel.txt', 'w').write('kernel')")
        assert sandbox.files.read("/tmp/from-kernel.txt") == "kernel"
        names = {e.name: e for e in sandbox.files.list("/tmp")}
        assert {"from-api.txt", "from-cmd.txt", "from-kernel.txt"} <= set(names)
        assert names["from-api.txt"].path == "/tmp/from-api.txt" and names["from-api.txt"].owner == "user"
        assert sandbox.files.get_info("/tmp").permissions == "drwxrwxrwt"
        assert sandbox.files.make_dir("/tmp/test-git") is True
        sandbox.files.rename("/tmp/from-api.txt", "/tmp/test-git/moved.txt")
        assert sandbox.files.exists("/tmp/test-git/moved.txt") and not sandbox.files.exists("/tmp/from-api.txt")
        assert sandbox.commands.run("pwd", cwd="/tmp/test-git").stdout == "/tmp/test-git\n"
        handle = sandbox.files.watch_dir("/tmp/test-git")
        sandbox.commands.run("touch /tmp/test-git/new")
        assert (CREATE, "new") in _pairs(handle.get_new_events())
        handle.stop()
        sandbox.files.remove("/tmp/test-git")
        assert not sandbox.files.exists("/tmp/test-git")
        with pytest.raises(SandboxException):
            sandbox.files.remove("/tmp")
    finally:
        sandbox.kill()


def test_paths_that_would_leave_the_workspace_or_tmp_are_refused(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        sandbox.commands.run("ln -s / /tmp/root && ln -s /etc /tmp/etc && mkfifo /tmp/fifo")
        for path in ("/etc/passwd", "/tmp/../etc/passwd", "/home/user/../../etc/passwd", "/tmp/etc/passwd",
                     "/tmp/root/etc/passwd", "/proc/self/environ", "/tmp/fifo"):
            with pytest.raises(SandboxException):
                sandbox.files.read(path)
        for path in ("/etc/x", "/tmp/etc/x", "/tmp/root/tmp/x", "/run/k/x"):
            with pytest.raises(SandboxException):
                sandbox.files.write(path, "no")
        for path in ("/tmp/root", "/etc", "/"):
            with pytest.raises(SandboxException):
                sandbox.files.watch_dir(path)
            with pytest.raises(SandboxException):
                sandbox.files.list(path + "/etc" if path == "/tmp/root" else path)
        assert not os.path.exists("/x") and not os.path.exists("/etc/x")
        # The links themselves are listed, as links, and removing one removes only the link.
        sandbox.files.remove("/tmp/etc")
        assert os.path.exists("/etc/passwd") and not sandbox.files.exists("/tmp/etc")
    finally:
        sandbox.kill()
