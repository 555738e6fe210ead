"""The session websocket end to end: real ASGI app, real channel layer, real database, real kernels."""

from __future__ import annotations

import pytest

from tests.fixtures_runs import receive, receive_until_finished, run, stdout_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def test_hello_says_who_may_run_and_where_the_session_is(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    hello = await receive(ws)
    assert hello == {"type": "hello", "session_id": str(alice_session.id), "can_run": True, "backend": hello["backend"], "last": None}
    assert hello["backend"] in {"local", "e2b"}
    assert await ws.receive_nothing()


async def test_output_streams_in_order_with_contiguous_indexes(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "import sys\nfor i in range(5):\n    print(i, flush=True)\n    print('e', i, file=sys.stderr, flush=True)\n6*7")
    frames = await receive_until_finished(ws, execution_id)
    assert frames[0] == {"type": "execution.started", "execution_id": execution_id}
    outputs = [f for f in frames if f["type"] == "execution.output"]
    assert [f["index"] for f in outputs] == list(range(len(outputs)))
    assert stdout_of(frames) == "".join(f"{i}\n" for i in range(5))
    assert outputs[-1]["kind"] == "result" and outputs[-1]["data"]["text/plain"] == "42"
    assert frames[-1] == {"type": "execution.finished", "execution_id": execution_id, "status": "succeeded",
                          "duration_ms": frames[-1]["duration_ms"], "truncated": False}
    assert await ws.receive_nothing()
