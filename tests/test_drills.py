"""Fault drills on the real stack (issue 12, part 2): what a user sees when a piece of the
scale-out stack fails mid-run, and that the server recovers without a restart.

Each drill starts its own Redis or Postgres (tests/fixtures_drills.py) and restarts that one,
never the machine's shared servers. The Redis drill drives the page, so it is in
tests/test_drills_redis.py (a browser module: Playwright's loop would break these asyncio tests);
the Daphne SIGKILL drill is tests/test_recovery.py; E2B's faults are in tests/test_e2b_backend.py
and, answering slowly, below.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.request

import psycopg
import pytest
from django.db import connection, connections

from runner.models import OutputChunk
from tests.fixtures_daphne import next_frame, server_env, start_run
from tests.fixtures_drills import login_cookie, private_postgres, private_redis  # noqa: F401  (fixtures)
from tests.fixtures_runs import _cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

STREAM_LINES = 60
STREAM = f"import time\nfor i in range({STREAM_LINES}):\n    print(i, flush=True)\n    time.sleep(0.1)"


async def _frames_until_finished(ws, execution_id: int, timeout_s: float = 90) -> tuple[list[dict], dict]:
    outputs: list[dict] = []
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
            assert frame["type"] != "error", frame  # e.g. "database is locked" would arrive as one
            if frame.get("execution_id") != execution_id:
                continue
            if frame["type"] == "execution.output":
                outputs.append(frame)
            elif frame["type"] == "execution.finished":
                return outputs, frame


def _stored(url: str, execution_id: int) -> tuple[str, dict[int, str]]:
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        status = conn.execute("SELECT status FROM runner_execution WHERE id = %s", [execution_id]).fetchone()[0]
        rows = conn.execute("SELECT index, text FROM runner_outputchunk WHERE execution_id = %s", [execution_id]).fetchall()
    return status, dict(rows)


async def test_postgres_restarted_mid_run_nothing_written_is_lost_and_the_server_recovers(daphnes, private_postgres) -> None:
    env = {"DATABASE_URL": private_postgres.url, "REDIS_URL": ""}
    cookie, chat_id = await asyncio.to_thread(login_cookie, server_env(**env), "pg-drill")
    server = daphnes(**env)
    ws = await server.open(chat_id, cookie)
    execution_id = await start_run(ws, STREAM, "stream")
    seen: list[dict] = []
    while len(seen) < 10:
        seen.append(await next_frame(ws, "execution.output"))
    await asyncio.to_thread(private_postgres.stop)
    await asyncio.sleep(2)
    await asyncio.to_thread(private_postgres.start)
    outputs, finished = await _frames_until_finished(ws, execution_id)
    await ws.close()

    # The run went on: output made while the database was down was stored once it was back (the
    # writes are retried), so the socket got every chunk once, in order, and so did the database.
    whole = "".join(f"{i}\n" for i in range(STREAM_LINES))
    received = seen + outputs
    assert [f["index"] for f in received] == list(range(len(received)))
    assert "".join(f["text"] for f in received) == whole
    status, chunks = await asyncio.to_thread(_stored, private_postgres.url, execution_id)
    assert finished["status"] == status == "succeeded"
    assert "".join(chunks[i] for i in sorted(chunks)) == whole

    # The same server process recovers its connections: a page, a socket and a new run work.
    assert server.proc.poll() is None
    status_code = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=20).status)
    assert status_code == 200
    ws = await server.open(chat_id, cookie)
    after = await start_run(ws, "print('after')", "after")
    outputs, finished = await _frames_until_finished(ws, after)
    assert finished["status"] == "succeeded" and "".join(f["text"] for f in outputs) == "after\n"
    await ws.close()
    status, chunks = await asyncio.to_thread(_stored, private_postgres.url, after)
    assert status == "succeeded" and chunks == {0: "after\n"}


async def test_postgres_restarted_under_two_streaming_runs_loses_nothing_of_either(daphnes, private_postgres) -> None:
    """The process's one writer stores both runs' chunks in shared ticks (runner/services/outbox.py):
    a tick that fails while the database is down is retried whole, and each run's chunks land
    once, in order, stored and live alike."""
    env = {"DATABASE_URL": private_postgres.url, "REDIS_URL": ""}
    logins = [await asyncio.to_thread(login_cookie, server_env(**env), f"pg-drill-{n}") for n in range(2)]
    server = daphnes(**env)
    sockets = [await server.open(chat_id, cookie) for cookie, chat_id in logins]
    runs = [await start_run(ws, STREAM, f"stream-{n}") for n, ws in enumerate(sockets)]
    seen: list[list[dict]] = [[], []]
    for ws, got in zip(sockets, seen):
        while len(got) < 10:
            got.append(await next_frame(ws, "execution.output"))
    await asyncio.to_thread(private_postgres.stop)
    await asyncio.sleep(2)
    await asyncio.to_thread(private_postgres.start)
    ends = await asyncio.gather(*(_frames_until_finished(ws, execution_id) for ws, execution_id in zip(sockets, runs)))
    for ws in sockets:
        await ws.close()

    whole = "".join(f"{i}\n" for i in range(STREAM_LINES))
    for execution_id, got, (outputs, finished) in zip(runs, seen, ends):
        received = got + outputs
        assert [f["index"] for f in received] == list(range(len(received)))
        assert "".join(f["text"] for f in received) == whole
        status, chunks = await asyncio.to_thread(_stored, private_postgres.url, execution_id)
        assert finished["status"] == status == "succeeded"
        assert chunks == {f["index"]: f["text"] for f in received}


FLOOD_LINES = 3000
FLOOD = f"for i in range({FLOOD_LINES}):\n    print('line', i)"


async def _session_of_runs(server, session_id, cookie: bytes, tag: str) -> list[tuple[str, str, str]]:
    """A flood and two short runs in one session; returns (status, stdout, every error text)."""
    ws = await server.open(session_id, cookie)
    results = []
    try:
        for n, code in enumerate([FLOOD, "x = 41", "print(x + 1)"]):
            execution_id = await start_run(ws, code, f"{tag}-{n}")
            outputs, finished = await _frames_until_finished(ws, execution_id)
            results.append((finished["status"], "".join(f["text"] for f in outputs), ""))
    finally:
        await ws.close()
    return results


async def test_sqlite_two_daphnes_on_one_file_many_runs_at_once_never_say_database_is_locked(daphnes, django_user_model) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite drill: runs on the embedded-defaults pass (this pass is on Postgres)")
    servers = [daphnes(REDIS_URL=""), daphnes(REDIS_URL="")]
    jobs = []
    for n in range(6):
        user = await django_user_model.objects.acreate_user(f"writer{n}", password="pw-writer-123")
        session = await asyncio.to_thread(_new_session, user)
        cookie = await asyncio.to_thread(_cookie_for, user)
        jobs.append(_session_of_runs(servers[n % 2], session.id, cookie, f"w{n}"))
    results = await asyncio.gather(*jobs)

    flood = "".join(f"line {i}\n" for i in range(FLOOD_LINES))
    for session_results in results:
        assert [status for status, _, _ in session_results] == ["succeeded"] * 3, session_results
        assert session_results[0][1] == flood
        assert session_results[2][1] == "42\n"
    for server in servers:
        assert "database is locked" not in server.log_path.read_text()
    stored = await asyncio.to_thread(lambda: list(OutputChunk.objects.filter(text__icontains="locked").values_list("text", flat=True)))
    assert stored == []


def _new_session(user):
    from runner import services

    session = services.session_create(owner=user, title="writer")
    connections.close_all()
    return session


async def _round_trip_s(ws, code: str, client_id: str) -> float:
    started_s = time.monotonic()
    execution_id = await start_run(ws, code, client_id)
    _, finished = await _frames_until_finished(ws, execution_id)
    assert finished["status"] == "succeeded", finished
    return time.monotonic() - started_s


async def test_e2b_answering_slowly_on_one_server_leaves_local_runs_on_another_at_their_latency(
    daphnes, e2b_server, alice, bob, alice_session, bob_session
) -> None:
    """Server A runs E2B sandboxes, server B local kernels, on one database (and Redis, on that
    pass). E2B takes 10 s to answer bob's run on A; alice's runs on B keep their latency meanwhile
    (no shared lock, queue or database write waits on the slow sandbox)."""
    e2b_env = {"SANDBOX_BACKEND": "e2b", "E2B_API_KEY": e2b_server.api_key, "E2B_API_URL": e2b_server.url, "E2B_SANDBOX_URL": e2b_server.url}
    slow, local = daphnes(**e2b_env), daphnes(SANDBOX_BACKEND="local")
    bob_ws = await slow.open(bob_session.id, await asyncio.to_thread(_cookie_for, bob))
    alice_ws = await local.open(alice_session.id, await asyncio.to_thread(_cookie_for, alice))
    await _round_trip_s(bob_ws, "print('warm')", "bob-warm")  # bob's sandbox exists before E2B slows down
    await _round_trip_s(alice_ws, "print('warm')", "alice-warm")
    floor_s = statistics.median([await _round_trip_s(alice_ws, f"print({n})", f"floor-{n}") for n in range(5)])

    e2b_server.inject(where="execute", action="delay", delay_s=10.0, times=None)
    slow_started_s = time.monotonic()
    bob_run = await start_run(bob_ws, "print('slow')", "bob-slow")
    await asyncio.sleep(0.5)  # bob's run is now waiting on E2B
    during = [await _round_trip_s(alice_ws, f"print({n})", f"during-{n}") for n in range(5)]
    assert time.monotonic() - slow_started_s < 10, "alice's runs should be done while bob's still waits"
    assert statistics.median(during) <= max(3 * floor_s, floor_s + 0.5), (floor_s, during)

    outputs, finished = await _frames_until_finished(bob_ws, bob_run, timeout_s=60)
    assert finished["status"] == "succeeded" and "".join(f["text"] for f in outputs) == "slow\n"
    assert time.monotonic() - slow_started_s >= 10
    await bob_ws.close()
    await alice_ws.close()


async def test_an_idle_socket_on_redis_stays_open(daphnes, private_redis, alice, alice_session) -> None:
    """channels-redis blocks 5 s per pop; redis-py 8's default socket timeout is also 5 s, and an
    idle socket's pop used to lose that race and close the websocket (1011) every few seconds."""
    server = daphnes(REDIS_URL=private_redis.url, CHANNEL_PREFIX="idle")
    ws = await server.open(alice_session.id, await asyncio.to_thread(_cookie_for, alice))
    await asyncio.sleep(12)  # two of channels-redis's blocking pops, idle
    execution_id = await start_run(ws, "print('awake')", "awake")
    outputs, finished = await _frames_until_finished(ws, execution_id)
    assert finished["status"] == "succeeded" and "".join(f["text"] for f in outputs) == "awake\n"
    await ws.close()
