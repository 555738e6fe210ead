"""Fault drills on the real stack (issue 12, part 2): what a user sees when a piece of the
scale-out stack fails mid-run, and that the server recovers without a restart.

Each drill starts its own Redis or Postgres (tests/fixtures_drills.py) and restarts that one,
never the machine's shared servers. The Daphne SIGKILL drill is tests/test_recovery.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import psycopg
import pytest

from tests.fixtures_daphne import next_frame, server_env
from tests.fixtures_drills import login_cookie, private_postgres, private_redis  # noqa: F401  (fixtures)
from tests.test_browser import PASSWORD, RUN_TIMEOUT_MS, alice, run, wait_connected, wait_finished  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

STREAM_LINES = 60
STREAM = f"import time\nfor i in range({STREAM_LINES}):\n    print(i, flush=True)\n    time.sleep(0.1)"


def _wait_for_text(turn, text: str, timeout_s: float = 30) -> None:
    """Wait until the turn's output holds `text`."""
    turn.locator("pre.stream").wait_for()
    turn.page.wait_for_function("([el, text]) => el.textContent.includes(text)", arg=[turn.locator("pre.stream").element_handle(), text], timeout=timeout_s * 1000)


@pytest.mark.browser
def test_redis_restarted_mid_stream_the_run_goes_on_and_the_page_recovers_every_chunk(
    chromium_browser, daphnes, private_redis, alice  # noqa: F811
) -> None:
    server = daphnes(REDIS_URL=private_redis.url, CHANNEL_PREFIX="drill")
    context = chromium_browser.new_context(base_url=f"http://127.0.0.1:{server.port}")
    context.set_default_timeout(RUN_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Start a session").click()
        page.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}/$"))
        wait_connected(page)

        turn = run(page, STREAM, wait=False)
        _wait_for_text(turn, "5\n")
        private_redis.stop()
        # While Redis is down the page says so.
        page.wait_for_function("() => document.body.dataset.socket === 'closed'", timeout=15_000)
        assert page.locator("#toast").is_visible()
        page.wait_for_timeout(1500)
        private_redis.start()

        wait_finished(turn)
        wait_connected(page)
        assert not page.locator("#toast").is_visible()
        assert turn.locator("pre.stream").inner_text() == "".join(f"{i}\n" for i in range(STREAM_LINES))
        assert turn.locator(".status-text").inner_text().startswith("✓")
        after = run(page, "print('after')")
        assert after.locator(".output").inner_text().strip() == "after"

        # Down across a run's end: the end is stored, and shown once Redis is back.
        short = run(page, "import time\nfor i in range(20):\n    print(i, flush=True)\n    time.sleep(0.05)", wait=False)
        _wait_for_text(short, "3\n")
        private_redis.stop()
        page.wait_for_function("() => document.body.dataset.socket === 'closed'", timeout=15_000)
        page.wait_for_timeout(2500)  # the run ends meanwhile
        private_redis.start()
        wait_finished(short)
        assert short.locator("pre.stream").inner_text() == "".join(f"{i}\n" for i in range(20))
        assert short.locator(".status-text").inner_text().startswith("✓")
        assert errors == []
    finally:
        context.close()


async def _run_ws(ws, code: str, client_id: str) -> int:
    await ws.send(json.dumps({"type": "run", "code": code, "language": "python", "client_id": client_id}))
    while True:
        frame = await next_frame(ws, "execution.queued")
        if frame["client_id"] == client_id:
            return frame["execution_id"]


async def _frames_until_finished(ws, execution_id: int, timeout_s: float = 90) -> tuple[list[dict], dict]:
    outputs: list[dict] = []
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
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
    execution_id = await _run_ws(ws, STREAM, "stream")
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
    after = await _run_ws(ws, "print('after')", "after")
    outputs, finished = await _frames_until_finished(ws, after)
    assert finished["status"] == "succeeded" and "".join(f["text"] for f in outputs) == "after\n"
    await ws.close()
    status, chunks = await asyncio.to_thread(_stored, private_postgres.url, after)
    assert status == "succeeded" and chunks == {0: "after\n"}
