"""Sandbox leases: one per sandbox lifetime, opened on first run, closed with a reason."""

from __future__ import annotations

import pytest
from django.test import override_settings

from runner import services
from runner.models import ChatSession, SandboxLease
from runner.services.sandboxes import NOTICE_NEW_SANDBOX
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
