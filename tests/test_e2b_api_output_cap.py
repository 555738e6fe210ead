"""The output cap's head and tail through the E2B-compatible API (issue 20, 5.3): the real SDK gets
the same head, marker and tail as the page, and that is what is stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from e2b_code_interpreter import Sandbox

from runner import services
from runner.models import Execution, OutputChunk
from runner.services.output import human_bytes
from tests.fixtures_daphne import Daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def capped_sandpit(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30",
                     RUN_OUTPUT_MAX_BYTES="1000", RUN_OUTPUT_TAIL_BYTES="300")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    yield url


def test_an_api_run_past_the_cap_gets_the_head_the_marker_and_the_last_lines(capped_sandpit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user = get_user_model().objects.create_user(username="alice", password="pw")
    _row, key = services.api_key_create(owner=user, name="test")
    monkeypatch.setenv("E2B_API_KEY", key)
    lines = [f"{i:03d}" + "x" * 96 + "\n" for i in range(200)] + ["after the cap\n"]
    whole = "".join(lines)
    sandbox = Sandbox.create()
    try:
        execution = sandbox.run_code("for i in range(200):\n    print(f'{i:03d}' + 'x' * 96)\nprint('after the cap')")
    finally:
        sandbox.kill()
    tail = "".join(lines[-3:])
    assert "".join(execution.logs.stdout) == whole[:700] + tail
    assert execution.logs.stderr == [f"… {human_bytes(len(whole) - 700 - len(tail))} cut …\n"]
    assert execution.error is None
    run = Execution.objects.get(session__owner=user, code__startswith="for i in range(200)")
    stored = list(OutputChunk.objects.filter(execution=run).order_by("index").values_list("kind", "text"))
    assert "".join(t for k, t in stored if k == "stdout") == whole[:700] + tail
    assert run.truncated
