"""The process's one output writer (issue 18, section 3; runner/services/outbox.py): every run's
pending chunks in one transaction per tick, each run's published in order after its commit.

Real kernels, the real database and channel layer. That ticks are shared is measured on the
database thread's own SQLite connection (its trace callback sees every statement the driver runs).
The outage drill (Postgres restarted under two streaming runs) is in tests/test_drills.py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from runner import services
from runner.models import Execution, OutputChunk
from runner.sandboxes.base import Stdout
from runner.services import runtime
from runner.services.output import OutputWriter
from tests.fixtures_runs import receive, receive_until_finished, run, stored_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

RUNS = 4
LINES = 150
INSERT_CHUNK = re.compile(r'INSERT INTO "runner_outputchunk" \([^)]*\) VALUES \((\d+),')


class Transactions:
    """The statements of the database thread's connection, cut into transactions."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    # Only SQLite's driver traces statements; on Postgres what needs the trace is skipped.
    traced = connection.vendor == "sqlite"

    def on(self) -> None:
        connection.ensure_connection()
        if self.traced:
            connection.connection.set_trace_callback(self.statements.append)

    def off(self) -> None:
        if self.traced and connection.connection is not None:
            connection.connection.set_trace_callback(None)

    def chunk_writes(self) -> list[set[int]]:
        """For each committed transaction that stored chunks, the runs whose chunks it stored."""
        writes: list[set[int]] = []
        runs: set[int] = set()
        for statement in self.statements:
            if statement.startswith("BEGIN"):
                runs = set()
            elif match := INSERT_CHUNK.match(statement):
                runs.add(int(match[1]))
            elif statement == "COMMIT" and runs:
                writes.append(runs)
                runs = set()
        return writes


def _stored(execution_id: int) -> list[tuple[int, str, str]]:
    return list(OutputChunk.objects.filter(execution_id=execution_id).order_by("index").values_list("index", "kind", "text"))


def _live(frames: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(f["index"], f["kind"], f["text"]) for f in frames if f["type"] == "execution.output"]


async def test_runs_streaming_at_once_share_commits_keep_their_order_and_replay_exactly(connect) -> None:
    users = [await runtime.db(get_user_model().objects.create_user)(f"writer{n}", password="pw-writer-123") for n in range(RUNS)]
    chats = [await runtime.db(services.session_create)(owner=user, title=f"writer {n}") for n, user in enumerate(users)]
    sockets = [await connect(user, chat) for user, chat in zip(users, chats)]
    warm = []
    for ws in sockets:
        await receive(ws)
        warm.append(await run(ws, "import time"))  # each kernel started before the streams
    for ws, execution_id in zip(sockets, warm):
        await receive_until_finished(ws, execution_id)

    transactions = Transactions()
    await runtime.db(transactions.on)()
    try:
        streams = [
            await run(ws, f"for i in range({LINES}):\n    print('run {n}', i, flush=True)\n    time.sleep(0.004)")
            for n, ws in enumerate(sockets)
        ]
        frames = await asyncio.gather(*(receive_until_finished(ws, execution_id) for ws, execution_id in zip(sockets, streams)))
    finally:
        await runtime.db(transactions.off)()

    for n, (ws, chat, user, execution_id, got) in enumerate(zip(sockets, chats, users, streams, frames)):
        assert got[-1]["status"] == "succeeded", got[-1]
        live = _live(got)
        # Each run's own chunks, in order, none repeated or missing, none of another run's.
        assert [index for index, _, _ in live] == list(range(len(live)))
        assert "".join(text for _, _, text in live) == "".join(f"run {n} {i}\n" for i in range(LINES))
        assert live == await runtime.db(_stored)(execution_id)
        # A socket that connects later is replayed exactly what the live one got.
        later = await connect(user, chat, f"after_execution={warm[n]}&after_index=-1")
        await receive(later)
        assert _live(await receive_until_finished(later, execution_id)) == live

    if not transactions.traced:
        pytest.skip("commits are counted with SQLite's trace callback")
    writes = transactions.chunk_writes()
    assert writes and set().union(*writes) == set(streams), writes
    # Shared ticks: commits that stored several runs' chunks together (each run on its own
    # would make every one of these sets a single run).
    assert max(len(runs) for runs in writes) >= 2, writes


async def test_a_run_whose_chunks_cannot_be_stored_does_not_lose_the_others_of_its_tick(alice, alice_session) -> None:
    """A tick whose transaction fails for one run (its row deleted under it: a foreign key fails
    at commit) is written again run by run: the other run's chunks land and are published; the
    lost run's are never published (persist, then publish)."""
    gone = await runtime.db(stored_run)(alice_session, 1, "running", runtime.BOOT_ID)
    kept = await runtime.db(stored_run)(alice_session, 2, "running", runtime.BOOT_ID)
    layer = runtime.channel_layer()
    inboxes = {}
    for name in ("gone", "kept"):
        inboxes[name] = await layer.new_channel()
        await layer.group_add(f"writer-{name}", inboxes[name])
    writers = {name: OutputWriter(group=f"writer-{name}") for name in ("gone", "kept")}
    writers["gone"].execution_id, writers["kept"].execution_id = gone.id, kept.id
    await runtime.db(lambda: Execution.objects.filter(pk=gone.id).delete())()

    transactions = Transactions()
    await runtime.db(transactions.on)()
    try:
        for writer in writers.values():
            writer.release()
        for i in range(3):  # in one go: the first tick takes both runs' chunks
            for name, writer in writers.items():
                writer.on_event(Stdout(f"{name} {i}\n"))
        for writer in writers.values():
            await writer.drain()
    finally:
        await runtime.db(transactions.off)()

    assert await runtime.db(_stored)(kept.id) == [(0, "stdout", "kept 0\nkept 1\nkept 2\n")]
    assert await runtime.db(lambda: OutputChunk.objects.filter(execution_id=gone.id).count())() == 0
    # The first attempt was one transaction for both runs (it failed at its commit).
    assert not transactions.traced or any(INSERT_CHUNK.match(s) and int(INSERT_CHUNK.match(s)[1]) == gone.id for s in transactions.statements)
    published = await asyncio.wait_for(layer.receive(inboxes["kept"]), 5)
    assert [c["text"] for c in published["chunks"]] == ["kept 0\nkept 1\nkept 2\n"]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(inboxes["gone"]), 0.3)
