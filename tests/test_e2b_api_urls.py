"""Signed `/files` URLs (`download_url`, `upload_url`), checked as envd checks them, and the list's
`state` filter, driven by the real `e2b` SDK against a real Daphne on the local backend."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model
from e2b import AsyncSandbox, Sandbox, SandboxQuery, SandboxState

from runner import services
from tests.fixtures_daphne import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


@pytest.fixture
def sandpit(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    user = User.objects.create_user(username="alice", password="pw")
    monkeypatch.setenv("E2B_API_KEY", services.api_key_create(owner=user, name="test")[1])
    yield url


def _with(url: str, **changes: str) -> str:
    """`url` with some of its query parameters replaced."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_signed_urls_download_and_upload_without_a_token(sandpit: str) -> None:
    sandbox = Sandbox.create(secure=True)
    try:
        sandbox.files.write("notes/a.txt", "signed content")
        url = sandbox.download_url("notes/a.txt", "user")
        assert "signature=v1_" in url and sandbox.sandbox_id not in url  # the signature finds the sandbox
        got = httpx.get(url)
        assert got.status_code == 200 and got.content == b"signed content"
        timed = httpx.get(sandbox.download_url("notes/a.txt", "user", use_signature_expiration=120))
        assert timed.status_code == 200 and timed.content == b"signed content"
        # No user named: signed with "" (E2B's default user), as the SDK does for envd >= 0.4.0.
        assert httpx.get(sandbox.download_url("/home/user/notes/a.txt")).content == b"signed content"

        up = httpx.post(sandbox.upload_url("up/b.bin", use_signature_expiration=60), files={"file": ("b.bin", b"\x00\x01up")})
        assert up.status_code == 200 and up.json()[0]["path"] == "/home/user/up/b.bin"
        assert sandbox.files.read("up/b.bin", format="bytes") == b"\x00\x01up"
        # A read URL doesn't write, nor a write URL read: the operation is signed.
        assert httpx.post(url, files={"file": ("a.txt", b"overwritten")}).status_code == 401
        assert httpx.get(sandbox.upload_url("notes/a.txt")).json() == {"code": 401, "message": "invalid signature"}
        assert sandbox.files.read("notes/a.txt") == "signed content"
    finally:
        sandbox.kill()


def test_tampered_expired_and_other_sandboxes_signatures_are_refused(sandpit: str) -> None:
    mine = Sandbox.create(secure=True)
    bob = User.objects.create_user(username="bob", password="pw")
    theirs = Sandbox.create(api_key=services.api_key_create(owner=bob, name="b")[1])
    try:
        mine.files.write("secret.txt", "alice's")
        theirs.files.write("secret.txt", "bob's")
        url = mine.download_url("secret.txt", "user", use_signature_expiration=120)
        assert httpx.get(url).content == b"alice's"
        invalid = {"code": 401, "message": "invalid signature"}
        # Another path, user or expiration under the same signature; a signature changed.
        for tampered in (_with(url, path="other.txt"), _with(url, path="/home/user/secret.txt"),
                         _with(url, signature_expiration=str(int(time.time()) + 9999)), _with(url, username=""),
                         _with(url, signature=parse_qs(urlsplit(url).query)["signature"][0][:-2] + "AA")):
            got = httpx.get(tampered)
            assert (got.status_code, got.json()) == (401, invalid), tampered
        # Past its time: envd's own words, once the signature is right.
        expired = httpx.get(mine.download_url("secret.txt", "user", use_signature_expiration=-120))
        assert (expired.status_code, expired.json()) == (401, {"code": 401, "message": "signature is already expired"})
        # Alice's URL pointed at Bob's sandbox (its id in the header, as the SDK routes) doesn't open it.
        aimed = httpx.get(url, headers={"E2b-Sandbox-Id": theirs.sandbox_id, "E2b-Sandbox-Port": "49983"})
        assert (aimed.status_code, aimed.json()) == (401, invalid)
        # Bob's own signed URL opens his file only.
        assert httpx.get(theirs.download_url("secret.txt")).content == b"bob's"
        # No signature, no token: 401 as before; a bad expiration is a 400.
        routed = {"E2b-Sandbox-Id": mine.sandbox_id, "E2b-Sandbox-Port": "49983"}
        assert httpx.get(f"{sandpit}/files?path=secret.txt", headers=routed).status_code == 401
        assert httpx.get(_with(url, signature_expiration="soon")).status_code == 400
        # A killed sandbox's URLs stop working.
        mine.kill()
        assert httpx.get(url).status_code == 401
    finally:
        theirs.kill()


async def test_async_signed_urls(sandpit: str) -> None:
    sandbox = await AsyncSandbox.create(secure=True)
    try:
        async with httpx.AsyncClient() as client:
            up = await client.post(sandbox.upload_url("async.txt"), files={"file": ("async.txt", b"from async")})
            assert up.status_code == 200
            got = await client.get(sandbox.download_url("async.txt", use_signature_expiration=30))
            assert got.status_code == 200 and got.content == b"from async"
    finally:
        await sandbox.kill()


def test_list_filters_by_state(sandpit: str) -> None:
    sandbox = Sandbox.create(metadata={"which": "state"})
    try:
        def listed(states: list[SandboxState]) -> list[str]:
            paginator = Sandbox.list(query=SandboxQuery(metadata={"which": "state"}, state=states))
            return [info.sandbox_id for info in paginator.next_items()]

        assert listed([SandboxState.RUNNING]) == [sandbox.sandbox_id]
        assert listed([SandboxState.RUNNING, SandboxState.PAUSED]) == [sandbox.sandbox_id]
        assert listed([SandboxState.PAUSED]) == []  # nothing is ever paused here
        api = httpx.Client(base_url=sandpit, headers={"X-API-Key": os.environ["E2B_API_KEY"]})
        bad = api.get("/v2/sandboxes", params={"state": "running,asleep"})
        assert (bad.status_code, bad.json()["code"]) == (400, 400) and "running, paused" in bad.json()["message"]
    finally:
        sandbox.kill()


ECHO_SERVER = r'''
import http.server, json, sys

class Echo(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        out = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                          "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("x-echo", "yes")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = _answer

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
'''


def _ported(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> str:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="60",
                     API_SANDBOX_DOMAIN="sandpit.test")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    user = User.objects.create_user(username="alice", password="pw")
    monkeypatch.setenv("E2B_API_KEY", services.api_key_create(owner=user, name="test")[1])
    return url


def test_get_host_reaches_a_server_started_in_the_sandbox(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> None:
    sandpit = _ported(daphnes, monkeypatch)
    sandbox = Sandbox.create()
    bob = User.objects.create_user(username="bob", password="pw")
    theirs = Sandbox.create(api_key=services.api_key_create(owner=bob, name="b")[1])
    try:
        host = sandbox.get_host(8001)
        assert host == f"8001-{sandbox.sandbox_id}.sandpit.test"
        token = {"E2B-Traffic-Access-Token": sandbox.traffic_access_token or ""}
        closed = httpx.get(f"{sandpit}/", headers={"Host": host, **token})
        assert (closed.status_code, closed.json()["message"]) == (502, "The sandbox is running but port is not open")
        sandbox.files.write("echo.py", ECHO_SERVER)
        server = sandbox.commands.run("python3 echo.py 8001", background=True)
        for _ in range(100):
            got = httpx.post(f"{sandpit}/some/where?x=1&y=two", content=b"hello port", headers={"Host": host, "X-Mine": "m", **token})
            if got.status_code != 502:
                break
            time.sleep(0.1)
        assert got.status_code == 201 and got.headers["x-echo"] == "yes", got.text
        echoed = got.json()
        assert (echoed["method"], echoed["path"], echoed["body"]) == ("POST", "/some/where?x=1&y=two", "hello port")
        assert echoed["headers"]["x-mine"] == "m" and echoed["headers"]["host"] == "localhost:8001"
        assert "e2b-traffic-access-token" not in echoed["headers"]  # the token stays with Sandpit
        # The same through the SDK's routing headers.
        routed = httpx.get(f"{sandpit}/h", headers={"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "8001", **token})
        assert routed.status_code == 201 and routed.json()["path"] == "/h"

        # No token: 401; a wrong one, or another user's sandbox's: the edge's 502 "not found".
        assert httpx.get(f"{sandpit}/", headers={"Host": host}).status_code == 401
        other = {"E2B-Traffic-Access-Token": theirs.traffic_access_token or ""}
        refused = httpx.get(f"{sandpit}/", headers={"Host": host, **other})
        assert refused.status_code == 502 and "was not found" in refused.json()["message"]
        # Bob's sandbox has no server on 8001: his own token reaches only his own loopback.
        assert httpx.get(f"{sandpit}/", headers={"Host": theirs.get_host(8001), **other}).json()["message"] == (
            "The sandbox is running but port is not open")
        # Never the host's own network: Sandpit's own port, open on the host, is closed in the sandbox.
        own_port = int(sandpit.rsplit(":", 1)[1])
        host_port = httpx.get(f"{sandpit}/healthz", headers={"Host": sandbox.get_host(own_port), **token})
        assert (host_port.status_code, host_port.json()["message"]) == (502, "The sandbox is running but port is not open")

        server.kill()
        gone = httpx.get(f"{sandpit}/", headers={"Host": host, **token})
        assert gone.status_code == 502
    finally:
        sandbox.kill()
        theirs.kill()
