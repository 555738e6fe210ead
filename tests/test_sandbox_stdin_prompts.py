"""input() through the Sandbox Protocol's `on_input` (issue 14), against every backend (real kernels).

Local Python kernels ask (input_request on the stdin channel); E2B has no stdin, so input() raises
there with an error that says so, and `on_input` is never called.
"""

from __future__ import annotations

import asyncio

import pytest

from runner.sandboxes.base import Backend, Sandbox
from tests.fixtures_sandboxes import Collected

pytestmark = pytest.mark.timeout(180)


class Answers:
    """An `on_input` that records each (prompt, password) and answers from a list, or never (None)."""

    def __init__(self, *lines: str | None) -> None:
        self.lines = list(lines)
        self.asked: list[tuple[str, bool]] = []
        self.cancelled = 0

    async def __call__(self, prompt: str, password: bool) -> str:
        self.asked.append((prompt, password))
        line = self.lines.pop(0)
        if line is None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return line or ""


async def run_with(sandbox: Sandbox, code: str, answers: Answers | None, *, timeout_s: float = 30):
    collected = Collected()
    outcome = await sandbox.run(code, language="python", on_event=collected, timeout_s=timeout_s, on_input=answers)
    return outcome, collected


async def test_input_round_trips_or_says_it_cannot(backend: Backend, sandbox: Sandbox) -> None:
    answers = Answers("Ada", "s3cret")
    outcome, events = await run_with(
        sandbox, "import getpass\nname = input('Name? ')\npw = getpass.getpass('Password: ')\nprint('hi', name, len(pw))", answers
    )
    if backend.name == "e2b":
        assert outcome.status == "error" and answers.asked == []
        assert events.errors and "input" in (events.errors[0].ename + events.errors[0].evalue).lower(), events.events
        return
    assert (outcome.status, answers.asked) == ("ok", [("Name? ", False), ("Password: ", True)]), events.events
    assert events.stdout.endswith("hi Ada 6\n")


async def test_without_on_input_input_raises_a_clear_error(backend: Backend, sandbox: Sandbox) -> None:
    outcome, events = await run_with(sandbox, "input('x')", None)
    assert outcome.status == "error"
    assert events.errors[0].ename == "StdinNotImplementedError", events.events


async def test_a_timeout_or_stop_cancels_a_waiting_input_and_keeps_variables(backend: Backend, sandbox: Sandbox) -> None:
    if backend.name == "e2b":
        pytest.skip("E2B has no stdin: nothing waits")
    answers = Answers(None)
    outcome, _ = await run_with(sandbox, "kept = 7\ninput('never? ')", answers, timeout_s=1.5)
    assert outcome.status == "timeout" and answers.cancelled == 1
    stop = Answers(None)
    running = asyncio.create_task(run_with(sandbox, "input('stop me? ')", stop, timeout_s=60))
    while not stop.asked:
        await asyncio.sleep(0.05)
    await sandbox.interrupt()
    outcome, _ = await running
    assert outcome.status == "interrupted" and stop.cancelled == 1
    outcome, events = await run_with(sandbox, "print(kept)", None)
    assert events.stdout == "7\n"
