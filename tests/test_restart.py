"""A server restart, with real Daphne processes: what happens to runs and sandboxes.

- killed (SIGKILL): the next server's start-up sweep interrupts the dead server's run, with a note;
  the session's local sandbox died with it, so the next run gets a new one and says so;
- stopped (SIGTERM): the server marks its own runs interrupted on the way out;
- on E2B the sandbox outlives the server: the next server reconnects to it, variables intact,
  and says so.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from runner.models import Execution, OutputChunk
from runner.services.sweep import SWEEP_NOTE
from runner.services.sandboxes import NOTICE_NEW_SANDBOX, NOTICE_RECONNECTED
from tests.fixtures_daphne import next_frame, start_run, start_spinning
from tests.fixtures_runs import _cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

async def test_after_a_crash_the_next_server_interrupts_the_run_and_starts_a_new_sandbox(daphnes, alice, alice_session, runs_cleanup) -> None:
    cookie = await asyncio.to_thread(_cookie_for, alice)
    first = daphnes()
    spinning = await start_spinning(first, alice_session, cookie)
    first.stop(signal.SIGKILL)

    second = daphnes()
    ws = await second.open(alice_session.id, cookie, query=f"after_execution={spinning}&after_index=0")
    note = await next_frame(ws, "execution.output")
    assert (note["execution_id"], note["text"]) == (spinning, SWEEP_NOTE + "\n")
    assert (await next_frame(ws, "execution.finished"))["status"] == "interrupted"

    after = await start_run(ws, "print('x' in dir())", "after")
    started = await next_frame(ws, "execution.started")
    assert started == {"type": "execution.started", "execution_id": after, "notice": NOTICE_NEW_SANDBOX}
    assert (await next_frame(ws, "execution.output"))["text"] == "False\n"
    await ws.close()


async def test_a_server_stopped_with_sigterm_marks_its_runs_interrupted_on_the_way_out(daphnes, alice, alice_session, runs_cleanup) -> None:
    cookie = await asyncio.to_thread(_cookie_for, alice)
    server = daphnes()
    spinning = await start_spinning(server, alice_session, cookie)
    server.stop(signal.SIGTERM)
    execution = await Execution.objects.aget(pk=spinning)
    assert execution.status == "interrupted"
    assert await OutputChunk.objects.filter(execution_id=spinning, text=SWEEP_NOTE + "\n").aexists()


async def test_on_e2b_the_next_server_reconnects_to_the_sandbox_and_keeps_variables(daphnes, e2b_server, alice, alice_session, runs_cleanup) -> None:
    e2b_env = {"SANDBOX_BACKEND": "e2b", "E2B_API_KEY": e2b_server.api_key, "E2B_API_URL": e2b_server.url, "E2B_SANDBOX_URL": e2b_server.url}
    cookie = await asyncio.to_thread(_cookie_for, alice)
    first = daphnes(**e2b_env)
    ws = await first.open(alice_session.id, cookie)
    await start_run(ws, "kept = 'still here'", "set")
    assert (await next_frame(ws, "execution.finished"))["status"] == "succeeded"
    await ws.close()
    first.stop(signal.SIGKILL)

    second = daphnes(**e2b_env)
    ws = await second.open(alice_session.id, cookie)
    after = await start_run(ws, "print(kept)", "after")
    assert await next_frame(ws, "execution.started") == {"type": "execution.started", "execution_id": after, "notice": NOTICE_RECONNECTED}
    assert (await next_frame(ws, "execution.output"))["text"] == "still here\n"
    await ws.close()
