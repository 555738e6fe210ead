"""Fixtures for runs over the websocket: users, sessions, and connected sockets.

Who is who:
- alice owns `alice_session` and may run code in it;
- bob is another student: he must never see alice's session (4403);
- `admin` is a superuser: a read-only viewer of any session (can_run false).

Sockets go through the real `project.asgi.application` (origin check, cookie auth, routing) with
the session cookie of a user logged in by Django's test client. Runs use the configured sandbox
backend for real; after each test this process's sandboxes are closed.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django.utils import timezone

from project.asgi import application
from runner import services
from runner.models import ChatSession, Execution, OutputChunk, ServerProcess

# The site as the sockets reach it: the Origin check compares scheme, host and port with these.
ORIGIN = b"http://127.0.0.1"
HOST = b"127.0.0.1"
ALICE_PASSWORD = "pw-alice-123"
FRAME_TIMEOUT_S = 30


def _cookie_for(user: Any) -> bytes:
    """The session cookie of `user`, logged in by Django's test client. Call it in a thread from
    async code; that thread's database connection is closed before returning."""
    client = Client()
    client.force_login(user)
    if threading.current_thread() is not threading.main_thread():
        connections.close_all()
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@pytest.fixture
def alice() -> Any:
    """The one alice of the suite: a student, with a full name for the pages that show it."""
    return get_user_model().objects.create_user("alice", password=ALICE_PASSWORD, first_name="Alice", last_name="Liddell")


@pytest.fixture
def bob() -> Any:
    return get_user_model().objects.create_user("bob", password="pw-bob-123")


@pytest.fixture
def admin_user() -> Any:
    return get_user_model().objects.create_superuser("root", password="pw-root-123")


@pytest.fixture
def alice_session(alice: Any) -> ChatSession:
    return services.session_create(owner=alice, title="Alice's numbers")


@pytest.fixture
def bob_session(bob: Any) -> ChatSession:
    return services.session_create(owner=bob, title="Bob's")


def stored_run(session: ChatSession, seq: int, status: str, owner_boot_id: str) -> Execution:
    """A run row of `session` as the process `owner_boot_id` leaves it (no output)."""
    return Execution.objects.create(
        session=session, seq=seq, code="while True: pass", language="python", user=session.owner,
        status=status, owner_boot_id=owner_boot_id, started_at=timezone.now() if status == "running" else None,
    )


@pytest.fixture
def dead_runs(alice_session: ChatSession) -> list[Execution]:
    """Two runs of alice's owned by a process that never heartbeated: one `running` (with output), one `queued`."""
    running = stored_run(alice_session, 1, "running", "dead-process")
    OutputChunk.objects.create(execution=running, index=0, kind="stdout", text="before the crash\n")
    return [running, stored_run(alice_session, 2, "queued", "dead-process")]


@pytest.fixture
def live_peer_run(alice_session: ChatSession) -> Execution:
    """A `running` run owned by a live peer on another host (a fresh heartbeat)."""
    ServerProcess.objects.create(boot_id="live-peer", hostname="another-host", pid=1, seen_at=timezone.now())
    return stored_run(alice_session, 3, "running", "live-peer")


@pytest.fixture
async def runs_cleanup() -> AsyncIterator[None]:
    """Close this process's sandboxes and housekeeping after the test (they live on its loop)."""
    yield
    await services.runtime_stop()


Connect = Callable[..., Awaitable[WebsocketCommunicator]]


@pytest.fixture
async def connect(runs_cleanup: None) -> AsyncIterator[Connect]:
    """`await connect(user, session, query="")` → a connected communicator (hello not yet read).
    Every communicator is disconnected at the end of the test."""
    opened: list[WebsocketCommunicator] = []

    async def _connect(user: Any, session: ChatSession, query: str = "", expect_accept: bool = True) -> WebsocketCommunicator:
        headers = [(b"origin", ORIGIN), (b"host", HOST)]
        if user is not None:
            cookie = await asyncio.to_thread(_cookie_for, user)
            headers.append((b"cookie", cookie))
        path = f"/ws/sessions/{session.id if isinstance(session, ChatSession) else session}/" + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=FRAME_TIMEOUT_S)
        assert connected is expect_accept
        opened.append(communicator)
        return communicator

    yield _connect
    for communicator in opened:
        await communicator.disconnect()


async def receive(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The next frame (frames `run` skipped over come first)."""
    backlog: list[dict[str, Any]] = communicator.__dict__.setdefault("backlog", [])
    if backlog:
        return backlog.pop(0)
    return await communicator.receive_json_from(timeout=FRAME_TIMEOUT_S)


async def receive_until_finished(communicator: WebsocketCommunicator, execution_id: int | None = None) -> list[dict[str, Any]]:
    """Frames up to and including `execution.finished` (of `execution_id`, or the first one)."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = await receive(communicator)
        frames.append(frame)
        if frame["type"] == "execution.finished" and execution_id in (None, frame["execution_id"]):
            return frames


async def run(communicator: WebsocketCommunicator, code: str, *, language: str = "python", client_id: str | None = None) -> int:
    """Send a run and return its execution id (from its `execution.queued`). Other frames that
    arrive first stay queued for `receive`."""
    client_id = client_id or uuid.uuid4().hex[:12]
    await communicator.send_json_to({"type": "run", "code": code, "language": language, "client_id": client_id})
    skipped: list[dict[str, Any]] = []
    while True:
        frame = await communicator.receive_json_from(timeout=FRAME_TIMEOUT_S)
        if frame["type"] == "execution.queued" and frame["client_id"] == client_id:
            communicator.__dict__.setdefault("backlog", []).extend(skipped)
            return frame["execution_id"]
        assert frame["type"] != "error", frame
        skipped.append(frame)


def stdout_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f.get("text", "") for f in frames if f["type"] == "execution.output" and f["kind"] == "stdout")
