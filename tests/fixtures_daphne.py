"""Real Daphne processes serving project.asgi on the test database, for tests that need several
processes or a restart. `daphnes(**env)` starts one and returns it; all are stopped (SIGTERM, then
SIGKILL) before the database is flushed. Needs `transactional_db` so both sides see each other's rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_database_url() -> str:
    """The URL of the database pytest-django made for this test process."""
    d = connection.settings_dict
    if d["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{d['NAME']}"
    auth = quote(d.get("USER") or "", safe="")
    if d.get("PASSWORD"):
        auth += ":" + quote(d["PASSWORD"], safe="")
    port = f":{d['PORT']}" if d.get("PORT") else ""
    return f"postgres://{auth}@{d.get('HOST') or '127.0.0.1'}{port}/{d['NAME']}"


class Daphne:
    def __init__(self, env: dict[str, str], log_path: Path, probe: str | None = "/healthz") -> None:
        """Started once `probe` answers; with `probe=None`, once the port accepts a connection
        (no request sent, so the test's own request is the server's first)."""
        self.port = _free_port()
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "project.serve", "-b", "127.0.0.1", "-p", str(self.port),
                 "--websocket-max-message-size", "1048576", "project.asgi:application"],
                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if probe is None:
                    socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                    return
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{probe}", timeout=5)
                return
            except urllib.error.HTTPError:
                return  # 503 (degraded) still means the server is up
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start:\n{log_path.read_text()[-4000:]}") from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    async def open(self, session_id: Any, cookie: bytes, query: str = "") -> websockets.ClientConnection:
        """A socket on this server; its `hello` has been read and checked."""
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws/sessions/{session_id}/" + (f"?{query}" if query else ""),
            additional_headers=[("Origin", f"http://127.0.0.1:{self.port}"), ("Cookie", cookie.decode())],
            open_timeout=20,
        )
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        return ws


async def next_frame(ws: websockets.ClientConnection, kind: str, timeout_s: float = 30) -> dict[str, Any]:
    """The next frame of type `kind` (others skipped; an `error` frame fails the test)."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame
            assert frame["type"] != "error", frame


# A run that prints once, then spins until it is stopped or its server dies.
SPIN = "print('working', flush=True)\nwhile True:\n    pass"


async def start_run(ws: websockets.ClientConnection, code: str, client_id: str) -> int:
    """Send a run on `ws` and return its execution id once it is queued."""
    await ws.send(json.dumps({"type": "run", "code": code, "language": "python", "client_id": client_id}))
    while True:
        frame = await next_frame(ws, "execution.queued")
        if frame["client_id"] == client_id:
            return int(frame["execution_id"])


async def start_spinning(server: Daphne, session: Any, cookie: bytes) -> int:
    """On `server`, set `x = 1` in `session`, then start SPIN; returns its execution id once it
    printed (the socket is closed, the run goes on)."""
    ws = await server.open(session.id, cookie)
    await start_run(ws, "x = 1", "set")
    await next_frame(ws, "execution.finished")
    spinning = await start_run(ws, SPIN, "spin")
    assert (await next_frame(ws, "execution.output"))["text"] == "working\n"
    await ws.close()
    return spinning


def server_env(**overrides: str) -> dict[str, str]:
    """The environment for a server process sharing this test process's database and channel layer."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_CURRENT_TEST")}
    env.update({"DATABASE_URL": server_database_url(), "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONUNBUFFERED": "1"})
    if settings.REDIS_URL:
        env.update({"REDIS_URL": settings.REDIS_URL, "CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]})
    env.update(overrides)
    return env


@pytest.fixture
def daphnes(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Daphne]]:
    started: list[Daphne] = []

    def start(probe: str | None = "/healthz", **env_overrides: str) -> Daphne:
        daphne = Daphne(server_env(**env_overrides), tmp_path / f"daphne-{len(started)}.log", probe=probe)
        started.append(daphne)
        return daphne

    yield start
    for daphne in started:  # stopped before the database is flushed
        daphne.stop()
