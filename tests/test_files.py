"""The files HTTP contract on the local backend (real workspace on disk, real sandboxes where a
test runs code): list, upload, download, preview, rename, delete, and every refusal.

Who is who (tests/fixtures_runs.py): alice owns `alice_session`; bob is another student who must
get 404 for it; `admin_user` is a superuser, a read-only viewer (may list and download, not write).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client, override_settings

from runner import services
from runner.models import ChatSession
from runner.sandboxes.local.workspace import workspace_path
from tests.fixtures_sandboxes import local_backend_or_skip
from tests.fixtures_workspace import unjam_fifo

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


@pytest.fixture
def alice_session(alice) -> ChatSession:
    local_backend_or_skip()
    return ChatSession.objects.create(owner=alice, title="Data", backend="local")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(session: ChatSession, action: str = "") -> str:
    return f"/sessions/{session.id}/files/{action}"


def upload(client: Client, session: ChatSession, *files: tuple[str, bytes], **fields: str):
    data: dict[str, object] = {"file": [SimpleUploadedFile(name, content) for name, content in files], **fields}
    return client.post(url(session), data)


def raw_upload(client: Client, session: ChatSession, filename: bytes, content: bytes, folder: str = ""):
    """A multipart upload built by hand, so the file name reaches the server exactly as given."""
    body = b"--B0undary\r\n"
    if folder:
        body += b'Content-Disposition: form-data; name="path"\r\n\r\n' + folder.encode() + b"\r\n--B0undary\r\n"
    body += (b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--B0undary--\r\n")
    return client.generic("POST", url(session), body, content_type="multipart/form-data; boundary=B0undary")


def on_disk(session: ChatSession) -> set[str]:
    home = workspace_path(str(session.id))
    if not home.exists():
        return set()
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()}


def test_upload_list_download_preview_rename_delete(alice_client, alice_session) -> None:
    csv_bytes = b"city,temp\nOslo,3\nLima,19\n"
    response = upload(alice_client, alice_session, ("weather.csv", csv_bytes), ("notes.txt", b"hello\n"), path="data")
    assert response.status_code == 201, response.content
    assert sorted(e["name"] for e in response.json()["entries"]) == ["notes.txt", "weather.csv"]

    root = alice_client.get(url(alice_session)).json()
    assert root["path"] == "" and root["backend"] == "local" and "survive" in root["persistence"]
    assert [(e["name"], e["type"]) for e in root["entries"] if e["name"] == "data"] == [("data", "dir")]
    listing = alice_client.get(url(alice_session), {"path": "data"}).json()
    entries = {e["name"]: e for e in listing["entries"]}
    assert entries["weather.csv"] == {**entries["weather.csv"], "path": "data/weather.csv", "type": "file", "size": len(csv_bytes)}
    assert entries["weather.csv"]["modified"] > 0

    download = alice_client.get(url(alice_session, "download"), {"path": "data/weather.csv"})
    assert download.status_code == 200 and download.content == csv_bytes
    assert download["Content-Disposition"] == 'attachment; filename="weather.csv"'

    preview = alice_client.get(url(alice_session, "preview"), {"path": "data/weather.csv"}).json()
    assert (preview["kind"], preview["rows"], preview["truncated"]) == ("csv", [["city", "temp"], ["Oslo", "3"], ["Lima", "19"]], False)
    text = alice_client.get(url(alice_session, "preview"), {"path": "data/notes.txt"}).json()
    assert (text["kind"], text["text"], text["language"]) == ("text", "hello\n", "txt")

    assert alice_client.post(url(alice_session, "rename"), {"path": "data/notes.txt", "to": "notes.md"}).status_code == 200
    assert alice_client.post(url(alice_session, "delete"), {"path": "data"}).status_code == 200
    assert on_disk(alice_session) == {"notes.md"}


def test_preview_of_an_image_and_of_a_long_text(alice_client, alice_session) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    upload(alice_client, alice_session, ("plot.png", png), ("long.py", b"x = 1\n" * 20000))
    image = alice_client.get(url(alice_session, "preview"), {"path": "plot.png"}).json()
    assert image["kind"] == "image" and image["src"].startswith("data:image/png;base64,")
    text = alice_client.get(url(alice_session, "preview"), {"path": "long.py"}).json()
    assert (text["kind"], len(text["text"]), text["truncated"], text["language"]) == ("text", 64 * 1024, True, "py")


def test_an_existing_name_is_refused_unless_overwrite(alice_client, alice_session) -> None:
    assert upload(alice_client, alice_session, ("a.txt", b"first")).status_code == 201
    refused = upload(alice_client, alice_session, ("a.txt", b"second"))
    assert refused.status_code == 409 and "a.txt already exists" in refused.json()["message"]
    assert alice_client.get(url(alice_session, "download"), {"path": "a.txt"}).content == b"first"
    assert upload(alice_client, alice_session, ("a.txt", b"second"), overwrite="1").status_code == 201
    assert alice_client.get(url(alice_session, "download"), {"path": "a.txt"}).content == b"second"


@override_settings(SANDBOX_FILE_MAX_BYTES=1000)
def test_a_file_over_the_limit_is_refused_and_nothing_is_written(alice_client, alice_session) -> None:
    response = upload(alice_client, alice_session, ("small.txt", b"ok"), ("big.bin", b"x" * 1001))
    assert response.status_code == 413
    assert "big.bin" in response.json()["message"] and "limit" in response.json()["message"]
    assert on_disk(alice_session) == set()


@override_settings(SANDBOX_WORKSPACE_QUOTA_MB=1)
def test_an_upload_past_the_quota_is_refused(alice_client, alice_session) -> None:
    assert upload(alice_client, alice_session, ("one.bin", b"x" * 700_000)).status_code == 201
    response = upload(alice_client, alice_session, ("two.bin", b"x" * 700_000))
    assert response.status_code == 413 and "quota of 1 MiB" in response.json()["message"]
    assert on_disk(alice_session) == {"one.bin"}


@override_settings(FILES_UPLOAD_MAX_BYTES=10_000)
def test_a_body_over_the_request_limit_is_refused_before_parsing(alice_client, alice_session) -> None:
    response = upload(alice_client, alice_session, ("a.bin", b"x" * 6000), ("b.bin", b"x" * 6000))
    assert response.status_code == 413 and "fewer files" in response.json()["message"]
    assert on_disk(alice_session) == set()


@pytest.mark.parametrize("folder", ["../x", "a/../../x", "/etc", "/home/user/../../etc", "a\0b"])
def test_a_folder_that_leaves_the_workspace_is_refused(alice_client, alice_session, folder: str, tmp_path: Path) -> None:
    response = upload(alice_client, alice_session, ("f.txt", b"x"), path=folder)
    assert response.status_code == 400, response.content
    assert response.json()["message"]
    assert on_disk(alice_session) == set()


def test_traversal_in_a_file_name_never_leaves_the_folder(alice_client, alice_session) -> None:
    # Django's multipart parser keeps only a file name's last component (and drops NUL and other
    # unprintable characters) before we see it; names that are nothing else are refused.
    assert raw_upload(alice_client, alice_session, b"../escaped.txt", b"x", folder="in").status_code == 201
    assert raw_upload(alice_client, alice_session, b"/etc/passwd", b"y", folder="in").status_code == 201
    assert raw_upload(alice_client, alice_session, b"nul\0.txt", b"z", folder="in").status_code == 201
    assert on_disk(alice_session) == {"in/escaped.txt", "in/passwd", "in/nul.txt"}
    for name in (b"..", b"../..", b"/"):
        refused = raw_upload(alice_client, alice_session, name, b"z")
        assert refused.status_code == 400 and "its name was empty, '.' or '..'" in refused.json()["message"]
    assert on_disk(alice_session) == {"in/escaped.txt", "in/passwd", "in/nul.txt"}


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a\0b", ""])
def test_reads_renames_and_deletes_outside_the_workspace_are_refused(alice_client, alice_session, path: str) -> None:
    upload(alice_client, alice_session, ("keep.txt", b"kept"))
    assert alice_client.get(url(alice_session, "download"), {"path": path}).status_code == 400
    assert alice_client.post(url(alice_session, "delete"), {"path": path}).status_code == 400
    assert alice_client.post(url(alice_session, "rename"), {"path": "keep.txt", "to": path}).status_code == 400
    assert on_disk(alice_session) == {"keep.txt"}


def test_missing_files_are_404(alice_client, alice_session) -> None:
    assert alice_client.get(url(alice_session, "download"), {"path": "nope.txt"}).status_code == 404
    assert alice_client.get(url(alice_session), {"path": "nope"}).status_code == 404
    assert alice_client.post(url(alice_session, "delete"), {"path": "nope.txt"}).status_code == 404


def test_another_users_session_is_404_and_untouched(alice_session, bob) -> None:
    bob_client = client_for(bob)
    assert bob_client.get(url(alice_session)).status_code == 404
    assert upload(bob_client, alice_session, ("planted.txt", b"x")).status_code == 404
    assert bob_client.get(url(alice_session, "download"), {"path": "planted.txt"}).status_code == 404
    assert bob_client.post(url(alice_session, "delete"), {"path": "x"}).status_code == 404
    assert bob_client.get(f"/sessions/{uuid.uuid4()}/files/").status_code == 404
    assert on_disk(alice_session) == set()


def test_a_viewer_may_read_but_not_write(alice_client, alice_session, admin_user) -> None:
    upload(alice_client, alice_session, ("report.txt", b"numbers"))
    admin = client_for(admin_user)
    assert [e["name"] for e in admin.get(url(alice_session)).json()["entries"]] == [".local", "report.txt"]
    assert admin.get(url(alice_session, "download"), {"path": "report.txt"}).content == b"numbers"
    assert upload(admin, alice_session, ("mine.txt", b"x")).status_code == 403
    assert admin.post(url(alice_session, "delete"), {"path": "report.txt"}).status_code == 403
    assert admin.post(url(alice_session, "rename"), {"path": "report.txt", "to": "r.txt"}).status_code == 403
    assert on_disk(alice_session) == {"report.txt"}


def test_a_multipart_body_cut_short_writes_nothing(alice_client, alice_session) -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.csv\"\r\n"
            b"Content-Type: text/csv\r\n\r\na,b\n1,2\n3,4\n")  # no closing boundary: the client stopped
    response = alice_client.generic("POST", url(alice_session), body, content_type="multipart/form-data; boundary=XyZ")
    assert response.status_code == 400 and "cut short" in response.json()["message"]
    assert on_disk(alice_session) == set()
    garbage = alice_client.generic("POST", url(alice_session), b"\x00\xff" * 100, content_type="multipart/form-data")
    assert garbage.status_code == 400
    assert on_disk(alice_session) == set()


def test_files_require_login(client, alice_session) -> None:
    assert client.get(url(alice_session)).status_code == 302
    assert upload(client, alice_session, ("a.txt", b"x")).status_code == 302
    assert on_disk(alice_session) == set()


@pytest.mark.django_db(transaction=True)
async def test_the_workspace_outlives_its_sandbox(alice_session) -> None:
    """A file made by code survives the sandbox's close (idle reaper, restart); the next sandbox
    of the session sees it, and so does the files API with no sandbox running."""
    acquired = await services.sandbox_acquire(session=alice_session)
    events: list[object] = []
    outcome = await acquired.sandbox.run("open('made.txt', 'w').write('by code')", language="python",
                                         on_event=events.append, timeout_s=30)
    assert outcome.status == "ok", events
    await services.sandbox_release(session_id=alice_session.id, reason="idle")
    await alice_session.arefresh_from_db()
    assert alice_session.sandbox_id == ""

    workspace = await services.workspace_open(session=alice_session)
    assert await workspace.read_file("made.txt") == b"by code"
    await workspace.write_file("uploaded.txt", b"while closed")

    again = await services.sandbox_acquire(session=alice_session)
    events.clear()
    outcome = await again.sandbox.run("print(open('made.txt').read(), open('uploaded.txt').read())", language="python",
                                      on_event=events.append, timeout_s=30)
    assert outcome.status == "ok"
    assert "by code while closed" in "".join(getattr(e, "text", "") for e in events)
    await services.sandbox_release(session_id=alice_session.id, reason="idle")


@pytest.mark.django_db(transaction=True)
async def test_a_fifo_made_by_code_is_refused_at_once_and_jams_nothing(alice, alice_session, bob) -> None:
    """A FIFO and a socket made by code are listed as what they are; 8 downloads and previews of
    the FIFO and an upload over it are each refused with a clear 400 within seconds (they used to
    block a thread each forever, jamming the loop's pool); then another user's files and a Stop
    still work."""
    acquired = await services.sandbox_acquire(session=alice_session)
    fifo = workspace_path(str(alice_session.id)) / "pipe"
    try:
        events: list[object] = []
        outcome = await acquired.sandbox.run(
            "import os, socket\nos.mkfifo('pipe')\nsock = socket.socket(socket.AF_UNIX)\nsock.bind('sock')",
            language="python", on_event=events.append, timeout_s=30)
        assert outcome.status == "ok", events
        client = AsyncClient()
        await client.aforce_login(alice)
        listing = (await client.get(url(alice_session))).json()
        types = {e["name"]: e["type"] for e in listing["entries"]}
        assert (types["pipe"], types["sock"]) == ("fifo", "socket")

        started = time.monotonic()
        requests = [client.get(url(alice_session, action), {"path": "pipe"})
                    for action in ("download", "preview") for _ in range(4)]
        responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=20)
        over = await asyncio.wait_for(client.post(url(alice_session), {"file": SimpleUploadedFile("pipe", b"x"), "overwrite": "1"}), 20)
        socket_read = await asyncio.wait_for(client.get(url(alice_session, "download"), {"path": "sock"}), 20)
        assert time.monotonic() - started < 10
        for response in [*responses, over]:
            assert response.status_code == 400, response.content
            assert response.json()["message"] == "'pipe' is a FIFO (named pipe), not a regular file"
        assert socket_read.status_code == 400 and "'sock' is a socket" in socket_read.json()["message"]

        bob_session = await ChatSession.objects.acreate(owner=bob, title="Bob's", backend="local")
        bob_client = AsyncClient()
        await bob_client.aforce_login(bob)
        assert (await asyncio.wait_for(bob_client.post(url(bob_session), {"file": SimpleUploadedFile("b.txt", b"b")}), 20)).status_code == 201
        bob_listing = (await asyncio.wait_for(bob_client.get(url(bob_session)), 20)).json()
        assert "b.txt" in [e["name"] for e in bob_listing["entries"]]

        running = asyncio.ensure_future(acquired.sandbox.run("import time\ntime.sleep(60)", language="python",
                                                             on_event=events.append, timeout_s=90))
        await asyncio.sleep(1.0)
        await acquired.sandbox.interrupt()
        assert (await asyncio.wait_for(running, 20)).status == "interrupted"
    finally:
        await asyncio.to_thread(unjam_fifo, fifo)
        await services.sandbox_release(session_id=alice_session.id, reason="idle")
