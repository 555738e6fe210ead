"""The E2B-compatible API (runner/e2b_api) driven by the real `e2b-code-interpreter` SDK, sync and
async, against a real Daphne serving project.asgi, with E2B_API_URL and E2B_SANDBOX_URL set to
it and E2B_API_KEY a Sandpit key. Each sandbox is a Sandpit session: the tests check the rows too.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from e2b import (
    AuthenticationException,
    CommandExitException,
    InvalidArgumentException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxQuery,
    TimeoutException,
)
from e2b_code_interpreter import AsyncSandbox, Sandbox

from runner import services
from runner.selectors.usage import usage_runs_for_user
from runner.services.apikeys import api_key_hash
from runner.models import ApiKey, ApiSandbox, ChatSession, Execution, SandboxLease
from tests.fixtures_daphne import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()
# Raw requests wait as long as the SDK would: a loaded machine with Postgres and Redis is slow.
HTTP_TIMEOUT_S = 60.0


def httpx_post(*args: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(*args, timeout=HTTP_TIMEOUT_S, **kwargs)


def httpx_get(*args: Any, **kwargs: Any) -> httpx.Response:
    return httpx.get(*args, timeout=HTTP_TIMEOUT_S, **kwargs)


def httpx_stream(*args: Any, **kwargs: Any) -> Any:
    return httpx.stream(*args, timeout=HTTP_TIMEOUT_S, **kwargs)


@pytest.fixture
def sandpit(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Daphne on the test database, the local backend, and the SDK's env pointing at it."""
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30")
    url = f"http://127.0.0.1:{server.port}"
    # Set after the server started (it copies this process's environment): the SDK reads them.
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    yield url


def key_for(username: str, name: str = "test") -> tuple[Any, str]:
    user = User.objects.filter(username=username).first() or User.objects.create_user(username=username, password="pw")
    _row, key = services.api_key_create(owner=user, name=name)
    return user, key


def test_python_sdk_sync_runs_code_with_state_streams_and_rich_results(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create(metadata={"title": "sync basics", "suite": "e2b-api"})
    try:
        # State across run_code calls, and the run's value as the main result.
        assert sandbox.run_code("x = 41").error is None
        execution = sandbox.run_code("x + 1")
        assert execution.text == "42"
        assert execution.results[0].is_main_result

        # on_stdout / on_stderr arrive live, while the code still runs (their times spread out).
        arrivals: list[tuple[str, float, int]] = []
        code = "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    print('e', i, file=sys.stderr, flush=True)\n    time.sleep(0.4)"
        execution = sandbox.run_code(
            code,
            on_stdout=lambda m: arrivals.append(("out", time.monotonic(), m.timestamp)),
            on_stderr=lambda m: arrivals.append(("err", time.monotonic(), m.timestamp)),
        )
        assert "".join(execution.logs.stdout) == "0\n1\n2\n"
        assert "".join(execution.logs.stderr) == "e 0\ne 1\ne 2\n"
        outs = [a for a in arrivals if a[0] == "out"]
        assert len(outs) >= 2 and {a[0] for a in arrivals} == {"out", "err"}
        assert outs[-1][1] - outs[0][1] > 0.5, arrivals  # not all at the end
        assert (outs[-1][2] - outs[0][2]) / 1e9 > 0.5, arrivals

        # A PNG (matplotlib) and HTML (pandas) result.
        execution = sandbox.run_code(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
        )
        assert any(r.png for r in execution.results), execution
        execution = sandbox.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
        assert execution.results[0].html and "<table" in execution.results[0].html

        # An error with its traceback.
        execution = sandbox.run_code("def f():\n    return 1 / 0\nf()")
        assert execution.error is not None
        assert execution.error.name == "ZeroDivisionError"
        assert "division by zero" in execution.error.value
        assert "f()" in execution.error.traceback

        # The SDK's timeout closes the stream: the run is stopped, the next call works, x survives.
        started = time.monotonic()
        with pytest.raises(TimeoutException):
            sandbox.run_code("import time\ntime.sleep(25)", timeout=2)
        assert time.monotonic() - started < 10
        assert sandbox.run_code("x").text == "41"

        # Empty code runs as nothing, as an empty cell does.
        empty = sandbox.run_code("   ")
        assert empty.error is None and empty.results == [] and empty.logs.stdout == []

        # Unknown language: the error E2B's server gives.
        with pytest.raises(SandboxException, match="No such kernel named ruby"):
            sandbox.run_code("puts 1", language="ruby")
    finally:
        sandbox.kill()

    session = ChatSession.objects.get(pk=ApiSandbox.objects.get().session_id)
    assert session.kind == "api" and session.owner == user and session.title == "sync basics"
    statuses = list(session.executions.order_by("seq").values_list("status", flat=True))
    assert statuses[:2] == ["succeeded", "succeeded"]
    assert "cancelled" in statuses  # the run the SDK's timeout stopped
    assert Execution.objects.filter(session=session, code="x + 1").get().chunks.filter(kind="result").exists()
    assert not Execution.objects.active().exists()
    assert session.status == "closed" and SandboxLease.objects.filter(session=session).exclude(ended_at=None).exists()
    assert not SandboxLease.objects.open().exists()

    # The owner sees it in the page's session list, with the API badge, and can open it.
    page = Client()
    page.force_login(user)
    home = page.get("/").content.decode()
    assert "sync basics" in home and 'class="badge kind-api"' in home
    assert "x + 1" in page.get(f"/sessions/{session.id}/").content.decode()


def test_contexts_files_commands_and_kill(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        # Contexts in two languages, one with its own cwd; restart; remove.
        sandbox.files.make_dir("proj")
        py = sandbox.create_code_context(language="python")
        js = sandbox.create_code_context(language="js", cwd="/home/user/proj")
        assert js.language == "javascript" and js.cwd == "/home/user/proj"
        assert sandbox.run_code("y = 7", context=py).error is None
        assert sandbox.run_code("y * 6", context=py).text == "42"
        assert "".join(sandbox.run_code("console.log(Deno.cwd())", context=js).logs.stdout).strip() == "/home/user/proj"
        # The default JavaScript context is a kernel of its own, in /home/user.
        assert "".join(sandbox.run_code("console.log(Deno.cwd())", language="js").logs.stdout).strip() == "/home/user"
        assert {c.id for c in sandbox.list_code_contexts()} >= {py.id, js.id}
        sandbox.restart_code_context(py)
        assert sandbox.run_code("y", context=py).error.name == "NameError"
        sandbox.remove_code_context(js)
        assert js.id not in {c.id for c in sandbox.list_code_contexts()}
        with pytest.raises(NotFoundException):
            sandbox.run_code("1", context=js)

        # Files: write (one and many), read, list, exists, rename, remove; traversal refused.
        sandbox.files.write("notes/a.txt", "hello")
        sandbox.files.write_files([{"path": "notes/b.txt", "data": "bee"}, {"path": "/home/user/c.bin", "data": b"\x00\x01"}])
        assert sandbox.files.read("notes/a.txt") == "hello"
        assert sandbox.files.read("/home/user/c.bin", format="bytes") == bytearray(b"\x00\x01")
        assert [e.name for e in sandbox.files.list("notes")] == ["a.txt", "b.txt"]
        assert sandbox.files.exists("notes/b.txt") and not sandbox.files.exists("notes/zzz")
        assert sandbox.files.get_info("notes").type.value == "dir"
        sandbox.files.rename("notes/b.txt", "notes/bee.txt")
        sandbox.files.remove("notes/a.txt")
        assert [e.name for e in sandbox.files.list("notes")] == ["bee.txt"]
        assert sandbox.run_code("open('notes/bee.txt').read()").text == "bee"  # the kernels see the same files
        with pytest.raises((InvalidArgumentException, SandboxException)):
            sandbox.files.read("../../etc/passwd")
        with pytest.raises((InvalidArgumentException, SandboxException)):
            sandbox.files.write("/etc/evil", "x")

        # commands.run: foreground with streamed output and exit code, envs, cwd, background.
        seen: list[str] = []
        result = sandbox.commands.run("echo out; echo err >&2; echo $GREETING; pwd", envs={"GREETING": "hi"}, cwd="/home/user/notes",
                                      on_stdout=seen.append)
        assert result.exit_code == 0
        assert result.stdout == "out\nhi\n/home/user/notes\n" and result.stderr == "err\n"
        assert "".join(seen) == result.stdout
        with pytest.raises(CommandExitException) as failed:
            sandbox.commands.run("echo nope >&2; exit 3")
        assert failed.value.exit_code == 3 and "nope" in failed.value.stderr
        # A cwd is any folder of the sandbox, as in E2B; a missing one fails clearly.
        assert sandbox.commands.run("pwd", cwd="/etc").stdout == "/etc\n"
        with pytest.raises(CommandExitException, match="cannot change directory to '/no/such'"):
            sandbox.commands.run("pwd", cwd="/no/such")
        handle = sandbox.commands.run("sleep 0.3; echo later", background=True)
        assert handle.wait().stdout == "later\n"
        assert sandbox.commands.run("ls /home/user").stdout.split() == ["c.bin", "notes", "proj"]

        sandbox_id = sandbox.sandbox_id
    finally:
        sandbox.kill()
    assert not sandbox.is_running()
    with pytest.raises(NotFoundException):
        Sandbox.connect(sandbox_id)
    assert ApiSandbox.objects.get().killed_at is not None
    assert not SandboxLease.objects.open().exists()


def test_list_metadata_keys_and_other_users(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _alice, alice_key = key_for("alice")
    _bob, bob_key = key_for("bob")
    first = Sandbox.create(api_key=alice_key, metadata={"team": "red"}, timeout=120)
    second = Sandbox.create(api_key=alice_key, metadata={"team": "blue"})
    bobs = Sandbox.create(api_key=bob_key, metadata={"team": "red"})
    try:
        red = Sandbox.list(api_key=alice_key, query=SandboxQuery(metadata={"team": "red"})).next_items()
        assert [s.sandbox_id for s in red] == [first.sandbox_id]
        assert red[0].metadata == {"team": "red"}
        everything = {s.sandbox_id for s in Sandbox.list(api_key=alice_key).next_items()}
        assert everything == {first.sandbox_id, second.sandbox_id}
        info = Sandbox.get_info(first.sandbox_id, api_key=alice_key)
        assert info.metadata == {"team": "red"} and (info.end_at - info.started_at).total_seconds() == pytest.approx(120, abs=2)
        first.set_timeout(600)
        assert (Sandbox.get_info(first.sandbox_id, api_key=alice_key).end_at - info.end_at).total_seconds() > 400

        # Another user's sandbox id is as unknown as a made-up one, on every route.
        with pytest.raises(NotFoundException):
            Sandbox.connect(first.sandbox_id, api_key=bob_key)
        assert Sandbox.kill(first.sandbox_id, api_key=bob_key) is False  # the SDK's answer to a 404
        answer = httpx_get(f"{sandpit}/sandboxes/{first.sandbox_id}", headers={"X-API-Key": bob_key})
        made_up = httpx_get(f"{sandpit}/sandboxes/{'0' * 32}", headers={"X-API-Key": bob_key})
        assert answer.status_code == made_up.status_code == 404
        assert set(answer.json()) == {"code", "message"} and answer.json()["code"] == 404
        # Bob's own sandbox token doesn't open Alice's sandbox's envd or interpreter either.
        bob_token = bobs._envd_access_token
        for port in ("49983", "49999"):
            stolen = httpx_post(f"{sandpit}/execute", json={"code": "1"}, headers={
                "E2b-Sandbox-Id": first.sandbox_id, "E2b-Sandbox-Port": port, "X-Access-Token": bob_token})
            assert stolen.status_code == 502, stolen.text
        assert first.run_code("1 + 1").text == "2"  # still Alice's and alive

        # A revoked key is refused with E2B's 401, as a wrong or missing one is.
        services.api_key_revoke(owner=ApiKey.objects.get(owner__username="alice").owner, name="test")
        with pytest.raises(AuthenticationException):
            Sandbox.create(api_key=alice_key)
        for headers in ({"X-API-Key": alice_key}, {"X-API-Key": "e2b_" + "0" * 40}, {}):
            refused = httpx_get(f"{sandpit}/v2/sandboxes", headers=headers)
            assert refused.status_code == 401
            assert refused.json() == {"code": 401, "message": "Invalid API key, it must start with 'e2b_' prefix and be 40 characters long"}
        # Revoking the key also ended the sandboxes it made: another key of Alice's finds none.
        _alice, fresh_key = key_for("alice", name="fresh")
        assert Sandbox.list(api_key=fresh_key).next_items() == []
    finally:
        _alice, cleanup_key = key_for("alice", name="cleanup")
        for sandbox in (first, second, bobs):
            Sandbox.kill(sandbox.sandbox_id, api_key=bob_key if sandbox is bobs else cleanup_key)
    deadline = time.monotonic() + 15
    while ApiSandbox.objects.filter(killed_at=None).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ApiSandbox.objects.filter(killed_at=None).exists()


def test_bad_input_gets_e2b_errors(sandpit: str) -> None:
    _user, key = key_for("alice")
    api = httpx.Client(base_url=sandpit, headers={"X-API-Key": key}, timeout=HTTP_TIMEOUT_S)
    malformed = api.post("/v2/sandboxes", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["code"] == 400
    huge = api.post("/v2/sandboxes", content=b"x" * (2 * 1024 * 1024))
    assert huge.status_code == 413 and huge.json()["code"] == 413
    assert api.post("/v2/sandboxes", json={"templateID": "nope"}).json() == {"code": 404, "message": "template 'nope' not found"}
    assert api.post("/v2/sandboxes", json={"timeout": 10**9}).status_code == 400
    assert api.post("/v2/sandboxes", json={"metadata": {"a": 1}}).status_code == 400
    assert api.post("/sandboxes/abc/pause").status_code == 404  # unknown id: 404 before "not supported"
    created = api.post("/v2/sandboxes", json={"metadata": {"title": "raw"}})
    assert created.status_code == 201
    sandbox = created.json()
    pause = api.post(f"/sandboxes/{sandbox['sandboxID']}/pause")
    assert pause.status_code == 501 and "not supported" in pause.json()["message"]

    # E2B_DOMAIN-style host: <port>-<id>.<domain>, through a proxy that passes it on.
    headers = {"Host": f"49999-{sandbox['sandboxID']}.sandpit.test", "X-Access-Token": sandbox["envdAccessToken"]}
    lines = [json.loads(line) for line in httpx_post(f"{sandpit}/execute", json={"code": "print('via host')"}, headers=headers).text.splitlines()]
    assert {"type": "stdout", "text": "via host\n"}.items() <= next(line for line in lines if line["type"] == "stdout").items()
    assert lines[-1] == {"type": "end_of_execution"}
    bad = httpx_post(f"{sandpit}/execute", content=b"[1,", headers=headers)
    assert bad.status_code == 400
    both = httpx_post(f"{sandpit}/execute", json={"code": "1", "language": "python", "context_id": "x"}, headers=headers)
    assert both.status_code == 400 and both.text == "Only one of context_id or language can be provided"
    no_token = httpx_post(f"{sandpit}/files?path=a.txt", content=b"x", headers={"Host": f"49983-{sandbox['sandboxID']}.sandpit.test"})
    assert no_token.status_code == 401
    no_token = httpx_post(f"{sandpit}/execute", json={"code": "1"}, headers={"Host": f"49999-{sandbox['sandboxID']}.sandpit.test"})
    assert no_token.status_code == 401

    # Sandpit's own pages are untouched by the API's routing.
    assert httpx_get(f"{sandpit}/healthz").json()["backend"] == "local"
    assert api.delete(f"/sandboxes/{sandbox['sandboxID']}").status_code == 204
    assert api.delete(f"/sandboxes/{sandbox['sandboxID']}").status_code == 404


def test_envd_read_of_a_fifo_is_refused_at_once_and_jams_nothing(sandpit: str) -> None:
    """GET /files of a FIFO the code made: 8 reads are each a clear 400 within seconds (each used to
    block one of the server's threads forever), its ListDir entry is no file, and another user's
    sandbox still lists its files and runs code."""
    from runner.sandboxes.local.workspace import workspace_path
    from tests.fixtures_workspace import unjam_fifo

    _alice, alice_key = key_for("alice")
    _bob, bob_key = key_for("bob")
    sandbox = Sandbox.create(api_key=alice_key)
    other = Sandbox.create(api_key=bob_key)
    fifo = workspace_path(str(ApiSandbox.objects.get(sandbox_id=sandbox.sandbox_id).session_id)) / "pipe"
    try:
        assert sandbox.run_code("import os; os.mkfifo('pipe')").error is None
        started = time.monotonic()
        for _ in range(8):
            with pytest.raises(InvalidArgumentException, match="'pipe' is a FIFO"):
                sandbox.files.read("pipe", request_timeout=15)
        assert time.monotonic() - started < 20
        # envd's FILE_TYPE_UNSPECIFIED, which the SDK leaves out of a listing.
        assert "pipe" not in [e.name for e in sandbox.files.list("/home/user", request_timeout=15)]
        other.files.write("b.txt", "b", request_timeout=15)
        assert "b.txt" in [e.name for e in other.files.list("/home/user", request_timeout=15)]
        assert other.run_code("6 * 7", timeout=15).text == "42"
    finally:
        unjam_fifo(fifo)
        sandbox.kill()
        other.kill()


def test_client_that_stops_reading_interrupts_the_run(sandpit: str) -> None:
    _user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key)
    try:
        headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49999", "X-Access-Token": sandbox._envd_access_token}
        with httpx_stream("POST", f"{sandpit}/execute", json={"code": "import time\nwhile True:\n    print('x' * 1000, flush=True)\n    time.sleep(0.01)"},
                          headers=headers) as response:
            for _line in response.iter_lines():
                break  # read one line, then hang up
        deadline = time.monotonic() + 15
        while Execution.objects.active().exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Execution.objects.get().status == "cancelled"
        assert sandbox.run_code("2 + 2").text == "4"
    finally:
        sandbox.kill()


def test_python_sdk_async(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)

    async def scenario() -> None:
        sandbox = await AsyncSandbox.create(metadata={"title": "async"})
        try:
            await sandbox.run_code("import os\nz = 5")
            times: list[float] = []

            async def on_stdout(message: Any) -> None:
                times.append(time.monotonic())

            execution = await sandbox.run_code("import time\nfor i in range(z):\n    print(i, flush=True)\n    time.sleep(0.2)", on_stdout=on_stdout)
            assert "".join(execution.logs.stdout) == "0\n1\n2\n3\n4\n"
            assert times[-1] - times[0] > 0.4
            ts = await sandbox.create_code_context(language="ts")
            assert (await sandbox.run_code("const n: number = 6; n * 7", context=ts)).text == "42"
            with pytest.raises(TimeoutException):
                await sandbox.run_code("import time\ntime.sleep(25)", timeout=1.5)
            assert (await sandbox.run_code("z")).text == "5"
            await sandbox.files.write("async.txt", "a")
            assert await sandbox.files.read("async.txt") == "a"
            assert (await sandbox.commands.run("cat async.txt")).stdout == "a"
            assert (await sandbox.run_code("1/0")).error.name == "ZeroDivisionError"
        finally:
            await sandbox.kill()
        assert not await sandbox.is_running()

    asyncio.run(scenario())
    assert ChatSession.objects.get(kind="api").title == "async"


def test_sandbox_timeout_ends_it(sandpit: str) -> None:
    _user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key, timeout=2)
    assert sandbox.run_code("1").text == "1"
    deadline = time.monotonic() + 15
    while ApiSandbox.objects.filter(killed_at=None).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    row = ApiSandbox.objects.get()
    assert row.killed_at is not None and row.session.status == "closed"
    assert not SandboxLease.objects.open().exists()
    with pytest.raises(NotFoundException):
        Sandbox.connect(sandbox.sandbox_id, api_key=key)
    with pytest.raises(TimeoutException):  # what the SDK says when the edge doesn't know the sandbox
        sandbox.run_code("1")


def test_keys_page_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    user = User.objects.create_user(username="carol", password="pw")
    page = Client()
    assert page.get("/account/keys/").status_code == 302  # login first
    page.force_login(user)
    made = page.post("/account/keys/", {"name": "laptop"})
    key = made.context["new_key"]
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    assert len(key) == 44 and key.startswith("e2b_") and key in made.content.decode()
    row = ApiKey.objects.get(owner=user)
    assert row.name == "laptop" and row.prefix == key[:10] and key not in row.key_hash
    assert row.key_hash == api_key_hash(key=key)
    listing = page.get("/account/keys/").content.decode()
    assert "laptop" in listing and key not in listing  # shown once
    assert page.post("/account/keys/", {"name": "laptop"}).status_code == 400  # a live name is unique
    assert services.api_key_authenticate_sync(key=key).owner == user
    page.post(f"/account/keys/{row.id}/revoke/")
    assert services.api_key_authenticate_sync(key=key) is None
    # Another user can't revoke carol's keys through the page.
    _row, other = services.api_key_create(owner=user, name="second")
    intruder = Client()
    intruder.force_login(User.objects.create_user(username="mallory", password="pw"))
    intruder.post(f"/account/keys/{ApiKey.objects.get(name='second').id}/revoke/")
    assert services.api_key_authenticate_sync(key=other) is not None

    call_command("api_key", "create", "carol", "--name", "ci")
    printed = capsys.readouterr().out
    assert printed.strip().startswith("e2b_") and printed.count("\n") == 1
    assert services.api_key_authenticate_sync(key=printed.strip()).name == "ci"
    call_command("api_key", "revoke", "carol", "ci")
    assert services.api_key_authenticate_sync(key=printed.strip()) is None
    with pytest.raises(CommandError):
        call_command("api_key", "revoke", "carol", "ci")
    with pytest.raises(CommandError):
        call_command("api_key", "create", "nobody")


def test_owner_watches_an_api_run_live_on_the_page_socket(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> None:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="")
    url = f"http://127.0.0.1:{server.port}"
    user, key = key_for("alice")
    page = Client()
    page.force_login(user)
    cookie = f"sessionid={page.cookies['sessionid'].value}".encode()

    created = Sandbox.create(api_key=key, api_url=url, sandbox_url=url, metadata={"title": "watched"})
    session_id = ApiSandbox.objects.get(sandbox_id=created.sandbox_id).session_id
    assert session_id.hex != created.sandbox_id  # the API's id is not the session's (teachers see that one)

    async def scenario() -> None:
        sandbox = await AsyncSandbox.connect(created.sandbox_id, api_key=key, api_url=url, sandbox_url=url)
        try:
            ws = await server.open(session_id, cookie)
            running = asyncio.ensure_future(
                sandbox.run_code("import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.3)")
            )
            seen: list[str] = []
            async with asyncio.timeout(30):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "execution.output" and frame["kind"] == "stdout":
                        seen.append(frame["text"])
                        if not running.done():
                            break  # output reached the page while the API's run still went on
                    assert frame["type"] != "execution.finished", "no output arrived before the end"
            execution = await running
            assert "tick 0" in "".join(seen) and "".join(execution.logs.stdout).startswith("tick 0")
            await ws.close()
        finally:
            await sandbox.kill()

    asyncio.run(scenario())


def test_idle_reaper_applies_and_the_run_says_so(daphnes: Callable[..., Daphne]) -> None:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="",
                     SANDBOX_IDLE_TIMEOUT_S="2", SERVER_HEARTBEAT_S="1")
    url = f"http://127.0.0.1:{server.port}"
    _user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key, api_url=url, sandbox_url=url, timeout=600)
    try:
        assert sandbox.run_code("kept = 1").error is None
        deadline = time.monotonic() + 20
        while not SandboxLease.objects.filter(end_reason="idle").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        execution = sandbox.run_code("kept")
        assert execution.error is not None and execution.error.name == "NameError"
        assert "A new sandbox was started" in "".join(execution.logs.stderr)
    finally:
        sandbox.kill()


def test_admin_lists_keys_and_api_sandboxes() -> None:
    staff = User.objects.create_superuser(username="root", password="pw")
    services.api_key_create(owner=staff, name="ops")
    admin = Client()
    admin.force_login(staff)
    page = admin.get("/admin/runner/apikey/")
    assert page.status_code == 200 and "ops" in page.content.decode()
    assert admin.get("/admin/runner/apisandbox/").status_code == 200


def test_create_refused_when_no_sandbox_can_start(daphnes: Callable[..., Daphne]) -> None:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="",
                     SANDBOX_MAX_LIVE="1", SANDBOX_POOL_SIZE="0")
    url = f"http://127.0.0.1:{server.port}"
    _user, key = key_for("alice")
    first = Sandbox.create(api_key=key, api_url=url, sandbox_url=url)
    try:
        refused = httpx_post(f"{url}/v2/sandboxes", headers={"X-API-Key": key}, json={})
        assert refused.status_code == 429 and refused.json()["code"] == 429 and "limit is 1" in refused.json()["message"]
        assert ApiSandbox.objects.filter(killed_at=None).count() == 1  # the refused one left nothing live
        assert first.run_code("1 + 1").text == "2"
    finally:
        first.kill()


def test_contexts_routes_need_the_sandboxs_token(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    mine, other = Sandbox.create(), Sandbox.create()
    try:
        context_id = mine.create_code_context(language="python").id  # the SDK sends the traffic token
        base = {"E2b-Sandbox-Id": mine.sandbox_id, "E2b-Sandbox-Port": "49999"}
        routes = [("GET", "/contexts", None), ("POST", "/contexts", {"language": "python"}),
                  ("POST", f"/contexts/{context_id}/restart", None), ("DELETE", f"/contexts/{context_id}", None)]
        for method, path, body in routes:
            bare = httpx.request(method, f"{sandpit}{path}", json=body, headers=base, timeout=HTTP_TIMEOUT_S)
            assert bare.status_code == 401, (method, path, bare.text)
            for header in ("X-Access-Token", "E2B-Traffic-Access-Token"):
                stolen = httpx.request(method, f"{sandpit}{path}", json=body, timeout=HTTP_TIMEOUT_S,
                                       headers={**base, header: other._envd_access_token})
                assert stolen.status_code == 502, (method, path, header, stolen.text)
        assert [c["id"] for c in ApiSandbox.objects.get(sandbox_id=mine.sandbox_id).contexts].count(context_id) == 1  # nothing changed
        listed = httpx_get(f"{sandpit}/contexts", headers={**base, "E2B-Traffic-Access-Token": mine.traffic_access_token})
        assert listed.status_code == 200 and context_id in {c["id"] for c in listed.json()}
        assert context_id in {c.id for c in mine.list_code_contexts()}
    finally:
        mine.kill()
        other.kill()


def test_admin_shows_api_sandbox_env_names_but_not_values() -> None:
    staff = User.objects.create_superuser(username="root", password="pw")
    owner = User.objects.create_user(username="alice", password="pw")
    session = services.session_create(owner=owner, language="python", title="with secrets")
    row = ApiSandbox.objects.create(session=session, envs={"DB_PASSWORD": "hunter2-secret"}, end_at=session.created_at)
    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/runner/apisandbox/{row.pk}/change/")
    assert page.status_code == 200
    assert "DB_PASSWORD" in page.content.decode() and "hunter2-secret" not in page.content.decode()
    listing = admin.get("/admin/runner/apisandbox/")
    assert listing.status_code == 200 and "hunter2-secret" not in listing.content.decode()


def test_revoking_the_key_refuses_the_sandbox_and_kills_it(sandpit: str) -> None:
    user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key)
    token_headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49999", "X-Access-Token": sandbox._envd_access_token}
    assert sandbox.run_code("1 + 1").text == "2" and sandbox.commands.run("echo hi").stdout == "hi\n"
    page = Client()
    page.force_login(user)
    page.post(f"/account/keys/{ApiKey.objects.get(owner=user).id}/revoke/")
    time.sleep(1.2)  # past the routing's cache (RECENT_TTL_S)

    refused = httpx_post(f"{sandpit}/execute", json={"code": "print('ran')"}, headers=token_headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"], refused.text
    with pytest.raises(SandboxException, match="401"):
        sandbox.run_code("print('ran')")
    with pytest.raises(AuthenticationException):  # envd's Process/Start
        sandbox.commands.run("echo ran")
    assert not Execution.objects.filter(code__contains="ran").exists()

    deadline = time.monotonic() + 15
    while ApiSandbox.objects.filter(killed_at=None).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ApiSandbox.objects.get().killed_at is not None
    assert not SandboxLease.objects.open().exists()
    assert SandboxLease.objects.get().end_reason == "revoked"
    # Another live key of the same user doesn't bring it back.
    _user, other_key = key_for("alice", name="other")
    with pytest.raises(NotFoundException):
        Sandbox.connect(sandbox.sandbox_id, api_key=other_key)


def test_deactivating_the_owner_in_the_admin_refuses_and_kills_their_sandboxes(sandpit: str) -> None:
    user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key)
    assert sandbox.run_code("1 + 1").text == "2"
    admin = Client()
    admin.force_login(User.objects.create_superuser(username="root", password="pw"))
    joined = user.date_joined
    saved = admin.post(f"/admin/auth/user/{user.pk}/change/", {
        "username": "alice", "date_joined_0": joined.strftime("%Y-%m-%d"), "date_joined_1": joined.strftime("%H:%M:%S"),
    })  # is_active unticked
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert not User.objects.get(pk=user.pk).is_active
    time.sleep(1.2)  # past the routing's cache (RECENT_TTL_S)

    with pytest.raises(SandboxException, match="401.*deactivated"):
        sandbox.run_code("print('ran')")
    with pytest.raises(AuthenticationException):
        sandbox.commands.run("echo ran")
    assert not Execution.objects.filter(code__contains="ran").exists()
    deadline = time.monotonic() + 15
    while ApiSandbox.objects.filter(killed_at=None).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ApiSandbox.objects.get().killed_at is not None
    assert SandboxLease.objects.get().end_reason == "revoked"



def test_a_burst_over_the_api_rate_limit_gets_429_and_other_users_are_unaffected(daphnes: Callable[..., Daphne]) -> None:
    limit = 8
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", API_REQUESTS_PER_10S=str(limit))
    url = f"http://127.0.0.1:{server.port}"
    _alice, alice_key = key_for("alice")
    _bob, bob_key = key_for("bob")
    alices = Sandbox.create(api_key=alice_key, api_url=url, sandbox_url=url)
    bobs = Sandbox.create(api_key=bob_key, api_url=url, sandbox_url=url)
    try:
        while time.time() % 10 > 4:  # start early in a 10 s window, so the burst stays inside one
            time.sleep(0.1)
        allowed = 0
        with pytest.raises(RateLimitException):  # envd's 429
            for _ in range(3 * limit):
                alices.files.write("burst.txt", "x")
                allowed += 1
        assert allowed <= limit
        with pytest.raises(RateLimitException):  # the control plane's (the SDK's own retries, which wait Retry-After, off)
            Sandbox.list(api_key=alice_key, api_url=url, retries=0).next_items()
        with pytest.raises(SandboxException, match="429"):  # the code interpreter's
            alices.run_code("print('burst')")
        refused = httpx_get(f"{url}/v2/sandboxes", headers={"X-API-Key": alice_key})
        assert refused.status_code == 429 and refused.json()["code"] == 429 and "try again" in refused.json()["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        # Bob, meanwhile, is served as usual.
        assert bobs.run_code("6 * 7").text == "42"
        assert [s.sandbox_id for s in Sandbox.list(api_key=bob_key, api_url=url).next_items()] == [bobs.sandbox_id]
        assert not Execution.objects.filter(code__contains="burst").exists()
    finally:
        for sandbox, key in ((alices, alice_key), (bobs, bob_key)):
            deadline = time.monotonic() + 15
            while httpx.delete(f"{url}/sandboxes/{sandbox.sandbox_id}", headers={"X-API-Key": key}).status_code == 429 and time.monotonic() < deadline:
                time.sleep(1)  # refused while the window lasts


def test_revoking_a_key_in_the_admin_ends_its_sandboxes() -> None:
    from django.utils import timezone

    staff = User.objects.create_superuser(username="root", password="pw")
    owner = User.objects.create_user(username="alice", password="pw")
    key, _secret = services.api_key_create(owner=owner, name="laptop")
    session = services.session_create(owner=owner, language="python", title="api")
    row = ApiSandbox.objects.create(session=session, api_key=key, end_at=timezone.now() + timezone.timedelta(hours=1))
    admin = Client()
    admin.force_login(staff)
    now = timezone.localtime()
    saved = admin.post(f"/admin/runner/apikey/{key.pk}/change/", {"revoked_at_0": now.strftime("%Y-%m-%d"), "revoked_at_1": now.strftime("%H:%M:%S")})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    row.refresh_from_db()
    assert row.end_at <= timezone.now()  # the expiry kills it next (lease reason "revoked")


def _sdk_server(daphnes: Callable[..., Daphne], **settings: str) -> str:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", **settings)
    return f"http://127.0.0.1:{server.port}"


def test_commands_are_runs_stored_as_bash_in_history_and_refused_past_the_daily_run_limit(daphnes: Callable[..., Daphne]) -> None:
    url = _sdk_server(daphnes, QUOTA_RUNS_PER_DAY="2", RUN_TIMEOUT_S="30")
    user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key, api_url=url, sandbox_url=url)
    try:
        assert sandbox.commands.run("echo hi; echo oops >&2").stdout == "hi\n"
        with pytest.raises(CommandExitException):
            sandbox.commands.run("exit 4")
        # Both were runs: the day's limit is reached, for commands and code alike.
        with pytest.raises(RateLimitException, match="Daily run limit reached: 2 of 2 runs today"):
            sandbox.commands.run("echo again")
        with pytest.raises(SandboxException, match="Daily run limit reached"):
            sandbox.run_code("1")
    finally:
        sandbox.kill()
    session = ChatSession.objects.get(pk=ApiSandbox.objects.get().session_id)
    rows = list(session.executions.order_by("seq").values_list("language", "code", "status", "error_value"))
    assert rows == [("bash", "echo hi; echo oops >&2", "succeeded", ""), ("bash", "exit 4", "failed", "exit status 4")]
    first = session.executions.get(seq=1)
    assert [(c.kind, c.text) for c in first.chunks.order_by("index")] == [("stdout", "hi\n"), ("stderr", "oops\n")]
    assert (first.stdout_bytes, first.stderr_bytes) == (3, 5)
    page = Client()
    page.force_login(user)
    assert "echo hi; echo oops &gt;&amp;2" in page.get(f"/sessions/{session.pk}/").content.decode()
    # The admin's usage lists them among the user's runs (a day either side: no midnight race).
    today = timezone.localdate()
    runs = usage_runs_for_user(user_id=user.pk, start=today - timedelta(days=1), end=today + timedelta(days=1))
    assert sorted(runs.values_list("code", flat=True)) == ["echo hi; echo oops >&2", "exit 4"]


def test_a_command_is_stopped_at_run_timeout_s_whatever_timeout_the_client_asks(daphnes: Callable[..., Daphne]) -> None:
    url = _sdk_server(daphnes, RUN_TIMEOUT_S="3")
    _user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key, api_url=url, sandbox_url=url)
    try:
        started = time.monotonic()
        with pytest.raises(CommandExitException) as stopped:
            sandbox.commands.run("echo begun; sleep 20; echo never", timeout=120)
        elapsed_s = time.monotonic() - started
        assert 2.5 < elapsed_s < 12, elapsed_s
        assert stopped.value.stdout == "begun\n" and "passed 3 s" in (stopped.value.error or "")
        assert sandbox.commands.run("echo still here").stdout == "still here\n"
    finally:
        sandbox.kill()
    row = Execution.objects.get(code="echo begun; sleep 20; echo never")
    assert row.status == "timed_out" and row.language == "bash"


def test_a_running_command_counts_against_the_concurrency_limit_and_hanging_up_kills_it(daphnes: Callable[..., Daphne]) -> None:
    url = _sdk_server(daphnes, QUOTA_CONCURRENT_RUNS="1", RUN_TIMEOUT_S="30")
    _user, key = key_for("alice")
    sandbox = Sandbox.create(api_key=key, api_url=url, sandbox_url=url)
    hung_up: list[BaseException] = []

    def long_command() -> None:
        try:
            sandbox.commands.run("sleep 25", timeout=5)
        except BaseException as exc:  # the SDK's own timeout closes the stream
            hung_up.append(exc)

    try:
        waiting = threading.Thread(target=long_command, daemon=True)
        waiting.start()
        deadline = time.monotonic() + 30
        while not Execution.objects.filter(status="running", code="sleep 25").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(RateLimitException, match="Concurrent run limit reached: 1 of 1 run at once"):
            sandbox.commands.run("echo two")
        with pytest.raises(SandboxException, match="Concurrent run limit reached"):
            sandbox.run_code("1")
        waiting.join(30)
        assert hung_up and isinstance(hung_up[0], TimeoutException), hung_up
        # The hang-up stopped the command (its process is killed, long before its 25 s), so the
        # next one may start.
        deadline = time.monotonic() + 10
        while Execution.objects.active().filter(code="sleep 25").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Execution.objects.get(code="sleep 25").status == "cancelled"
        assert sandbox.commands.run("echo next").stdout == "next\n"
    finally:
        sandbox.kill()


def test_the_live_sandbox_limit_kills_the_idle_api_sandbox_and_refuses_when_none_is_idle(daphnes: Callable[..., Daphne]) -> None:
    url = _sdk_server(daphnes, QUOTA_LIVE_SANDBOXES="1", RUN_TIMEOUT_S="30")
    _user, key = key_for("alice")
    first = Sandbox.create(api_key=key, api_url=url, sandbox_url=url, timeout=3600)
    assert first.run_code("1 + 1").text == "2"
    second = Sandbox.create(api_key=key, api_url=url, sandbox_url=url, timeout=3600)
    busy = None
    try:
        # The idle one with the oldest activity made room: killed, its lease ended "replaced".
        replaced = ApiSandbox.objects.get(sandbox_id=first.sandbox_id)
        assert replaced.killed_at is not None
        assert SandboxLease.objects.get(session_id=replaced.session_id).end_reason == "replaced"
        assert not first.is_running()
        # With the one live sandbox running code, a create is refused with E2B's 429, naming the limit.
        def run_until_killed() -> None:
            with pytest.raises(TimeoutException, match="sandbox was killed"):  # as E2B's SDK says it
                second.run_code("import time\ntime.sleep(20)", timeout=60)

        busy = threading.Thread(target=run_until_killed, daemon=True)
        busy.start()
        deadline = time.monotonic() + 30
        while not Execution.objects.filter(status="running").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(RateLimitException, match="Live sandbox limit reached: 1 of 1 sandbox open"):
            Sandbox.create(api_key=key, api_url=url, sandbox_url=url)
        refused = httpx_post(f"{url}/v2/sandboxes", headers={"X-API-Key": key}, json={})
        assert refused.status_code == 429 and refused.json()["code"] == 429
        assert refused.json()["message"].startswith("Live sandbox limit reached")
        assert ApiSandbox.objects.filter(killed_at=None).count() == 1  # the refused ones left nothing live
    finally:
        second.kill()
        if busy is not None:
            busy.join(30)
    assert not SandboxLease.objects.open().exists()


def test_create_envs_reach_every_kernel_and_command_and_run_envs_last_one_run(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create(envs={"API_TOKEN": "s3cret 'quoted' $x", "MODE": "create"})
    try:
        # Create-time envs: in Python, JavaScript, bash and commands.
        assert "".join(sandbox.run_code("import os; print(os.getenv('API_TOKEN'))").logs.stdout) == "s3cret 'quoted' $x\n"
        assert sandbox.run_code("process.env.API_TOKEN", language="js").text.strip('"') == "s3cret 'quoted' $x"
        assert "".join(sandbox.run_code('echo "$API_TOKEN"', language="bash").logs.stdout) == "s3cret 'quoted' $x\n"
        assert sandbox.commands.run('echo "$API_TOKEN"').stdout == "s3cret 'quoted' $x\n"

        # Per-run envs apply to that run only: an override, and a new one, then restored.
        for language, read in (("python", "import os; (os.getenv('MODE'), os.getenv('ONLY_NOW', 'unset'))"),
                               ("javascript", "[process.env.MODE, process.env.ONLY_NOW ?? 'unset'].join(',')")):
            during = sandbox.run_code(read, language=language, envs={"MODE": "run", "ONLY_NOW": "yes"}).text
            after = sandbox.run_code(read, language=language).text
            assert "run" in during and "yes" in during, (language, during)
            assert "create" in after and "unset" in after and "yes" not in after, (language, after)
        during = sandbox.run_code('echo "$MODE ${ONLY_NOW:-unset}"', language="bash", envs={"MODE": "run", "ONLY_NOW": "yes"})
        after = sandbox.run_code('echo "$MODE ${ONLY_NOW:-unset}"', language="bash")
        assert "".join(during.logs.stdout) == "run yes\n" and "".join(after.logs.stdout) == "create unset\n"

        # A user's own change of a create-time variable stays (they are set once per kernel).
        sandbox.run_code("import os; os.environ['MODE'] = 'mine'")
        assert sandbox.run_code("import os; os.getenv('MODE')").text == "mine"
        # A bad name is a 400, and nothing runs.
        with pytest.raises(SandboxException, match="not a valid variable name"):
            sandbox.run_code("1", envs={"A B": "x"})
    finally:
        sandbox.kill()


def test_env_values_and_context_cwds_never_land_in_the_stored_runs(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create(envs={"CREATE_SECRET": "create-value-4711"})
    try:
        assert "".join(sandbox.run_code("import os; print(os.getenv('CREATE_SECRET'))").logs.stdout) == "create-value-4711\n"
        ran = sandbox.run_code("import os; print(os.getenv('RUN_SECRET'))", envs={"RUN_SECRET": "run-value-0815"})
        assert "".join(ran.logs.stdout) == "run-value-0815\n"
        assert "".join(sandbox.run_code('echo "$RUN_SECRET"', language="bash", envs={"RUN_SECRET": "bash-value-42"}).logs.stdout) == "bash-value-42\n"
        sandbox.files.make_dir("/home/user/sub-4711-dir")
        context = sandbox.create_code_context(cwd="/home/user/sub-4711-dir")
        assert sandbox.run_code("import os; os.getcwd()", context=context).text.strip("'") == "/home/user/sub-4711-dir"
    finally:
        sandbox.kill()
    stored = list(Execution.objects.values_list("code", flat=True))
    assert stored == ["import os; print(os.getenv('CREATE_SECRET'))", "import os; print(os.getenv('RUN_SECRET'))",
                      'echo "$RUN_SECRET"', "import os; os.getcwd()"]  # what the user sent, in order, and only that


def test_cloud_only_features_are_e2b_shaped_501s_at_the_call(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from e2b import Template

    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    api = httpx.Client(base_url=sandpit, headers={"X-API-Key": key}, timeout=HTTP_TIMEOUT_S)
    # Whole route families: JSON, never Django's HTML 404 page.
    for method, path, feature in (("GET", "/templates", "templates"), ("POST", "/v3/templates", "templates"),
                                  ("GET", "/templates/abc/builds/x/status", "templates"), ("GET", "/volumes", "volumes"),
                                  ("POST", "/volumes", "volumes"), ("GET", "/snapshots", "snapshots"),
                                  ("GET", "/sandboxes/metrics", "metrics")):
        answer = api.request(method, path)
        assert answer.status_code == 501, (path, answer.text)
        assert answer.json()["code"] == 501 and feature in answer.json()["message"] and "not supported by Sandpit" in answer.json()["message"]
    with pytest.raises(Exception, match="templates are not supported by Sandpit"):
        Template.build(Template().from_image("python:3.11"), "mine")
    # Create options Sandpit can't honour are refused at create, and no sandbox is left.
    for options, feature in (({"allow_internet_access": True}, "internet access"),
                             ({"network": {"allow_out": ["1.1.1.1"]}}, "network rules")):
        with pytest.raises(SandboxException, match=f"501: {feature}.*not supported by Sandpit"):
            Sandbox.create(**options)
    for body, feature in (({"autoPause": True}, "pausing"), ({"volumeMounts": [{"name": "v", "path": "/data"}]}, "volumes")):
        answer = api.post("/v2/sandboxes", json=body)
        assert answer.status_code == 501 and feature in answer.json()["message"], answer.text
    assert not ApiSandbox.objects.exists()
    answer = api.post("/v2/sandboxes", json={"network": {"allowPublicTraffic": True}})
    assert answer.status_code == 501 and "network rules" in answer.json()["message"]
    # What a sandbox with no network and no public port already meets is accepted.
    Sandbox.create(network={"allow_public_traffic": False, "deny_out": ["0.0.0.0/0"]}).kill()
    sandbox = Sandbox.create(allow_internet_access=False)
    try:
        # An unknown language: a 400 that names the languages there are.
        with pytest.raises(SandboxException, match="No such kernel named ruby.*python"):
            sandbox.run_code("puts 1", language="ruby")
        with pytest.raises(SandboxException, match="400.*No such kernel named cobol.*bash"):
            sandbox.create_code_context(language="cobol")
    finally:
        sandbox.kill()


def test_js_and_ts_string_results_are_the_string(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        assert sandbox.run_code("Deno.cwd()", language="js").text == "/home/user"
        assert sandbox.run_code("const s: string = 'a\"b' + \"c'd\"; s", language="ts").text == "a\"bc'd"
        assert sandbox.run_code("'tab\\there'", language="javascript").text == "tab\there"
        # Other values keep their shown form.
        assert sandbox.run_code("[1, 'x']", language="js").text == '[ 1, "x" ]'
        assert sandbox.run_code("42", language="js").text == "42"
    finally:
        sandbox.kill()


def test_files_gzip_both_ways_remove_missing_and_deep_listing(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        # A gzip upload is stored decoded: the kernel and a plain read see the text.
        sandbox.files.write("zipped.txt", "hello gzip " * 100, gzip=True)
        assert sandbox.run_code("open('zipped.txt').read()[:16]").text == "hello gzip hello"
        assert sandbox.files.read("zipped.txt") == "hello gzip " * 100
        assert sandbox.files.read("zipped.txt", gzip=True) == "hello gzip " * 100
        # Accept-Encoding: gzip gets the file gzip-encoded (raw bytes, as on the wire).
        url = f"{sandpit}/files?path=zipped.txt"
        headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49983",
                   "X-Access-Token": sandbox._envd_access_token, "Accept-Encoding": "gzip"}
        with httpx_stream("GET", url, headers=headers) as raw:
            assert raw.headers["content-encoding"] == "gzip"
            assert gzip.decompress(b"".join(raw.iter_raw())) == ("hello gzip " * 100).encode()
        bomb = httpx_post(url, content=gzip.compress(b"\0" * (11 * 1024 * 1024)),
                          headers={**headers, "Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})
        assert bomb.status_code == 413 and bomb.json()["code"] == 413
        not_gzip = httpx_post(url, content=b"plain", headers={**headers, "Content-Encoding": "gzip"})
        assert not_gzip.status_code == 400
        assert sandbox.files.read("zipped.txt") == "hello gzip " * 100  # the refused uploads lost nothing

        # Removing a missing path is a no-op, as in E2B; outside the workspace is still refused.
        sandbox.files.remove("never/was.txt")
        with pytest.raises((InvalidArgumentException, SandboxException)):
            sandbox.files.remove("/etc/passwd")

        # list(depth=N) recurses N levels.
        sandbox.files.write("a/b/c/deep.txt", "x")
        sandbox.files.write("a/top.txt", "y")
        assert {e.path for e in sandbox.files.list("a")} == {"/home/user/a/b", "/home/user/a/top.txt"}
        sandbox.files.make_dir("a/b2")
        # Each folder is followed by its own entries, as envd walks.
        assert [e.path for e in sandbox.files.list("a", depth=2)] == [
            "/home/user/a/b", "/home/user/a/b/c", "/home/user/a/b2", "/home/user/a/top.txt"]
        assert "/home/user/a/b/c/deep.txt" in {e.path for e in sandbox.files.list("a", depth=3)}
    finally:
        sandbox.kill()


def test_commands_and_files_as_root_are_refused_clearly(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        with pytest.raises(SandboxException, match="running as 'root' is not supported by Sandpit"):
            sandbox.commands.run("id -u", user="root")
        with pytest.raises(SandboxException, match="running as 'root' is not supported by Sandpit"):
            sandbox.files.write("/home/user/as-root.txt", "x", user="root")
        assert not sandbox.files.exists("as-root.txt")
        # The sandbox's own user, named or not, works; it is never uid 0.
        assert sandbox.commands.run("id -u", user="user").stdout.strip() != "0"
        assert sandbox.commands.run("id -u").stdout.strip() != "0"
    finally:
        sandbox.kill()


def test_killed_and_expired_sandboxes_take_their_workspace_with_them(sandpit: str) -> None:
    from django.conf import settings

    _user, key = key_for("alice")
    killed = Sandbox.create(api_key=key)
    expiring = Sandbox.create(api_key=key, timeout=3)
    folders = {}
    for sandbox in (killed, expiring):
        sandbox.files.write("kept-until-the-end.txt", "x")
        session_id = ApiSandbox.objects.get(sandbox_id=sandbox.sandbox_id).session_id
        folders[sandbox.sandbox_id] = settings.SANDBOX_WORKSPACES_DIR / str(session_id)
        assert (folders[sandbox.sandbox_id] / "kept-until-the-end.txt").exists()
    killed.kill()
    assert not folders[killed.sandbox_id].exists()
    deadline = time.monotonic() + 20
    while folders[expiring.sandbox_id].exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folders[expiring.sandbox_id].exists()
    # The sessions and their history stay.
    assert ChatSession.objects.filter(kind="api").count() == 2


def test_list_pages_orders_and_filters_and_fresh_sandboxes_list_default_contexts(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    made = [Sandbox.create(metadata={"suite": "paging"}) for _ in range(3)]
    try:
        query = SandboxQuery(metadata={"suite": "paging"})
        oldest_first = [s.sandbox_id for s in made]
        # Pages of one, newest first by default, then in the order asked for.
        paginator = Sandbox.list(query=query, limit=1)
        pages = []
        while paginator.has_next:
            pages.append([s.sandbox_id for s in paginator.next_items()])
        assert pages == [[i] for i in reversed(oldest_first)] and paginator.next_token is None
        assert [s.sandbox_id for s in Sandbox.list(query=query, order="asc").next_items()] == oldest_first
        paginator = Sandbox.list(query=query, order="asc", limit=2)
        assert [s.sandbox_id for s in paginator.next_items()] == oldest_first[:2] and paginator.has_next
        assert [s.sandbox_id for s in paginator.next_items()] == oldest_first[2:] and not paginator.has_next
        # started_after (inclusive) and template filters.
        started = made[1].get_info().started_at
        after = Sandbox.list(query=SandboxQuery(metadata={"suite": "paging"}, started_after=started), order="asc").next_items()
        assert [s.sandbox_id for s in after] == oldest_first[1:]
        later = Sandbox.list(query=SandboxQuery(metadata={"suite": "paging"}, started_after=started + timedelta(seconds=60))).next_items()
        assert later == []
        assert len(Sandbox.list(query=SandboxQuery(metadata={"suite": "paging"}, template="code-interpreter-v1")).next_items()) == 3
        assert Sandbox.list(query=SandboxQuery(metadata={"suite": "paging"}, template="unknown-template")).next_items() == []
        bad = httpx_get(f"{sandpit}/v2/sandboxes?nextToken=zzz", headers={"X-API-Key": key})
        assert bad.status_code == 400 and bad.json()["code"] == 400

        # A fresh sandbox lists its default Python and JavaScript contexts.
        assert sorted(c.language for c in made[0].list_code_contexts()) == ["javascript", "python"]
    finally:
        for sandbox in made:
            sandbox.kill()


def test_dataframe_results_carry_e2b_data(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        result = sandbox.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2, 3], 'when': pd.to_datetime(['2024-01-01'] * 3)})").results[0]
        assert result.data == {"a": [1, 2, 3], "when": ["2024-01-01T00:00:00.000"] * 3}
        assert "<table" in result.html and result.is_main_result
        # display() of one, and a JSON result, are objects too.
        shown = sandbox.run_code("from IPython.display import display, JSON\ndisplay(pd.DataFrame({'b': ['x']}))\nJSON({'k': [1]})").results
        assert shown[0].data == {"b": ["x"]} and shown[1].json == {"k": [1]}
    finally:
        sandbox.kill()


def test_pil_show_and_save_show_the_image(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        make = "from PIL import Image\nimage = Image.new('RGB', (8, 8), 'red')\n"
        shown = sandbox.run_code(make + "image.show()\nprint('shown')")
        assert shown.error is None and shown.results and shown.results[0].png and shown.logs.stdout == ["shown\n"]
        saved = sandbox.run_code("image.save('red.png')")
        assert saved.results and saved.results[0].png
        assert sandbox.files.read("red.png", format="bytes")[:4] == b"\x89PNG"
    finally:
        sandbox.kill()


def test_matplotlib_figures_carry_e2b_charts(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create()
    try:
        code = ("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 5, 6], label='up')\nplt.title('Rising')\n"
                "plt.xlabel('time (s)')\nplt.show()")
        result = sandbox.run_code(code).results[0]
        assert result.png
        assert result.chart is not None and result.chart.type.value == "line" and result.chart.title == "Rising"
        assert result.chart.x_unit == "s" and result.chart.elements[0].label == "up"
        assert [tuple(p) for p in result.chart.elements[0].points] == [(1, 4), (2, 5), (3, 6)]
        bars = sandbox.run_code("plt.bar(['a', 'b'], [3, 7])\nplt.show()").results[0]
        assert bars.chart.type.value == "bar" and [e.value for e in bars.chart.elements] == [3, 7]
    finally:
        sandbox.kill()


def test_command_killed_with_its_sandbox_raises_e2bs_timeout(sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from e2b import Sandbox as CoreSandbox

    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = CoreSandbox.create()
    command = sandbox.commands.run("sleep 60", background=True)
    time.sleep(0.5)
    sandbox.kill()
    with pytest.raises(TimeoutException, match="sandbox was killed or reached its end of life"):
        command.wait()
    # The async SDK says so too (it raises on the stream's error without probing the sandbox).
    from e2b import AsyncSandbox as CoreAsyncSandbox

    async def async_kill() -> None:
        doomed = await CoreAsyncSandbox.create()
        handle = await doomed.commands.run("sleep 60", background=True)
        await asyncio.sleep(0.5)
        await doomed.kill()
        with pytest.raises(TimeoutException, match="sandbox was killed or reached its end of life"):
            await handle.wait()

    asyncio.run(async_kill())
    # A command that ends by a signal while the sandbox lives is still an exit, as E2B's is.
    other = CoreSandbox.create()
    try:
        with pytest.raises(CommandExitException) as killed:
            other.commands.run("kill -9 $$")
        assert killed.value.exit_code != 0
    finally:
        other.kill()
