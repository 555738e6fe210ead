"""An API sandbox's processes (envd's Process List, Connect, SendSignal, SendInput, CloseStdin),
driven by the real `e2b` SDK against a real Daphne on the local backend: background commands are
listed, followed, killed and fed stdin by pid, bounded per sandbox, and each is still a run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from e2b import (
    AsyncSandbox,
    CommandExitException,
    NotFoundException,
    Sandbox,
    SandboxException,
    TimeoutException,
)

from runner import services
from runner.models import Execution
from tests.fixtures_daphne import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


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
    yield _server(daphnes, monkeypatch)


def test_a_background_command_is_listed_followed_and_killed_by_its_pid(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        ticking = sandbox.commands.run("for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done", background=True,
                                       envs={"WHO": "me"}, cwd="/home/user")
        sleeping = sandbox.commands.run("sleep 25", background=True)
        assert ticking.pid != sleeping.pid and ticking.pid >= 1000
        listed = {p.pid: p for p in sandbox.commands.list()}
        assert set(listed) == {ticking.pid, sleeping.pid}
        info = listed[ticking.pid]
        assert (info.cmd, info.args, info.envs, info.cwd) == (
            "/bin/bash", ["-l", "-c", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done"], {"WHO": "me"}, "/home/user")
        # Commands wait their turn in the session: the sleep runs once the ticks are done. Connect
        # follows the ticking one to its end, from where it is when connecting.
        followed = sandbox.commands.connect(ticking.pid)
        assert followed.pid == ticking.pid
        result = followed.wait()
        assert result.exit_code == 0 and result.stdout.endswith("tick 6\n")
        assert ticking.wait().stdout == "".join(f"tick {i}\n" for i in range(1, 7))
        # Kill by pid: its handle ends killed, and it is gone from the table.
        assert sandbox.commands.kill(sleeping.pid) is True
        with pytest.raises(CommandExitException) as killed:
            sleeping.wait()
        assert killed.value.exit_code == -1 and killed.value.error == "the command was stopped"
        assert sandbox.commands.list() == []
        assert sandbox.commands.kill(sleeping.pid) is False
        with pytest.raises(NotFoundException):
            sandbox.commands.connect(sleeping.pid)
        with pytest.raises(CommandExitException):
            sandbox.commands.run(f"kill -0 {sleeping.pid}")  # no command sees another's pid
    finally:
        sandbox.kill()
    # Still runs, recorded as bash: the kill is a stop.
    assert Execution.objects.get(code="sleep 25").status == Execution.Status.CANCELLED
    assert Execution.objects.get(code="sleep 25").language == "bash"


def test_stdin_reaches_a_background_command_and_closing_it_ends_the_command(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        cat = sandbox.commands.run("cat", background=True, stdin=True)
        sandbox.commands.send_stdin(cat.pid, "Hello,\n")
        cat.send_stdin(b"World!")
        cat.close_stdin()
        result = cat.wait()
        assert result.exit_code == 0 and result.stdout == "Hello,\nWorld!"
        # Without stdin=True the command reads /dev/null, and input for it is refused.
        quiet = sandbox.commands.run("sleep 20", background=True)
        with pytest.raises(SandboxException, match="stdin is not enabled"):
            sandbox.commands.send_stdin(quiet.pid, "x")
        quiet.kill()
        with pytest.raises(NotFoundException):
            sandbox.commands.send_stdin(999999, "x")
    finally:
        sandbox.kill()


def test_a_sandbox_runs_at_most_sandbox_processes_max_commands_at_once(daphnes: Callable[..., Daphne],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _server(daphnes, monkeypatch, SANDBOX_PROCESSES_MAX="2")
    sandbox = Sandbox.create()
    try:
        first = sandbox.commands.run("sleep 20", background=True)
        second = sandbox.commands.run("sleep 20", background=True)  # held: a dropped handle hangs up
        with pytest.raises(SandboxException, match="SANDBOX_PROCESSES_MAX"):
            sandbox.commands.run("echo three")
        first.kill()
        deadline = time.monotonic() + 15
        while len(sandbox.commands.list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p.pid for p in sandbox.commands.list()] == [second.pid]
    finally:
        sandbox.kill()


def test_a_command_past_the_sdks_timeout_raises_timeout_exception(sandpit: Daphne) -> None:
    async def scenario() -> None:
        sandbox = await AsyncSandbox.create()
        try:
            began = time.monotonic()
            with pytest.raises(TimeoutException):
                await sandbox.commands.run("sleep 20", timeout=2)
            assert time.monotonic() - began < 15
        finally:
            await sandbox.kill()

    asyncio.run(scenario())
    assert Execution.objects.get(code="sleep 20").status == Execution.Status.TIMED_OUT


def test_a_sandbox_killed_mid_command_leaves_no_unretrieved_future_in_the_log(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    command = sandbox.commands.run("echo started; sleep 25", background=True)
    deadline = time.monotonic() + 20
    while not Execution.objects.filter(code="echo started; sleep 25", status="running").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    sandbox.kill()
    with pytest.raises(Exception):
        command.wait()
    deadline = time.monotonic() + 15
    while Execution.objects.active().filter(code="echo started; sleep 25").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    assert "exception was never retrieved" not in sandpit.log_path.read_text(errors="replace")
