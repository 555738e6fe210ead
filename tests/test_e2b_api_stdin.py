"""input() through the E2B-compatible API, driven by the real SDK against a real Daphne: E2B's
code server sends `allow_stdin: False`, so code that asks for a line fails at once (Python's
`StdinNotImplementedError`), where the page's runs ask for the line instead."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from e2b_code_interpreter import Sandbox

from runner import services
from runner.models import Execution
from tests.fixtures_daphne import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


@pytest.fixture
def sandpit_key(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Daphne on the local backend (runs time out after 30 s), the SDK pointed at it with a key."""
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    user = User.objects.create_user(username="alice", password="pw")
    _row, key = services.api_key_create(owner=user, name="test")
    monkeypatch.setenv("E2B_API_KEY", key)
    yield key


def test_python_input_through_the_api_raises_stdin_not_implemented_at_once(sandpit_key: str) -> None:
    sandbox = Sandbox.create()
    try:
        began = time.monotonic()
        execution = sandbox.run_code("name = input('Your name? ')", timeout=25)
        took_s = time.monotonic() - began
        assert execution.error is not None
        assert execution.error.name == "StdinNotImplementedError"
        assert "does not support input requests" in execution.error.value
        assert took_s < 15  # not the run's timeout: the kernel refused at once
        # The kernel and its state survive: the next run goes on as usual.
        assert sandbox.run_code("x = 41\nx + 1").text == "42"
        row = Execution.objects.get(code="name = input('Your name? ')")
        assert row.status == Execution.Status.FAILED
        assert row.error_name == "StdinNotImplementedError"
    finally:
        sandbox.kill()


def test_javascript_prompt_through_the_api_answers_null_at_once(sandpit_key: str) -> None:
    # Deno's kernel with no stdin: prompt() gives null (E2B's Node kernel has no prompt at all).
    sandbox = Sandbox.create()
    try:
        began = time.monotonic()
        execution = sandbox.run_code("const answer = prompt('Your name?'); String(answer)", language="javascript", timeout=25)
        assert execution.error is None and execution.text == "null"
        assert time.monotonic() - began < 15
    finally:
        sandbox.kill()
