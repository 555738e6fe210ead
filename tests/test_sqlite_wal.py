"""SQLite (the embedded default): the server checkpoints the WAL in the background, so commits
(a flood of output's among them) don't pay for copying it back into the database file."""

from __future__ import annotations

import asyncio
import os

import pytest
from django.db import connections

from runner import services
from runner.services.housekeeping import WAL_CHECKPOINT_EVERY_S
from tests.fixtures_runs import receive, receive_until_finished, run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
    pytest.mark.skipif(connections["default"].vendor != "sqlite", reason="SQLite only"),
]


async def test_the_server_copies_the_wal_into_the_database_file_in_the_background(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await services.runtime_ensure_started()
    path = connections["default"].settings_dict["NAME"]
    await asyncio.sleep(WAL_CHECKPOINT_EVERY_S * 3)  # whatever was pending is checkpointed
    before = os.stat(path).st_mtime_ns
    await receive_until_finished(ws, await run(ws, "print('x' * 200_000)"))  # well under the 10000-page backstop
    deadline = asyncio.get_running_loop().time() + WAL_CHECKPOINT_EVERY_S * 6
    while os.stat(path).st_mtime_ns == before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert os.stat(path).st_mtime_ns != before
