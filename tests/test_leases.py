"""Sandbox leases: one per sandbox lifetime, opened on first run, closed with a reason."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from runner import events, services
from runner.models import ChatSession, SandboxLease, ServerProcess
from runner.services.sandboxes import NOTICE_NEW_SANDBOX, sandbox_restart_local, sandboxes_close_idle_of
from tests.fixtures_runs import receive, receive_until_finished, run, stdout_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def test_the_first_run_opens_a_lease_and_names_the_sandbox_on_the_session(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "1"))
    await receive_until_finished(ws, await run(ws, "2"))
    lease = await SandboxLease.objects.aget(session=alice_session)
    session = await ChatSession.objects.aget(pk=alice_session.pk)
    assert lease.ended_at is None and lease.user_id == alice.pk and lease.owner_boot_id == services.BOOT_ID
    assert session.sandbox_id == lease.sandbox_id != ""


async def test_an_idle_sandbox_is_reaped_and_the_next_run_says_variables_are_gone(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "v = 1"))
    with override_settings(SANDBOX_IDLE_TIMEOUT_S=0):
        assert await services.sandbox_reap_idle() == 1
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert lease.end_reason == "idle" and lease.ended_at is not None
    assert (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id == ""

    execution_id = await run(ws, "print('v' in dir())")
    frames = await receive_until_finished(ws, execution_id)
    frames = [f for f in frames if f["type"] != "execution.starting"]  # while its new sandbox starts
    assert frames[0] == {"type": "execution.started", "execution_id": execution_id, "notice": NOTICE_NEW_SANDBOX}
    assert stdout_of(frames) == "False\n"
    assert await SandboxLease.objects.filter(session=alice_session, ended_at__isnull=True).acount() == 1


async def test_closing_this_process_sandboxes_ends_their_leases_with_reason_shutdown(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "1"))
    await services.sandboxes_close_all(reason=SandboxLease.EndReason.SHUTDOWN)
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert lease.end_reason == "shutdown" and lease.billed_seconds > 0


async def test_restart_closes_the_sandbox_held_here_ends_its_lease_with_reason_restart_and_clears_the_session(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "v = 1"))
    await services.session_sandbox_restart(session=alice_session)
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert lease.end_reason == "restart" and lease.ended_at is not None
    assert (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id == ""
    execution_id = await run(ws, "print('v' in dir())")
    frames = await receive_until_finished(ws, execution_id)
    assert [f for f in frames if f["type"] == "execution.started"][0]["notice"] == NOTICE_NEW_SANDBOX and stdout_of(frames) == "False\n"


async def test_restart_of_a_sandbox_another_live_process_holds_is_forwarded_to_that_process(runs_cleanup, alice, alice_session) -> None:
    # The other process: a fresh heartbeat row on another host, an open lease, and a listener on its channel.
    other = uuid.uuid4().hex
    await ServerProcess.objects.acreate(boot_id=other, hostname="other-host", pid=1)
    await ChatSession.objects.filter(pk=alice_session.pk).aupdate(backend="local", sandbox_id="held-elsewhere")
    await SandboxLease.objects.acreate(user=alice, session=alice_session, backend="local", sandbox_id="held-elsewhere", owner_boot_id=other)
    layer = get_channel_layer()

    async def other_process() -> dict:
        message = await layer.receive(events.process_channel(other))
        await sandbox_restart_local(session_id=uuid.UUID(message["session_id"]), reply_channel=message["reply_channel"])
        return message

    listener = asyncio.ensure_future(other_process())
    await services.runtime_ensure_started()
    await services.session_sandbox_restart(session=alice_session)
    message = await asyncio.wait_for(listener, 5)
    assert message["type"] == "sandbox.restart" and message["session_id"] == str(alice_session.id)
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert lease.end_reason == "restart" and lease.ended_at is not None
    assert (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id == ""


async def test_an_api_kill_tells_the_open_page_its_sandbox_is_closed_not_ready(connect, alice, alice_session) -> None:
    """The header chip follows an API kill: the session's sockets get `sandbox.state` "closed"
    (never left at "ready"), and a budget's close says "stopped" with its own words."""
    from datetime import timedelta

    from django.utils import timezone

    from runner.models import ApiSandbox

    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "x = 1"))
    api = await ApiSandbox.objects.acreate(session=alice_session, end_at=timezone.now() + timedelta(minutes=5))
    await services.api_sandbox_kill(sandbox=api)
    frame = await receive(ws)
    assert frame == {"type": "sandbox.state", "state": "closed", "text": "closed · starts on your next run", "reason": "closed"}
    assert (await SandboxLease.objects.aget(session=alice_session)).end_reason == "closed"


async def test_a_budget_close_says_so_on_the_open_page(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "x = 1"))
    closed = await sandboxes_close_idle_of(user_ids={alice.pk}, reason=SandboxLease.EndReason.BUDGET)
    assert closed == 1
    frame = await receive(ws)
    assert frame["type"] == "sandbox.state" and frame["state"] == "stopped" and frame["text"] == "closed · usage limit reached"
    assert "usage limit was reached" in frame["notice"]


async def test_an_admin_kill_of_a_sandbox_another_process_holds_carries_the_reason_there(runs_cleanup, alice, alice_session) -> None:
    """The process holding the sandbox gets the admin's words, for the notice its run ends with."""
    other = uuid.uuid4().hex
    await ServerProcess.objects.acreate(boot_id=other, hostname="other-host", pid=1)
    await ChatSession.objects.filter(pk=alice_session.pk).aupdate(backend="local", sandbox_id="held-elsewhere")
    await SandboxLease.objects.acreate(user=alice, session=alice_session, backend="local", sandbox_id="held-elsewhere", owner_boot_id=other)
    layer = get_channel_layer()

    async def other_process() -> dict:
        message = await layer.receive(events.process_channel(other))
        await layer.send(message["reply_channel"], {"type": "sandbox.restarted", "session_id": message["session_id"]})
        return message

    listener = asyncio.ensure_future(other_process())
    await services.runtime_ensure_started()
    await services.sandbox_restart(session_id=alice_session.id, reason=SandboxLease.EndReason.ADMIN, note="exam over")
    message = await asyncio.wait_for(listener, 5)
    assert (message["reason"], message["note"]) == ("admin", "exam over")
    assert (await SandboxLease.objects.aget(session=alice_session)).end_reason == "admin"
