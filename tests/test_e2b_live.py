"""The E2B backend against real E2B cloud. Opt-in: `pytest -m live`, with E2B_API_KEY set.

These cost a few sandbox-seconds each (about $0.0003 at the default 2 vCPU / 0.5 GiB).
"""

from __future__ import annotations

import pytest
from django.conf import settings

from runner.sandboxes.base import Event, Result, Stdout
from runner.sandboxes.e2b import E2BBackend

pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not settings.E2B_API_KEY, reason="E2B_API_KEY is not set"),
]


def _stdout(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Stdout))


async def test_live_health_is_ok() -> None:
    health = await E2BBackend().health()
    assert health.ok, health.detail


async def test_live_variables_files_and_reconnect() -> None:
    backend = E2BBackend()
    sandbox = await backend.create(owner_id=0, session_id="live-test")
    try:
        events: list[Event] = []
        outcome = await sandbox.run("x = 20\nprint('hello')\nx * 2 + 2", language="python", on_event=events.append, timeout_s=60)
        assert outcome.status == "ok"
        assert _stdout(events) == "hello\n"
        assert [e.data.get("text/plain") for e in events if isinstance(e, Result)] == ["42"]

        events.clear()
        outcome = await sandbox.run("1/0", language="python", on_event=events.append, timeout_s=60)
        assert outcome.status == "error"

        await sandbox.write_file("live.txt", b"round trip")
        assert await sandbox.read_file("live.txt") == b"round trip"
        assert "live.txt" in [f.name for f in await sandbox.list_files()]

        again = await E2BBackend().connect(sandbox.id)
        events.clear()
        outcome = await again.run("print(x)", language="python", on_event=events.append, timeout_s=60)
        assert outcome.status == "ok" and _stdout(events) == "20\n"

        events.clear()
        outcome = await sandbox.run("import time\ntime.sleep(60)", language="python", on_event=events.append, timeout_s=2)
        assert outcome.status == "timeout"
        events.clear()
        outcome = await sandbox.run("print(x)", language="python", on_event=events.append, timeout_s=60)
        assert outcome.status == "ok" and _stdout(events) == "20\n"
    finally:
        await sandbox.close()


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [("javascript", "console.log(6 * 7)", "42"), ("typescript", "const n: number = 42; console.log(n)", "42"), ("bash", "echo 42", "42")],
)
async def test_live_other_languages(language: str, code: str, expected: str) -> None:
    sandbox = await E2BBackend().create(owner_id=0, session_id="live-test")
    try:
        events: list[Event] = []
        outcome = await sandbox.run(code, language=language, on_event=events.append, timeout_s=60)
        assert outcome.status == "ok", events
        assert expected in _stdout(events)
    finally:
        await sandbox.close()
