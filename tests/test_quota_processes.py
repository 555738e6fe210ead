"""The concurrency limit holds across server processes: 20 simultaneous runs from one user, with
1 concurrent allowed, over four sockets on two Daphnes, store exactly one run and refuse 19 with
`quota`. Runs on the embedded SQLite and, in CI's second pass, on Postgres (with Redis)."""

from __future__ import annotations

import asyncio
import json

import pytest

from runner import services
from runner.models import Execution
from tests.fixtures_runs import _cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


async def _frames_until_quiet(ws, quiet_s: float = 3.0) -> list[dict]:
    frames = []
    while True:
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), quiet_s)))
        except asyncio.TimeoutError:
            return frames


async def test_twenty_runs_over_two_processes_with_one_allowed_leave_exactly_one(daphnes, alice, alice_session) -> None:
    other = await asyncio.to_thread(services.session_create, owner=alice, title="second")
    limits = {"QUOTA_CONCURRENT_RUNS": "1", "WS_MESSAGES_PER_10S": "100"}
    server_a, server_b = daphnes(**limits), daphnes(**limits)
    cookie = await asyncio.to_thread(_cookie_for, alice)
    sockets = [await server.open(session.id, cookie) for server in (server_a, server_b) for session in (alice_session, other)]
    try:
        await asyncio.gather(*(
            ws.send(json.dumps({"type": "run", "code": "import time\ntime.sleep(3)", "language": "python", "client_id": f"{i}-{n}"}))
            for n in range(5) for i, ws in enumerate(sockets)
        ))
        received = await asyncio.gather(*(_frames_until_quiet(ws) for ws in sockets))
    finally:
        for ws in sockets:
            await ws.close()
    refusals = [f for frames in received for f in frames if f["type"] == "error"]
    assert len(refusals) == 19 and {f["code"] for f in refusals} == {"quota"}
    assert all(f["message"].startswith("Concurrent run limit reached: 1 of 1 run at once.") for f in refusals)
    assert await Execution.objects.filter(user=alice).acount() == 1
