"""Server capacity (issue 18, section 2): SANDBOX_MAX_LIVE sized by memory by default; a run that
finds the server full waits in a FIFO queue (its place sent as `execution.starting`), takes the
oldest idle sandbox's place, and is refused only after SANDBOX_QUEUE_WAIT_S."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import override_settings

from runner import services
from runner.models import ChatSession, Execution, SandboxLease
from runner.sandboxes.local import capacity
from tests.fixtures_runs import receive, receive_until_finished, run, stdout_of

MIB = 1024 * 1024
# Runs that hold their sandbox busy until stopped.
BUSY = "import time\nprint('busy', flush=True)\ntime.sleep(120)"


async def _next(ws: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next frame of type `kind`, skipping others (but not past a run's end)."""
    while True:
        frame = await receive(ws)
        if frame["type"] == kind:
            return frame
        assert frame["type"] not in ("execution.finished", "error"), frame


async def _sessions(user: Any, n: int) -> list[ChatSession]:
    return [await asyncio.to_thread(services.session_create, owner=user, title=f"s{i}") for i in range(n)]


async def _busy(ws: WebsocketCommunicator) -> int:
    execution_id = await run(ws, BUSY)
    frame = await _next(ws, "execution.output")
    assert frame["text"] == "busy\n"
    return execution_id


async def _stop(ws: WebsocketCommunicator, execution_id: int) -> None:
    await ws.send_json_to({"type": "stop", "execution_id": execution_id})
    assert (await receive_until_finished(ws, execution_id))[-1]["status"] == "cancelled"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
async def test_a_run_over_capacity_waits_in_line_shows_its_place_and_starts_when_a_slot_frees(connect, alice) -> None:
    with override_settings(SANDBOX_MAX_LIVE=2, QUOTA_LIVE_SANDBOXES=0, SANDBOX_POOL_SIZE=0):
        a, b, c, d = await _sessions(alice, 4)
        wa, wb, wc, wd = [await connect(alice, s) for s in (a, b, c, d)]
        for ws in (wa, wb, wc, wd):
            await receive(ws)
        run_a, run_b = await _busy(wa), await _busy(wb)
        # Both slots run code: the third session waits first in line, the fourth behind it.
        run_c = await run(wc, "print('third')")
        starting = await _next(wc, "execution.starting")
        assert (starting["execution_id"], starting["ahead"]) == (run_c, 0)
        run_d = await run(wd, "print('fourth')")
        waiting_d = await _next(wd, "execution.starting")
        assert (waiting_d["execution_id"], waiting_d["ahead"]) == (run_d, 1)
        assert starting["since"] <= waiting_d["since"]
        # A page that (re)connects mid-wait is told at once.
        again = await connect(alice, d)
        assert (await receive(again))["type"] == "hello"
        resent = await receive(again)
        assert (resent["type"], resent["execution_id"], resent["ahead"], resent["since"]) == (
            "execution.starting", run_d, 1, waiting_d["since"])
        # One slot frees (its run stopped, its sandbox idle): the first in line takes it.
        await _stop(wa, run_a)
        frames = await receive_until_finished(wc, run_c)
        assert stdout_of(frames) == "third\n" and frames[-1]["status"] == "succeeded"
        assert (await SandboxLease.objects.filter(session=a).alatest("started_at")).end_reason == "reclaimed"
        # The fourth moved up, and still waits for a slot.
        moved = await _next(wd, "execution.starting")
        assert (moved["execution_id"], moved["ahead"], moved["since"]) == (run_d, 0, waiting_d["since"])
        await _stop(wb, run_b)
        frames = await receive_until_finished(wd, run_d)
        assert stdout_of(frames) == "fourth\n" and frames[-1]["status"] == "succeeded"
        # The reclaimed session gets a fresh sandbox on its next run, and is told.
        next_a = await run(wa, "print(1)")
        frames = await receive_until_finished(wa, next_a)
        started = [f for f in frames if f["type"] == "execution.started"]
        assert started[0]["notice"] == services.sandboxes.NOTICE_NEW_SANDBOX and frames[-1]["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
async def test_a_run_still_waiting_after_the_bounded_wait_is_refused_with_a_clear_message(connect, alice) -> None:
    with override_settings(SANDBOX_MAX_LIVE=1, QUOTA_LIVE_SANDBOXES=0, SANDBOX_POOL_SIZE=0, SANDBOX_QUEUE_WAIT_S=2):
        a, b = await _sessions(alice, 2)
        wa, wb = await connect(alice, a), await connect(alice, b)
        await receive(wa), await receive(wb)
        busy = await _busy(wa)
        refused = await run(wb, "print('never')")
        assert (await _next(wb, "execution.starting"))["ahead"] == 0
        frames = await receive_until_finished(wb, refused)
        errors = [f for f in frames if f["type"] == "error"]
        assert errors and errors[0]["code"] == "unavailable"
        assert errors[0]["message"] == (
            "busy: 1 sandboxes are running (the limit is 1); none became free within 2 s of waiting. Try again in a minute."
        )
        assert frames[-1]["status"] == "rejected" and stdout_of(frames) == ""
        row = await Execution.objects.aget(pk=refused)
        assert (row.status, row.error_name) == ("rejected", "SandboxUnavailable")
        await _stop(wa, busy)  # the busy session lost nothing
        assert services.sandboxes.sandbox_is_held(session_id=a.id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
async def test_a_run_stopped_while_waiting_leaves_the_line_and_takes_no_slot(connect, alice) -> None:
    with override_settings(SANDBOX_MAX_LIVE=1, QUOTA_LIVE_SANDBOXES=0, SANDBOX_POOL_SIZE=0):
        a, b, c = await _sessions(alice, 3)
        wa, wb, wc = await connect(alice, a), await connect(alice, b), await connect(alice, c)
        await receive(wa), await receive(wb), await receive(wc)
        busy = await _busy(wa)
        stopped = await run(wb, "print('never')")
        assert (await _next(wb, "execution.starting"))["ahead"] == 0
        behind = await run(wc, "print('third')")
        assert (await _next(wc, "execution.starting"))["ahead"] == 1
        await _stop(wb, stopped)
        moved = await _next(wc, "execution.starting")
        assert (moved["execution_id"], moved["ahead"]) == (behind, 0)  # the stopped run left the line
        await _stop(wa, busy)
        assert stdout_of(await receive_until_finished(wc, behind)) == "third\n"
        assert not services.sandboxes.sandbox_is_held(session_id=b.id)
        assert not await SandboxLease.objects.filter(session=b).aexists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
async def test_a_waiting_run_reclaims_the_sandbox_idle_the_longest(connect, alice) -> None:
    bob = await get_user_model().objects.acreate(username="bob-capacity")
    with override_settings(SANDBOX_MAX_LIVE=2, QUOTA_LIVE_SANDBOXES=0, SANDBOX_POOL_SIZE=0):
        (oldest, newer), (bobs,) = await _sessions(alice, 2), await _sessions(bob, 1)
        wo, wn, wb = await connect(alice, oldest), await connect(alice, newer), await connect(bob, bobs)
        await receive(wo), await receive(wn), await receive(wb)
        await receive_until_finished(wo, await run(wo, "x = 1"))
        await receive_until_finished(wn, await run(wn, "x = 2"))
        # Another user's session needs a sandbox: the one idle the longest makes room.
        frames = await receive_until_finished(wb, await run(wb, "print('bob')"))
        assert stdout_of(frames) == "bob\n"
        assert (await SandboxLease.objects.aget(session=oldest)).end_reason == "reclaimed"
        assert (await SandboxLease.objects.aget(session=newer)).ended_at is None
        frames = await receive_until_finished(wn, await run(wn, "print(x)"))
        assert stdout_of(frames) == "2\n"  # kept its variables


@override_settings(SANDBOX_MAX_LIVE=0, SANDBOX_MEMORY_HEADROOM_MB=512)
def test_auto_capacity_admits_while_memory_stays_above_the_headroom() -> None:
    gib = 1024 * MIB
    assert capacity.has_room(live=0, used_bytes=[], available=gib)
    # Six sandboxes just started (nothing allocated yet) are counted as NEW_SANDBOX_BYTES each.
    assert not capacity.has_room(live=6, used_bytes=[None] * 6, available=gib)
    # Those that already use their share are in MemAvailable: only the new one counts.
    assert capacity.has_room(live=6, used_bytes=[200 * MIB] * 6, available=gib)
    assert not capacity.has_room(live=6, used_bytes=[200 * MIB] * 6, available=600 * MIB)


@override_settings(SANDBOX_MAX_LIVE=3)
def test_an_explicit_max_live_wins_over_memory() -> None:
    assert capacity.has_room(live=2, used_bytes=[None] * 2, available=0)
    assert not capacity.has_room(live=3, used_bytes=[], available=1 << 40)


def test_available_memory_reads_meminfo_and_the_servers_cgroup_limit(tmp_path: Path) -> None:
    assert capacity.meminfo_available_bytes("MemTotal: 100 kB\nMemAvailable:    2048 kB\n") == 2048 * 1024
    v1 = tmp_path / "v1"
    (v1 / "memory" / "srv").mkdir(parents=True)
    (v1 / "memory" / "srv" / "memory.limit_in_bytes").write_text(str(1024 * MIB))
    (v1 / "memory" / "srv" / "memory.usage_in_bytes").write_text(str(700 * MIB))
    assert capacity._own_cgroup_room_bytes({"memory": "/srv"}, v1) == 324 * MIB
    v2 = tmp_path / "v2"
    (v2 / "a" / "b").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("memory pids")
    (v2 / "a" / "memory.max").write_text(str(800 * MIB))
    (v2 / "a" / "memory.current").write_text(str(500 * MIB))
    (v2 / "a" / "b" / "memory.max").write_text("max")
    (v2 / "a" / "b" / "memory.current").write_text(str(400 * MIB))
    assert capacity._own_cgroup_room_bytes({"": "/a/b"}, v2) == 300 * MIB  # the parent's limit binds
    (v1 / "memory" / "srv" / "memory.limit_in_bytes").write_text(str(9223372036854771712))
    assert capacity._own_cgroup_room_bytes({"memory": "/srv"}, v1) is None
