"""The E2B backend against the local E2B-protocol server: the real SDK end to end, with faults.

Nothing is patched: the SDK reaches tests/e2b_server over HTTP through its own `api_url` and
`sandbox_url` options, and real kernels answer. Faults are armed on the server (`inject`).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from django.test import override_settings

from runner.models import ChatSession, Execution, OutputChunk, SandboxLease
from runner.sandboxes.base import Error, Event, Result, SandboxGone, SandboxUnavailable, Stdout
from runner.sandboxes.e2b import E2BBackend, E2BSandbox, install_command, workspace_path
from runner.services.sandboxes import NOTICE_NEW_SANDBOX, NOTICE_RECONNECTED
from runner.services.sessions import session_sandbox_restart
from tests.fixtures_e2b import E2BServerControl, e2b_settings
from tests.fixtures_runs import receive, receive_until_finished, run, stdout_of

pytestmark = pytest.mark.timeout(120)


async def _run(sandbox: E2BSandbox, code: str, *, timeout_s: float = 30, language: str = "python"):
    events: list[Event] = []
    outcome = await sandbox.run(code, language=language, on_event=events.append, timeout_s=timeout_s)
    return outcome, events


def _stdout(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Stdout))


# --- the happy path -------------------------------------------------------------------------------


async def test_create_tags_the_sandbox_with_user_and_session_and_idle_timeout(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=7, session_id="abc-123")
    try:
        info = e2b_server.sandboxes()[sandbox.id]
        assert info["metadata"] == {"sandpit_user": "7", "sandpit_session": "abc-123"}
    finally:
        await sandbox.close()
    assert sandbox.id not in e2b_server.sandboxes()


async def test_each_run_pushes_the_e2b_timeout_forward(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        await _run(sandbox, "1")
        await _run(sandbox, "2")
        keep_alives = [r for r in e2b_server.requests() if r == ("POST", f"/sandboxes/{sandbox.id}/timeout")]
        assert len(keep_alives) == 2
    finally:
        await sandbox.close()


async def test_rich_results_become_mime_bundles(e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        outcome, events = await _run(
            sandbox,
            "from IPython.display import display, HTML, Markdown, SVG, Latex, JSON\n"
            "display(HTML('<b>hi</b>'))\n"
            "display(Markdown('*md*'))\n"
            "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>'))\n"
            "display(Latex('$x^2$'))\n"
            "display(JSON({'a': 1}))\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n"
            "40 + 2",
        )
        assert outcome.status == "ok"
        results = [e for e in events if isinstance(e, Result)]
        kinds = [set(r.data) - {"text/plain"} for r in results]
        assert kinds == [{"text/html"}, {"text/markdown"}, {"image/svg+xml"}, {"text/latex"}, {"application/json"}, {"image/png"}, set()]
        assert results[-1].is_main and results[-1].data["text/plain"] == "42"
        assert not any(r.is_main for r in results[:-1])
        assert '"a": 1' in results[4].data["application/json"]
    finally:
        await sandbox.close()


async def test_a_server_restart_reconnects_to_the_same_sandbox_with_its_variables(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    await _run(sandbox, "survivor = 'still here'")
    # A new process builds a new backend from the same settings and knows only the stored id.
    fresh_backend = E2BBackend(e2b_server.config())
    reconnected = await fresh_backend.connect(sandbox.id)
    try:
        assert reconnected.id == sandbox.id
        outcome, events = await _run(reconnected, "print(survivor)")
        assert outcome.status == "ok" and _stdout(events) == "still here\n"
    finally:
        await reconnected.close()


async def test_stop_closes_the_request_and_the_next_run_does_not_hang(e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        run = asyncio.create_task(_run(sandbox, "kept = 1\nimport time\nwhile True: time.sleep(0.05)"))
        await asyncio.sleep(1.0)
        await sandbox.interrupt()
        outcome, _ = await run
        assert outcome.status == "interrupted"
        started = time.monotonic()
        outcome, events = await _run(sandbox, "print(kept)", timeout_s=20)
        assert outcome.status == "ok" and _stdout(events) == "1\n"
        assert time.monotonic() - started < 10
    finally:
        await sandbox.close()


async def test_pip_install_streams_and_the_package_imports(e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        events: list[Event] = []
        outcome = await sandbox.install(["six"], language="python", on_event=events.append, timeout_s=120)
        assert outcome.status == "ok", events
        assert "six" in _stdout(events)
        outcome, events = await _run(sandbox, "import six; print(six.__name__)")
        assert _stdout(events) == "six\n"
    finally:
        await sandbox.close()


# --- input validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["-r", "--index-url=http://x", "../pkg", "/tmp/pkg.whl", "http://evil/x.tar.gz", "git+https://x/y", "a b", "six; rm -rf /", ""])
def test_install_rejects_anything_but_package_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a package name|at least one"):
        install_command([name] if name else [], "python")


def test_install_uses_npm_for_javascript() -> None:
    assert install_command(["lodash@4.17.21", "@types/node"], "typescript").startswith("npm install")
    with pytest.raises(ValueError, match="not a package name"):
        install_command(["file:../x"], "javascript")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "/home/user/../x", "a/../../x", "/home/userx/y"])
def test_paths_outside_the_workspace_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="outside the workspace"):
        workspace_path(path)


def test_workspace_paths_resolve_under_home_user() -> None:
    assert workspace_path("a/b.txt") == "/home/user/a/b.txt"
    assert workspace_path("/home/user/c") == "/home/user/c"
    assert workspace_path(".") == "/home/user"


async def test_files_over_the_size_cap_are_refused(e2b_server: E2BServerControl) -> None:
    backend = E2BBackend(e2b_server.config(file_max_bytes=10))
    sandbox = await backend.create(owner_id=1, session_id="s")
    try:
        with pytest.raises(ValueError, match="10 byte limit"):
            await sandbox.write_file("big.bin", b"x" * 11)
    finally:
        await sandbox.close()


# --- faults ---------------------------------------------------------------------------------------


async def test_a_bad_key_is_degraded_mode_with_the_banner(e2b_server: E2BServerControl) -> None:
    backend = E2BBackend(e2b_server.config(api_key="e2b_not_the_right_key_000000000000000000"))
    with pytest.raises(SandboxUnavailable, match="E2B API key rejected") as raised:
        await backend.create(owner_id=1, session_id="s")
    health = await backend.health()
    assert not health.ok and "E2B API key rejected" in health.detail
    assert "e2b_not_the_right_key" not in str(raised.value) + health.detail


async def test_a_rate_limit_gives_a_clear_message_after_the_sdk_retries(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    e2b_server.inject(where="api", action="status", status=429, times=None)
    with pytest.raises(SandboxUnavailable, match="E2B rate limit reached, try again in a moment"):
        await e2b_backend.create(owner_id=1, session_id="s")
    creates = [r for r in e2b_server.requests() if r == ("POST", "/v2/sandboxes")]
    assert len(creates) > 1  # the SDK retried (Retry-After: 0) before giving up


async def test_an_e2b_server_error_is_a_clear_unavailable(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    e2b_server.inject(where="api", action="status", status=500, times=None)
    with pytest.raises(SandboxUnavailable, match=r"internal error \(HTTP 500\)"):
        await e2b_backend.create(owner_id=1, session_id="s")
    assert not (await e2b_backend.health()).ok


async def test_an_unreachable_e2b_is_degraded_mode_and_health_retries(e2b_server: E2BServerControl) -> None:
    backend = E2BBackend(e2b_server.config(api_url="http://127.0.0.1:9", sandbox_url="http://127.0.0.1:9", request_timeout_s=3))
    health = await backend.health()
    assert not health.ok and "could not be reached" in health.detail
    with pytest.raises(SandboxUnavailable, match="could not be reached"):
        await backend.create(owner_id=1, session_id="s")


async def test_a_stream_dropped_mid_run_keeps_the_output_and_ends_with_a_clear_error(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        # Two objects get through (number_of_executions, the first print), then the stream is cut.
        e2b_server.inject(where="execute", action="drop", after_lines=2)
        outcome, events = await _run(sandbox, "kept = 5\nimport time\nprint('before', flush=True)\ntime.sleep(0.3)\nprint('after')")
        assert outcome.status == "error"
        assert _stdout(events) == "before\n"
        assert isinstance(events[-1], Error) and events[-1].ename == "ConnectionLost"
        assert "output so far is kept" in events[-1].evalue
        outcome, events = await _run(sandbox, "print(kept)")
        assert outcome.status == "ok" and _stdout(events) == "5\n"
    finally:
        await sandbox.close()


async def test_a_slow_execute_is_cut_by_our_own_deadline(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        e2b_server.inject(where="execute", action="delay", delay_s=5)
        started = time.monotonic()
        outcome, _ = await _run(sandbox, "1", timeout_s=1)
        assert outcome.status == "timeout"
        assert time.monotonic() - started < 3
        outcome, events = await _run(sandbox, "print('next')", timeout_s=20)
        assert outcome.status == "ok" and _stdout(events) == "next\n"
    finally:
        await sandbox.close()


async def test_a_long_run_times_out_and_keeps_its_variables(e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        outcome, _ = await _run(sandbox, "kept = 3\nimport time\ntime.sleep(60)", timeout_s=1)
        assert outcome.status == "timeout"
        outcome, events = await _run(sandbox, "print(kept)", timeout_s=20)
        assert outcome.status == "ok" and _stdout(events) == "3\n"
    finally:
        await sandbox.close()


async def test_a_sandbox_not_found_on_connect_is_gone(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    e2b_server.forget(sandbox.id)
    with pytest.raises(SandboxGone):
        await e2b_backend.connect(sandbox.id)


async def test_a_sandbox_not_found_at_run_start_is_gone(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    e2b_server.forget(sandbox.id)
    with pytest.raises(SandboxGone):
        await _run(sandbox, "1")


async def test_a_sandbox_killed_mid_run_ends_the_run_as_gone(e2b_server: E2BServerControl, e2b_backend: E2BBackend) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    run = asyncio.create_task(_run(sandbox, "print('started', flush=True)\nimport time\ntime.sleep(30)"))
    await asyncio.sleep(1.5)
    e2b_server.forget(sandbox.id)
    outcome, events = await run
    assert outcome.status == "gone"
    assert _stdout(events) == "started\n"
    assert isinstance(events[-1], Error) and events[-1].ename == "SandboxGone"


async def test_the_api_key_never_reaches_logs_messages_or_the_sandbox(e2b_server: E2BServerControl, e2b_backend: E2BBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = e2b_server.api_key
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        _, events = await _run(sandbox, "import os, pathlib\nprint(repr(dict(os.environ)))")
        assert key not in _stdout(events)
        e2b_server.inject(where="api", action="status", status=500, times=None)
        with pytest.raises(SandboxUnavailable) as raised:
            await e2b_backend.create(owner_id=1, session_id="s")
        assert key not in str(raised.value)
        assert key not in repr(e2b_backend.config)
    finally:
        e2b_server.reset()
    assert key not in caplog.text


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [("javascript", "console.log(6 * 7)", "42\n"), ("typescript", "const n: number = 42; console.log(n)", "42\n"), ("bash", "echo 42", "42\n")],
)
async def test_each_language_runs_in_its_own_context(e2b_backend: E2BBackend, language: str, code: str, expected: str) -> None:
    sandbox = await e2b_backend.create(owner_id=1, session_id="s")
    try:
        outcome, events = await _run(sandbox, code, language=language, timeout_s=60)
        assert outcome.status == "ok", events
        assert _stdout(events) == expected
    finally:
        await sandbox.close()


async def test_health_is_retried_so_degraded_mode_ends_when_e2b_recovers(e2b_server: E2BServerControl) -> None:
    backend = E2BBackend(e2b_server.config(health_cache_s=0))
    e2b_server.inject(where="api", action="status", status=500, times=None)
    assert not (await backend.health()).ok
    e2b_server.reset()
    health = await backend.health()
    assert health.ok and health.isolation == "e2b"


async def test_health_is_cached_briefly_so_polling_does_not_hit_e2b(e2b_server: E2BServerControl) -> None:
    backend = E2BBackend(e2b_server.config(health_cache_s=60))
    for _ in range(5):
        assert (await backend.health()).ok
    assert e2b_server.requests().count(("GET", "/v2/sandboxes")) == 1


# --- through the app ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_is_503_with_the_banner_when_the_e2b_key_is_rejected(client, e2b_server: E2BServerControl) -> None:
    wrong_key = "e2b_rejected_000000000000000000000000000"
    with override_settings(SANDBOX_BACKEND="auto", E2B_API_KEY=wrong_key, E2B_API_URL=e2b_server.url, E2B_SANDBOX_URL=e2b_server.url):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["backend"] == "e2b" and body["ok"] is False
    assert "E2B API key rejected" in body["detail"]
    assert wrong_key not in response.content.decode()


@pytest.mark.django_db
def test_healthz_is_200_when_e2b_accepts_the_key(client, e2b_server: E2BServerControl) -> None:
    with override_settings(SANDBOX_BACKEND="auto", E2B_API_KEY=e2b_server.api_key, E2B_API_URL=e2b_server.url, E2B_SANDBOX_URL=e2b_server.url):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["backend"] == "e2b"


# --- through the websocket and the run services ---------------------------------------------------


async def _left_by_a_previous_process(session: ChatSession, sandbox_id: str) -> None:
    """The rows a server that died would leave: the session names its sandbox; its lease is open."""
    await ChatSession.objects.filter(pk=session.pk).aupdate(backend="e2b", sandbox_id=sandbox_id)
    await SandboxLease.objects.acreate(user_id=session.owner_id, session=session, backend="e2b", sandbox_id=sandbox_id, owner_boot_id="dead")


@pytest.mark.django_db(transaction=True)
async def test_page_run_with_a_rejected_key_is_refused_with_the_banner(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server, E2B_API_KEY="e2b_rejected_000000000000000000000000000"):
        ws = await connect(alice, alice_session)
        await receive(ws)
        execution_id = await run(ws, "print(1)")
        error = await receive(ws)
        finished = await receive(ws)
    assert error["type"] == "error" and error["code"] == "unavailable"
    assert "E2B API key rejected" in error["message"]
    assert finished["execution_id"] == execution_id and finished["status"] == "rejected"


@pytest.mark.django_db(transaction=True)
async def test_page_run_after_a_restart_reconnects_to_the_sessions_e2b_sandbox(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        earlier = await E2BBackend(e2b_server.config()).create(owner_id=alice.pk, session_id=str(alice_session.id))
        await _run(earlier, "z = 'kept'")
        await _left_by_a_previous_process(alice_session, earlier.id)
        ws = await connect(alice, alice_session)
        await receive(ws)
        execution_id = await run(ws, "print(z)")
        frames = await receive_until_finished(ws, execution_id)
    frames = [f for f in frames if f["type"] != "execution.starting"]  # while Sandbox.connect is under way
    assert frames[0] == {"type": "execution.started", "execution_id": execution_id, "notice": NOTICE_RECONNECTED}
    assert stdout_of(frames) == "kept\n" and frames[-1]["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
async def test_page_run_shows_starting_while_sandbox_create_is_under_way(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        ws = await connect(alice, alice_session)
        await receive(ws)
        e2b_server.inject(where="api", action="delay", delay_s=2.0)  # Sandbox.create takes 2 s
        execution_id = await run(ws, "print('up')")
        frames = await receive_until_finished(ws, execution_id)
    kinds = [f["type"] for f in frames]
    assert kinds.index("execution.starting") < kinds.index("execution.started") < kinds.index("execution.output")
    starting = frames[kinds.index("execution.starting")]
    assert (starting["execution_id"], starting["ahead"]) == (execution_id, 0)
    assert stdout_of(frames) == "up\n" and frames[-1]["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
async def test_page_run_whose_e2b_sandbox_was_lost_gets_a_new_one_and_is_told(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        earlier = await E2BBackend(e2b_server.config()).create(owner_id=alice.pk, session_id=str(alice_session.id))
        await _run(earlier, "z = 1")
        await _left_by_a_previous_process(alice_session, earlier.id)
        e2b_server.forget(earlier.id)  # E2B reaped it while no server held it
        ws = await connect(alice, alice_session)
        await receive(ws)
        execution_id = await run(ws, "print('z' in dir())")
        frames = await receive_until_finished(ws, execution_id)
    frames = [f for f in frames if f["type"] != "execution.starting"]  # while Sandbox.create is under way
    assert frames[0] == {"type": "execution.started", "execution_id": execution_id, "notice": NOTICE_NEW_SANDBOX}
    assert stdout_of(frames) == "False\n" and frames[-1]["status"] == "succeeded"
    assert (await Execution.objects.aget(pk=execution_id)).notice == NOTICE_NEW_SANDBOX
    session = await ChatSession.objects.aget(pk=alice_session.pk)
    assert session.sandbox_id not in ("", earlier.id) and session.sandbox_id in e2b_server.sandboxes()


@pytest.mark.django_db(transaction=True)
async def test_page_run_whose_e2b_sandbox_vanishes_while_held_runs_on_a_new_sandbox_with_the_notice(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        ws = await connect(alice, alice_session)
        await receive(ws)
        await receive_until_finished(ws, await run(ws, "z = 1"))
        held = (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id
        e2b_server.forget(held)
        execution_id = await run(ws, "print('z' in dir())")
        frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "succeeded"
    assert stdout_of(frames) == "False\n"
    assert [f.get("notice") for f in frames if f["type"] == "execution.started"][-1] == NOTICE_NEW_SANDBOX
    assert (await Execution.objects.aget(pk=execution_id)).notice == NOTICE_NEW_SANDBOX
    assert (await SandboxLease.objects.aget(sandbox_id=held)).end_reason == "gone"
    session = await ChatSession.objects.aget(pk=alice_session.pk)
    assert session.sandbox_id not in ("", held) and session.sandbox_id in e2b_server.sandboxes()


@pytest.mark.django_db(transaction=True)
async def test_page_run_whose_e2b_sandbox_vanishes_mid_output_fails_then_the_next_is_told(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        ws = await connect(alice, alice_session)
        await receive(ws)
        await receive_until_finished(ws, await run(ws, "z = 1"))
        held = (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id
        execution_id = await run(ws, "import time\nprint('before', flush=True)\ntime.sleep(30)")
        while (frame := await receive(ws))["type"] != "execution.output":
            pass
        e2b_server.forget(held)
        frames = await receive_until_finished(ws, execution_id)
        assert frames[-1]["status"] == "failed"
        assert "E2B sandbox is gone" in " ".join(f.get("text", "") + str(f.get("data", "")) for f in frames)
        frames = await receive_until_finished(ws, await run(ws, "print('z' in dir())"))
    assert [f for f in frames if f["type"] == "execution.started"][0]["notice"] == NOTICE_NEW_SANDBOX
    assert stdout_of(frames) == "False\n"


@pytest.mark.django_db(transaction=True)
async def test_page_run_whose_stream_drops_fails_and_keeps_its_output(e2b_server: E2BServerControl, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        ws = await connect(alice, alice_session)
        await receive(ws)
        await receive_until_finished(ws, await run(ws, "warm = 1"))
        e2b_server.inject(where="execute", action="drop", after_lines=2)
        execution_id = await run(ws, "import time\nprint('before', flush=True)\ntime.sleep(0.3)\nprint('after')")
        frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "failed"
    assert stdout_of(frames) == "before\n"
    errors = [f for f in frames if f["type"] == "execution.output" and f["kind"] == "error"]
    assert errors and errors[-1]["data"]["ename"] == "ConnectionLost"
    stored = [c.text async for c in OutputChunk.objects.filter(execution_id=execution_id, kind="stdout").order_by("index")]
    assert "".join(stored) == "before\n"
    execution = await Execution.objects.aget(pk=execution_id)
    assert execution.status == "failed" and execution.error_name == "ConnectionLost"


@pytest.mark.django_db(transaction=True)
async def test_restart_kills_an_e2b_sandbox_that_no_process_holds(e2b_server: E2BServerControl, runs_cleanup, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        earlier = await E2BBackend(e2b_server.config()).create(owner_id=alice.pk, session_id=str(alice_session.id))
        await _left_by_a_previous_process(alice_session, earlier.id)
        session = await ChatSession.objects.aget(pk=alice_session.pk)
        await session_sandbox_restart(session=session)
    assert earlier.id not in e2b_server.sandboxes()
    lease = await SandboxLease.objects.aget(sandbox_id=earlier.id)
    assert lease.end_reason == "restart" and lease.ended_at is not None
    assert (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id == ""
