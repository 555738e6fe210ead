"""The run after a cut (timeout, Stop, a dropped stream) on E2B: it must not hang (issue 13).

E2B's server interrupts the kernel when a client drops its /execute stream and lets the next
request straight in; ipykernel aborts a request that reaches it while it unwinds the interrupt
("aborted"), and E2B's server never ends that request's stream. tests/e2b_server models this
with real kernels (see KernelContext.execute), and the real SDK drives it here; nothing is patched.

Each test measures from the cut (the deadline, the Stop, the cancel) to the end of the next run,
so it holds whether the backend settles the sandbox after the cut or before the next run.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from runner.models import Execution
from runner.sandboxes.base import Error, Event, Stdout
from runner.sandboxes.e2b import E2BBackend, E2BSandbox
from tests.fixtures_e2b import E2BServerControl, e2b_settings
from tests.fixtures_runs import receive, run, stdout_of

pytestmark = pytest.mark.timeout(120)

# The bound: the next run prints the kept variable within this of the cut.
NEXT_RUN_WITHIN_S = 2.0
SLEEPER = "import time\ntime.sleep(30)"


async def _run(sandbox: E2BSandbox, code: str, *, timeout_s: float = 15) -> tuple[str, list[Event]]:
    events: list[Event] = []
    outcome = await sandbox.run(code, language="python", on_event=events.append, timeout_s=timeout_s)
    return outcome.status, events


def _stdout(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Stdout))


async def _next_run_prints(sandbox: E2BSandbox, expected: str, *, cut_at: float) -> None:
    """`print(kept)` ends ok with exactly `expected`, within NEXT_RUN_WITHIN_S of the cut."""
    status, events = await _run(sandbox, "print(kept)")
    took_s = time.monotonic() - cut_at
    assert (status, _stdout(events)) == ("ok", expected), events
    assert took_s < NEXT_RUN_WITHIN_S, f"the run after the cut ended {took_s:.2f} s after it"


@pytest.fixture
async def sandbox(e2b_backend: E2BBackend):
    sandbox = await e2b_backend.create(owner_id=1, session_id="settle")
    yield sandbox
    await sandbox.close()


async def _stop_after(sandbox: E2BSandbox, code: str, delay_s: float) -> tuple[str, list[Event], float]:
    """Start `code`, Stop it after `delay_s`; returns its status, events and when Stop was pressed."""
    running = asyncio.ensure_future(_run(sandbox, code))
    await asyncio.sleep(delay_s)
    stopped_at = time.monotonic()
    await sandbox.interrupt()
    status, events = await running
    return status, events, stopped_at


async def test_timeout_then_the_next_run_prints_the_kept_variable(sandbox: E2BSandbox) -> None:
    started = time.monotonic()
    status, _ = await _run(sandbox, "kept = 3\n" + SLEEPER, timeout_s=1.5)
    assert status == "timeout"
    await _next_run_prints(sandbox, "3\n", cut_at=started + 1.5)


async def test_stop_then_the_next_run_prints_the_kept_variable(sandbox: E2BSandbox) -> None:
    status, _, stopped_at = await _stop_after(sandbox, "kept = 4\n" + SLEEPER, 0.5)
    assert status == "interrupted"
    await _next_run_prints(sandbox, "4\n", cut_at=stopped_at)


async def test_a_run_cancelled_under_us_then_the_next_run_prints_the_kept_variable(sandbox: E2BSandbox) -> None:
    # A closed tab, a dying worker: the task awaiting the run is cancelled and the stream closes.
    running = asyncio.ensure_future(_run(sandbox, "kept = 5\n" + SLEEPER))
    await asyncio.sleep(0.5)
    cancelled_at = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await _next_run_prints(sandbox, "5\n", cut_at=cancelled_at)


async def test_a_stream_dropped_by_the_network_then_the_next_run_prints_the_kept_variable(
    e2b_server: E2BServerControl, sandbox: E2BSandbox
) -> None:
    # number_of_executions and the first print get through; the second print breaks the connection.
    e2b_server.inject(where="execute", action="drop", after_lines=2)
    status, events = await _run(sandbox, "kept = 6\nprint('before', flush=True)\nprint('cut', flush=True)\n" + SLEEPER)
    dropped_at = time.monotonic()
    assert status == "error" and _stdout(events) == "before\n"
    assert isinstance(events[-1], Error) and events[-1].ename == "ConnectionLost"
    await _next_run_prints(sandbox, "6\n", cut_at=dropped_at)


async def test_two_cuts_in_a_row_then_the_next_run_prints_the_kept_variable(sandbox: E2BSandbox) -> None:
    status, _ = await _run(sandbox, "kept = 1\n" + SLEEPER, timeout_s=1.0)
    assert status == "timeout"
    # The second cut run must really run (kept goes up), not be swallowed by the first cut.
    started = time.monotonic()
    status, _ = await _run(sandbox, "kept += 1\n" + SLEEPER, timeout_s=1.0)
    assert status == "timeout"
    await _next_run_prints(sandbox, "2\n", cut_at=started + 1.0)
    status, _, stopped_at = await _stop_after(sandbox, "kept += 1\n" + SLEEPER, 0.3)
    assert status == "interrupted"
    await _next_run_prints(sandbox, "3\n", cut_at=stopped_at)


async def test_late_output_of_a_stopped_run_never_reaches_the_next_run(sandbox: E2BSandbox) -> None:
    # The stopped code catches the interrupt and keeps printing for a while afterwards.
    code = (
        "kept = 7\nimport time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
        "    for i in range(30):\n        print('late', i, flush=True)\n        time.sleep(0.01)\n"
    )
    status, events, stopped_at = await _stop_after(sandbox, code, 0.5)
    assert status == "interrupted"
    await _next_run_prints(sandbox, "7\n", cut_at=stopped_at)
    status, events = await _run(sandbox, "print('after', kept)")
    assert (status, _stdout(events)) == ("ok", "after 7\n")


# --- what the page sees ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_page_run_queued_behind_a_timeout_waits_as_queued_then_prints_at_once(
    e2b_server: E2BServerControl, connect, alice, alice_session
) -> None:
    with e2b_settings(e2b_server, RUN_TIMEOUT_S=1.0):
        ws = await connect(alice, alice_session)
        await receive(ws)
        cut = await run(ws, "kept = 8\n" + SLEEPER)
        after = await run(ws, "print(kept)")  # sent at once: it queues behind the run that will time out
        frames, seen_at = [], {}
        while not (frames and frames[-1]["type"] == "execution.finished" and frames[-1]["execution_id"] == after):
            frames.append(await receive(ws))
            seen_at.setdefault((frames[-1]["type"], frames[-1].get("execution_id")), time.monotonic())
    order = [(f["type"], f["execution_id"]) for f in frames if f["type"] in ("execution.started", "execution.finished")]
    assert order == [
        ("execution.started", cut), ("execution.finished", cut), ("execution.started", after), ("execution.finished", after)
    ]
    finished = {f["execution_id"]: f for f in frames if f["type"] == "execution.finished"}
    assert finished[cut]["status"] == "timed_out" and finished[after]["status"] == "succeeded"
    assert stdout_of([f for f in frames if f.get("execution_id") == after]) == "8\n"
    # From the cut run's end to the next run's end: no hang behind the cut.
    assert seen_at[("execution.finished", after)] - seen_at[("execution.finished", cut)] < NEXT_RUN_WITHIN_S
    stored = await Execution.objects.aget(pk=after)
    assert stored.status == "succeeded" and stored.duration_ms is not None and stored.duration_ms < 1000
