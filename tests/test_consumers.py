"""The session websocket end to end: real ASGI app, real channel layer, real database, real kernels."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.db import connection
from django.test import override_settings

from runner import events
from runner.consumers import SessionConsumer
from runner.models import Execution, OutputChunk, SandboxLease, ServerProcess
from runner.services.output import human_bytes
from runner.services.runtime import db
from runner.services.sandboxes import NOTICE_NEW_SANDBOX
from tests.fixtures_runs import receive, receive_until_finished, run, stdout_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def test_hello_says_who_may_run_and_where_the_session_is(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    hello = await receive(ws)
    assert hello == {
        "type": "hello", "session_id": str(alice_session.id), "can_run": True, "can_comment": False,
        "backend": hello["backend"], "last": None,
    }
    assert hello["backend"] in {"local", "e2b"}
    assert await ws.receive_nothing()


async def test_output_streams_in_order_with_contiguous_indexes(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "import sys\nfor i in range(5):\n    print(i, flush=True)\n    print('e', i, file=sys.stderr, flush=True)\n6*7")
    frames = await receive_until_finished(ws, execution_id)
    frames = [f for f in frames if f["type"] != "execution.starting"]  # while its new sandbox starts
    assert frames[0] == {"type": "execution.started", "execution_id": execution_id}
    outputs = [f for f in frames if f["type"] == "execution.output"]
    assert [f["index"] for f in outputs] == list(range(len(outputs)))
    assert stdout_of(frames) == "".join(f"{i}\n" for i in range(5))
    assert outputs[-1]["kind"] == "result" and outputs[-1]["data"]["text/plain"] == "42"
    assert frames[-1] == {"type": "execution.finished", "execution_id": execution_id, "status": "succeeded",
                          "duration_ms": frames[-1]["duration_ms"], "truncated": False}
    assert await ws.receive_nothing()


async def test_reconnecting_with_after_replays_each_missed_event_exactly_once(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    first = await run(ws, "for i in range(3):\n    print(i, flush=True)")
    frames = await receive_until_finished(ws, first)
    seen = [f for f in frames if f["type"] == "execution.output"]
    await ws.disconnect()

    # Away: pretend we only got the first output of `first`; a second run happens meanwhile.
    other = await connect(alice, alice_session)
    await receive(other)
    second = await run(other, "print('while away')")
    await receive_until_finished(other, second)

    back = await connect(alice, alice_session, f"after_execution={first}&after_index={seen[0]['index']}")
    hello = await receive(back)
    assert hello["last"]["execution_id"] == second
    replayed = []
    while True:
        frame = await receive(back)
        replayed.append(frame)
        if frame["type"] == "execution.finished" and frame["execution_id"] == second:
            break
    assert await back.receive_nothing()
    assert [(f["type"], f["execution_id"], f.get("index")) for f in replayed] == [
        *[("execution.output", first, f["index"]) for f in seen[1:]],
        ("execution.finished", first, None),
        ("execution.queued", second, None),
        ("execution.started", second, None),
        ("execution.output", second, 0),
        ("execution.finished", second, None),
    ]
    assert replayed[-2]["text"] == "while away\n"


async def test_a_run_continues_and_is_stored_when_no_socket_is_connected(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "import time\ntime.sleep(0.5)\nprint('done without you')")
    await ws.disconnect()

    execution = await Execution.objects.aget(pk=execution_id)
    for _ in range(100):
        if execution.status not in ("queued", "running"):
            break
        await asyncio.sleep(0.1)
        execution = await Execution.objects.aget(pk=execution_id)
    assert execution.status == "succeeded"
    texts = [c.text async for c in OutputChunk.objects.filter(execution_id=execution_id).order_by("index")]
    assert texts == ["done without you\n"]


async def test_stop_cancels_a_running_run_and_keeps_variables(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "x = 41"))
    execution_id = await run(ws, "print('spinning', flush=True)\nwhile True:\n    pass")
    assert (await receive(ws))["type"] == "execution.started"
    assert (await receive(ws))["text"] == "spinning\n"
    await ws.send_json_to({"type": "stop", "execution_id": execution_id})
    frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "cancelled", frames
    after = await receive_until_finished(ws, await run(ws, "print(x + 1)"))
    assert stdout_of(after) == "42\n"


async def test_stop_from_another_tab_cancels_the_run(connect, alice, alice_session) -> None:
    tab_one = await connect(alice, alice_session)
    tab_two = await connect(alice, alice_session)
    await receive(tab_one)
    await receive(tab_two)
    execution_id = await run(tab_one, "import time\nwhile True:\n    time.sleep(0.01)")
    assert (await receive(tab_two))["type"] == "execution.queued"
    while (frame := await receive(tab_two))["type"] == "execution.starting":  # its new sandbox starts
        pass
    assert frame["type"] == "execution.started"
    await tab_two.send_json_to({"type": "stop", "execution_id": execution_id})
    assert (await receive_until_finished(tab_one, execution_id))[-1]["status"] == "cancelled"
    assert (await receive_until_finished(tab_two, execution_id))[-1]["status"] == "cancelled"


async def test_stop_of_a_queued_run_cancels_it_before_it_starts(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    first = await run(ws, "import time\ntime.sleep(1)\nprint('first')")
    second = await run(ws, "print('never')")
    await ws.send_json_to({"type": "stop", "execution_id": second})
    frames = await receive_until_finished(ws, first)
    finished_second = [f for f in frames if f["type"] == "execution.finished" and f["execution_id"] == second]
    assert finished_second == [{"type": "execution.finished", "execution_id": second, "status": "cancelled", "duration_ms": None, "truncated": False}]
    assert not any(f["type"] == "execution.started" and f["execution_id"] == second for f in frames)
    assert stdout_of(frames) == "first\n"
    assert await ws.receive_nothing()


async def test_runs_queue_in_order_one_at_a_time(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    first = await run(ws, "import time\ntime.sleep(0.3)\nprint('one')", client_id="a")
    second = await run(ws, "print('two')", client_id="b")
    frames = await receive_until_finished(ws, second)
    # execution.starting: while the first run's new sandbox starts (past 0.25 s, under load)
    order = [(f["type"], f["execution_id"]) for f in frames if f["type"] not in ("execution.output", "execution.starting")]
    assert order == [
        ("execution.started", first), ("execution.finished", first),
        ("execution.started", second), ("execution.finished", second),
    ]
    assert stdout_of(frames) == "one\ntwo\n"


async def test_timeout_ends_the_run_timed_out_and_keeps_variables(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "y = 'kept'"))
    with override_settings(RUN_TIMEOUT_S=1):
        frames = await receive_until_finished(ws, await run(ws, "import time\ntime.sleep(30)"))
    assert frames[-1]["status"] == "timed_out"
    assert stdout_of(await receive_until_finished(ws, await run(ws, "print(y)"))) == "kept\n"


async def test_past_the_cap_the_head_and_the_last_lines_are_kept_and_a_replay_sees_exactly_them(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    lines = [f"{i:03d}" + "x" * 96 + "\n" for i in range(200)] + ["after the cap\n"]
    with override_settings(RUN_OUTPUT_MAX_BYTES=1000, RUN_OUTPUT_TAIL_BYTES=300):
        execution_id = await run(ws, "for i in range(200):\n    print(f'{i:03d}' + 'x' * 96)\nprint('after the cap')")
        frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "succeeded" and frames[-1]["truncated"] is True
    outputs = [f for f in frames if f["type"] == "execution.output"]
    at = [i for i, f in enumerate(outputs) if f.get("data") == {"sandpit/notice": "truncated"}]
    assert len(at) == 1
    head, marker, tail = stdout_of(outputs[: at[0]]), outputs[at[0]], stdout_of(outputs[at[0] + 1:])
    # Live only: once the head is out, the page is told the rest is held until the end (unless the
    # run ended first, as this quick one may).
    held = [i for i, f in enumerate(frames) if f["type"] == "execution.held"]
    assert [frames[i] for i in held] in ([], [{"type": "execution.held", "execution_id": execution_id, "head_bytes": 700, "tail_bytes": 300}])
    if held:
        assert frames.index(outputs[at[0]]) > held[0] > max(frames.index(f) for f in outputs[: at[0]])
    assert head == "".join(lines)[:700]
    assert tail == "".join(lines[-3:])  # the last whole lines that fit in 300 bytes
    assert marker["kind"] == "stderr" and marker["text"] == f"… {human_bytes(len(''.join(lines)) - 700 - len(tail))} cut …\n"
    execution = await Execution.objects.aget(pk=execution_id)
    assert execution.truncated and execution.stdout_bytes == len("".join(lines))
    stored = [c async for c in OutputChunk.objects.filter(execution_id=execution_id).order_by("index")]
    assert [(c.index, c.kind, c.text, c.data) for c in stored] == [(f["index"], f["kind"], f["text"], f.get("data")) for f in outputs]
    # A page that reconnects from the start gets exactly what the live page got.
    back = await connect(alice, alice_session, "after_execution=0&after_index=-1")
    await receive(back)
    replayed = await receive_until_finished(back, execution_id)
    assert [f for f in replayed if f["type"] == "execution.output"] == outputs
    assert not any(f["type"] == "execution.held" for f in replayed)


async def test_a_display_too_large_to_receive_is_marked_truncated_not_silently_dropped(connect, alice, alice_session) -> None:
    """Two 40 MB display_data messages are over the kernel socket's message limit (32 MiB), so they
    never arrive: the run still says its output stopped there, and is flagged truncated; the
    session's next run streams as usual."""
    ws = await connect(alice, alice_session)
    await receive(ws)
    code = ("from IPython.display import display\n"
            "display({'text/plain': 'x' * 40_000_000}, raw=True)\n"
            "display({'text/plain': 'y' * 40_000_000}, raw=True)\n"
            "print('after')")
    execution_id = await run(ws, code)
    frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "succeeded" and frames[-1]["truncated"] is True
    outputs = [f for f in frames if f["type"] == "execution.output"]
    lost = "an output message over 32 MiB (a huge display or plot, say) was too large to receive"
    # Each lost message is marked where it was (one or both, and then "after", when they arrive:
    # what the kernel sends while iopub reconnects is lost unseen).
    shown = [(f["kind"], f["text"]) for f in outputs]
    after = [("stdout", "after\n")] if shown[-1] == ("stdout", "after\n") else []
    marks = shown[: len(shown) - len(after)]
    assert 1 <= len(marks) <= 2 and set(marks) == {("stderr", f"… 32 MiB cut: {lost} …\n")}
    execution = await Execution.objects.aget(pk=execution_id)
    assert execution.truncated
    assert stdout_of(await receive_until_finished(ws, await run(ws, "print('next')"))) == "next\n"


async def test_a_flood_of_output_is_stored_in_few_batched_chunks(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "for i in range(20000):\n    print(i)")
    frames = await receive_until_finished(ws, execution_id)
    assert stdout_of(frames) == "".join(f"{i}\n" for i in range(20000))
    chunks = await OutputChunk.objects.filter(execution_id=execution_id).acount()
    assert chunks < 200
    assert all(len(f["text"]) <= 64 * 1024 for f in frames if f["type"] == "execution.output")


async def test_an_error_is_stored_with_its_traceback_and_the_run_fails(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "1/0")
    frames = await receive_until_finished(ws, execution_id)
    error = [f for f in frames if f["type"] == "execution.output"][-1]
    assert error["kind"] == "error" and error["data"]["ename"] == "ZeroDivisionError" and error["data"]["traceback"]
    assert frames[-1]["status"] == "failed"
    execution = await Execution.objects.aget(pk=execution_id)
    assert (execution.error_name, execution.error_value) == ("ZeroDivisionError", "division by zero")


async def test_a_dead_kernel_fails_the_run_and_the_next_run_says_the_sandbox_is_new(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "z = 1"))
    frames = await receive_until_finished(ws, await run(ws, "import os\nos._exit(1)"))
    assert frames[-1]["status"] == "failed"
    execution_id = await run(ws, "print('z' in dir())")
    frames = await receive_until_finished(ws, execution_id)
    frames = [f for f in frames if f["type"] != "execution.starting"]  # while its new sandbox starts
    assert frames[0] == {"type": "execution.started", "execution_id": execution_id, "notice": NOTICE_NEW_SANDBOX}
    assert stdout_of(frames) == "False\n"
    assert (await Execution.objects.aget(pk=execution_id)).notice == NOTICE_NEW_SANDBOX
    ended = await SandboxLease.objects.filter(session_id=alice_session.id, end_reason="gone").acount()
    assert ended == 1


async def test_degraded_mode_rejects_the_run_with_an_unavailable_error(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    with override_settings(SANDBOX_BACKEND="nonsense"):
        execution_id = await run(ws, "print(1)")
        error = await receive(ws)
        finished = await receive(ws)
    assert error["type"] == "error" and error["code"] == "unavailable" and "nonsense" in error["message"]
    assert finished == {"type": "execution.finished", "execution_id": execution_id, "status": "rejected", "duration_ms": None, "truncated": False}
    assert await ws.receive_nothing()


async def test_a_run_refused_after_its_code_started_early_is_stopped_and_leaves_no_trace(connect, alice, alice_session) -> None:
    # With the session's local sandbox warm, code starts while its row is stored; if storing
    # refuses it (here: runs of another live process fill the queue), the code is interrupted.
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "flag = 'before'"))
    await ServerProcess.objects.acreate(boot_id="peer", hostname="elsewhere", pid=1)
    for seq in (100, 101):
        await Execution.objects.acreate(session=alice_session, seq=seq, code="", language="python", user=alice, status="running", owner_boot_id="peer")
    with override_settings(RUN_QUEUE_MAX=1):
        await ws.send_json_to({"type": "run", "code": "import time\ntime.sleep(2)\nflag = 'after'", "language": "python", "client_id": "x"})
        error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "rate_limited"
    await Execution.objects.filter(owner_boot_id="peer").aupdate(status="succeeded")
    frames = await receive_until_finished(ws, await run(ws, "import time\ntime.sleep(2.5)\nprint(flag)"))
    assert stdout_of(frames) == "before\n"
    assert not await Execution.objects.filter(code__contains="flag = 'after'").aexists()


async def test_storing_a_flood_of_output_under_debug_keeps_no_query_log(connect, alice, alice_session) -> None:
    # DEBUG is the embedded default; its query log would keep every 1 MiB write as a string.
    ws = await connect(alice, alice_session)
    await receive(ws)
    with override_settings(DEBUG=True):
        logged_before = await db(_queries_logged)()
        execution_id = await run(ws, "print('x' * 3_000_000)")
        frames = await receive_until_finished(ws, execution_id)
        logged = await db(_queries_logged)()
    assert frames[-1]["status"] == "succeeded"
    big = [q for q in logged[len(logged_before):] if len(q) > 64 * 1024]
    assert big == []
    stored = [c async for c in OutputChunk.objects.filter(execution_id=execution_id).order_by("index")]
    assert [c.index for c in stored] == list(range(len(stored)))


def _queries_logged() -> list[str]:
    return [q["sql"] for q in connection.queries]


async def test_relaying_output_to_a_socket_keeps_the_database_connection_open(runs_cleanup) -> None:
    # Channels closes obsolete connections (CONN_MAX_AGE=0: all) on the database thread before every
    # handler; a run's output writes keep theirs open, so relaying a flood's messages must not.
    consumer = SessionConsumer()
    consumer.seen = events.ReplayFilter()
    sent: list[dict] = []

    async def base_send(message: dict) -> None:
        sent.append(message)

    consumer.base_send = base_send
    before = await db(_raw_connection)()
    chunk = {"index": 0, "kind": "stdout", "text": "hi\n", "data": None}
    await consumer.dispatch({"type": "execution.output", "execution_id": 1, "chunks": [chunk]})
    assert [json.loads(m["text"])["text"] for m in sent] == ["hi\n"]
    assert await db(_raw_connection)() is before is not None


async def test_a_frame_from_the_client_keeps_the_database_connection_open(runs_cleanup, alice) -> None:
    consumer = SessionConsumer()
    consumer.scope = {"user": alice}  # the rate limit (per user, in the shared cache) reads it
    consumer.rate_told_window = -1
    sent: list[dict] = []

    async def base_send(message: dict) -> None:
        sent.append(message)

    consumer.base_send = base_send
    before = await db(_raw_connection)()
    await consumer.dispatch({"type": "websocket.receive", "text": json.dumps({"type": "ping"})})
    assert [json.loads(m["text"]) for m in sent] == [{"type": "pong"}]
    assert await db(_raw_connection)() is before is not None


def _raw_connection() -> object:
    connection.ensure_connection()
    return connection.connection
