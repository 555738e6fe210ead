"""E2B's `sandbox.pty` (envd's Process Start with a pty, SendInput's `input.pty`, Update's size,
SendSignal), driven by the real `e2b` SDK against a real Daphne on the local backend: a shell
under a pty, in the same confinement as commands, in the process table and a run like them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from e2b import (
    CommandExitException,
    InvalidArgumentException,
    NotFoundException,
    Sandbox,
    SandboxException,
)
from e2b.sandbox.commands.command_handle import PtySize

from runner import services
from runner.models import ApiSandbox, Execution
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


def _typed(sandbox: Sandbox, script: bytes, size: PtySize = PtySize(cols=80, rows=24), **create: object) -> tuple[int, str]:
    """Run `script` in a new pty's shell (it should end with `exit`); its exit code and output."""
    terminal = sandbox.pty.create(size, **create)  # type: ignore[arg-type]
    sandbox.pty.send_stdin(terminal.pid, script)
    seen: list[bytes] = []
    result = terminal.wait(on_pty=seen.append)
    return result.exit_code, b"".join(seen).decode()


def test_a_pty_runs_an_interactive_shell_with_its_envs_and_cwd(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        code, out = _typed(sandbox, b"echo hi $ABC; tty; pwd; [ -t 0 ] && echo is-a-tty; exit\n", envs={"ABC": "123"},
                           cwd="/tmp")
        assert code == 0
        assert "hi 123" in out and "is-a-tty" in out and "\r\n/tmp\r\n" in out  # a terminal's line ends
        assert "no job control" not in out  # the pty is the shell's controlling terminal
    finally:
        sandbox.kill()


def test_a_pty_starts_at_its_size_and_a_resize_changes_it(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        code, out = _typed(sandbox, b"stty size; exit\n", PtySize(cols=91, rows=17))
        assert code == 0 and "17 91\r\n" in out
        terminal = sandbox.pty.create(PtySize(cols=80, rows=24))
        sandbox.pty.resize(terminal.pid, PtySize(cols=132, rows=43))
        sandbox.pty.send_stdin(terminal.pid, b"stty size; tput cols; exit\n")
        seen: list[bytes] = []
        assert terminal.wait(on_pty=seen.append).exit_code == 0
        assert "43 132\r\n132\r\n" in b"".join(seen).decode()
    finally:
        sandbox.kill()


def test_a_pty_is_a_process_and_a_run_and_kill_ends_its_wait(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        terminal = sandbox.pty.create(PtySize(cols=80, rows=24))
        listed = sandbox.commands.list()
        assert [(p.pid, p.cmd, p.args) for p in listed] == [(terminal.pid, "/bin/bash", ["-i", "-l"])]
        # Its Start client going away leaves it running (as envd's do): Connect follows it on.
        sandbox.pty.send_stdin(terminal.pid, b"echo first\n")
        terminal.disconnect()
        followed = sandbox.pty.connect(terminal.pid)
        sandbox.pty.send_stdin(terminal.pid, b"echo sec''ond; sleep 25\n")
        seen: list[bytes] = []
        for _stdout, _stderr, pty in followed:
            seen.append(pty or b"")
            if b"second" in b"".join(seen):
                break
        assert sandbox.pty.kill(terminal.pid) is True
        with pytest.raises(CommandExitException) as killed:
            followed.wait()
        assert killed.value.exit_code == -1
        assert sandbox.commands.list() == []
        with pytest.raises(CommandExitException):
            sandbox.commands.run(f"kill -0 {terminal.pid}")
        assert sandbox.pty.kill(terminal.pid) is False
        run = Execution.objects.filter(language="bash").order_by("seq").first()
        assert run is not None and run.code == "/bin/bash -i"
        assert run.status in (Execution.Status.CANCELLED, Execution.Status.INTERRUPTED)
        stored = "".join(run.chunks.filter(kind="stdout").order_by("index").values_list("text", flat=True))
        assert "first" in stored and "second" in stored  # its history keeps what the terminal showed
    finally:
        sandbox.kill()


def test_a_pty_left_by_its_start_client_runs_on_past_daphnes_close_timeout(sandpit: Daphne) -> None:
    """Daphne cancels a request's handler 10 s after its client went away: the pty's run isn't
    that handler's, so it is still there to connect to, type at and end."""
    sandbox = Sandbox.create()
    try:
        terminal = sandbox.pty.create(PtySize(cols=80, rows=24), timeout=0)
        terminal.disconnect()
        time.sleep(12)
        followed = sandbox.pty.connect(terminal.pid)
        sandbox.pty.send_stdin(terminal.pid, b"echo after-the-wait; exit\n")
        seen: list[bytes] = []
        assert followed.wait(on_pty=seen.append).exit_code == 0
        assert "after-the-wait" in b"".join(seen).decode()
        assert "took too long to shut down" not in sandpit.log_path.read_text()
    finally:
        sandbox.kill()


def test_a_pty_has_no_network_and_shows_nothing_of_the_host(sandpit: Daphne) -> None:
    sandbox = Sandbox.create()
    try:
        script = (b"python -c \"import socket; socket.create_connection(('1.1.1.1', 80), 3)\" 2>&1 | tail -1; "
                  b"id -un; pgrep -fa .; exit\n")
        code, out = _typed(sandbox, script)
        assert code == 0
        assert "Network is unreachable" in out
        assert "\r\nuser\r\n" in out
        # Every process in it (bwrap as pid 1 included) shows no host path and no session id.
        session_id = str(ApiSandbox.objects.get(sandbox_id=sandbox.sandbox_id).session_id)
        host = [str(settings.BASE_DIR), str(settings.SANDBOX_STATE_DIR), str(settings.SANDBOX_WORKSPACES_DIR), session_id,
                "setpriv", "prlimit"]
        assert [seen for seen in host if seen in out] == []
        assert "\r\n1 /usr/bin/bwrap --args " in out or "\r\n1 bwrap --args " in out
    finally:
        sandbox.kill()


def test_bad_pty_requests_get_clear_errors(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> None:
    _server(daphnes, monkeypatch, SANDBOX_PROCESSES_MAX="1")
    sandbox = Sandbox.create()
    try:
        with pytest.raises(NotFoundException, match="process with pid 999999 not found"):
            sandbox.pty.resize(999999, PtySize(cols=100, rows=30))
        with pytest.raises(NotFoundException):
            sandbox.pty.send_stdin(999999, b"x")
        terminal = sandbox.pty.create(PtySize(cols=80, rows=24))
        with pytest.raises(InvalidArgumentException, match="cols must be a whole number from 1 to 65535"):
            sandbox.pty.resize(terminal.pid, PtySize(cols=70000, rows=30))
        with pytest.raises(InvalidArgumentException, match="at most 262144 bytes at a time"):
            sandbox.pty.send_stdin(terminal.pid, b"x" * 300_000)
        with pytest.raises(SandboxException, match="is a pty: send its input as input.pty"):
            sandbox.commands.send_stdin(terminal.pid, "echo nope\n")
        with pytest.raises(SandboxException, match="SANDBOX_PROCESSES_MAX"):
            sandbox.pty.create(PtySize(cols=80, rows=24))  # a pty counts against the process table
        # Nothing was lost: the pty still takes input and ends cleanly.
        sandbox.pty.send_stdin(terminal.pid, b"echo still-here; exit 3\n")
        seen: list[bytes] = []
        with pytest.raises(CommandExitException) as ended:
            terminal.wait(on_pty=seen.append)
        assert ended.value.exit_code == 3 and "still-here" in b"".join(seen).decode()
    finally:
        sandbox.kill()
