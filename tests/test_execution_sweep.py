"""The start-up sweep: runs left `queued` or `running` by a dead server process become
`interrupted` with a note in their output; runs of live processes are never touched.

Processes: this test process (alive by definition), a "dead" one that never heartbeated, and a
live peer on another host with a fresh heartbeat (`dead_runs` and `live_peer_run`, tests/fixtures_runs.py).
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from runner import services
from runner.models import Execution, OutputChunk, SandboxLease, ServerProcess
from runner.services.sweep import SWEEP_NOTE
from tests.fixtures_runs import stored_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def test_runs_of_a_dead_process_become_interrupted_with_a_note(dead_runs, runs_cleanup) -> None:
    assert await services.execution_sweep() == 2
    for execution in dead_runs:
        await execution.arefresh_from_db()
        assert execution.status == "interrupted" and execution.finished_at is not None
    notes = [(c.execution_id, c.index, c.text) async for c in OutputChunk.objects.filter(kind="stderr").order_by("execution_id")]
    assert notes == [(dead_runs[0].pk, 1, SWEEP_NOTE + "\n"), (dead_runs[1].pk, 0, SWEEP_NOTE + "\n")]


async def test_the_sweep_leaves_runs_of_a_live_process_alone(live_peer_run, runs_cleanup) -> None:
    assert await services.execution_sweep() == 0
    await live_peer_run.arefresh_from_db()
    assert live_peer_run.status == "running"


async def test_a_peer_whose_heartbeat_went_stale_is_swept(live_peer_run, runs_cleanup) -> None:
    await ServerProcess.objects.filter(boot_id="live-peer").aupdate(seen_at=timezone.now() - timezone.timedelta(minutes=5))
    assert await services.execution_sweep() == 1
    await live_peer_run.arefresh_from_db()
    assert live_peer_run.status == "interrupted"


async def test_the_first_socket_of_a_process_runs_the_start_up_sweep(connect, alice, alice_session, dead_runs) -> None:
    from runner.services import housekeeping as processes

    processes._swept_at_start = False  # a fresh process: nothing swept yet
    ws = await connect(alice, alice_session)
    await ws.receive_json_from(timeout=10)
    statuses = {e.status async for e in Execution.objects.filter(pk__in=[r.pk for r in dead_runs])}
    assert statuses == {"interrupted"}


async def test_leases_of_a_dead_process_end_with_reason_shutdown(alice, alice_session, runs_cleanup) -> None:
    lease = await SandboxLease.objects.acreate(
        user=alice, session=alice_session, backend="local", sandbox_id="gone1", owner_boot_id="dead-process",
        started_at=timezone.now() - timezone.timedelta(minutes=3),
    )
    assert await services.lease_sweep() == 1
    await lease.arefresh_from_db()
    assert lease.end_reason == "shutdown" and lease.ended_at is not None


async def test_sweep_sync_at_exit_interrupts_only_this_process_runs(alice_session, live_peer_run, runs_cleanup) -> None:
    mine = await sync_to_async(stored_run)(alice_session, 4, "running", services.BOOT_ID)
    from runner.services.sweep import execution_sweep_sync

    await sync_to_async(execution_sweep_sync)(owner_boot_ids={services.BOOT_ID})
    await mine.arefresh_from_db()
    await live_peer_run.arefresh_from_db()
    assert (mine.status, live_peer_run.status) == ("interrupted", "running")


async def test_stop_of_a_run_whose_process_died_ends_it_at_once(connect, alice, alice_session, live_peer_run) -> None:
    ws = await connect(alice, alice_session)
    await ws.receive_json_from(timeout=10)
    # The peer dies (its heartbeat goes stale) before any sweep notices; then the owner presses Stop.
    await ServerProcess.objects.filter(boot_id="live-peer").aupdate(seen_at=timezone.now() - timezone.timedelta(minutes=5))
    await ws.send_json_to({"type": "stop", "execution_id": live_peer_run.pk})
    output = await ws.receive_json_from(timeout=10)
    finished = await ws.receive_json_from(timeout=10)
    assert (output["type"], output["text"]) == ("execution.output", SWEEP_NOTE + "\n")
    assert (finished["execution_id"], finished["status"]) == (live_peer_run.pk, "interrupted")
