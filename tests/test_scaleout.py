"""Scale-out: two Daphne processes on one Postgres and one Redis.

A viewer connected to process B sees a run started through process A, and a Stop sent via B
stops it (B forwards it to A, the run's owner, over the channel layer). Runs only when
DATABASE_URL is Postgres and REDIS_URL is set; otherwise skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from django.conf import settings
from django.db import connection

from runner.models import Execution
from tests.fixtures_runs import _cookie_for

BASE_DIR = Path(__file__).resolve().parent.parent
ON_POSTGRES_AND_REDIS = settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and bool(settings.REDIS_URL)

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(not ON_POSTGRES_AND_REDIS, reason="scale-out needs DATABASE_URL=postgres://… and REDIS_URL"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _test_database_url() -> str:
    d = connection.settings_dict
    auth = quote(d.get("USER") or "", safe="")
    if d.get("PASSWORD"):
        auth += ":" + quote(d["PASSWORD"], safe="")
    port = f":{d['PORT']}" if d.get("PORT") else ""
    return f"postgres://{auth}@{d.get('HOST') or '127.0.0.1'}{port}/{d['NAME']}"


def _start_daphne(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_CURRENT_TEST")}
    env.update({
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONUNBUFFERED": "1",
    })
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
             "--websocket-max-message-size", "1048576", "project.asgi:application"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def _wait_until_up(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return
        except urllib.error.HTTPError:
            return  # 503 (degraded) still means the server is up
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start:\n{log_path.read_text()[-4000:]}") from None
            time.sleep(0.1)


@pytest.fixture
def two_daphnes(transactional_db: None, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Ports of two Daphne processes serving project.asgi on the test database and Redis."""
    ports = (_free_port(), _free_port())
    procs = [_start_daphne(port, tmp_path / f"daphne-{port}.log") for port in ports]
    try:
        for port, proc in zip(ports, procs):
            _wait_until_up(port, proc, tmp_path / f"daphne-{port}.log")
        yield ports
    finally:
        for proc in procs:  # stopped before the database is flushed
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _open(port: int, session_id: Any, cookie: bytes) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/sessions/{session_id}/",
        additional_headers=[("Origin", f"http://127.0.0.1:{port}"), ("Cookie", cookie.decode())],
        open_timeout=20,
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello" and hello["can_run"] is True
    return ws


async def _next(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == kind:
            return frame
        assert frame["type"] != "error", frame


async def test_a_viewer_on_b_sees_a_run_started_through_a_and_a_stop_via_b_stops_it(two_daphnes, alice, alice_session, runs_cleanup) -> None:
    port_a, port_b = two_daphnes
    cookie = await asyncio.to_thread(_cookie_for, alice)
    on_a = await _open(port_a, alice_session.id, cookie)
    on_b = await _open(port_b, alice_session.id, cookie)
    try:
        await on_a.send(json.dumps({"type": "run", "code": "print('through A', flush=True)\nwhile True:\n    pass",
                                    "language": "python", "client_id": "scale"}))
        queued = await _next(on_b, "execution.queued")
        assert queued["client_id"] == "scale"
        execution_id = queued["execution_id"]
        assert (await _next(on_b, "execution.started"))["execution_id"] == execution_id
        output = await _next(on_b, "execution.output")
        assert (output["execution_id"], output["text"]) == (execution_id, "through A\n")

        await on_b.send(json.dumps({"type": "stop", "execution_id": execution_id}))
        finished_b = await _next(on_b, "execution.finished")
        finished_a = await _next(on_a, "execution.finished")
        assert finished_a["status"] == finished_b["status"] == "cancelled"
    finally:
        await on_a.close()
        await on_b.close()
    execution = await Execution.objects.aget(pk=execution_id)
    assert execution.status == "cancelled"
