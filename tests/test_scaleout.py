"""Scale-out: two Daphne processes on one Postgres and one Redis.

A viewer connected to process B sees a run started through process A, and a Stop sent via B
stops it (B forwards it to A, the run's owner, over the channel layer). A sandbox restart posted
to B closes the sandbox A holds (forwarded the same way). Runs only when
DATABASE_URL is Postgres and REDIS_URL is set; otherwise skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pytest
from django.conf import settings

from runner.models import ChatSession, Execution, SandboxLease
from runner.services.sandboxes import NOTICE_NEW_SANDBOX
from tests.fixtures_daphne import next_frame
from tests.fixtures_runs import _cookie_for

ON_POSTGRES_AND_REDIS = settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and bool(settings.REDIS_URL)

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(not ON_POSTGRES_AND_REDIS, reason="scale-out needs DATABASE_URL=postgres://… and REDIS_URL"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


async def test_a_viewer_on_b_sees_a_run_started_through_a_and_a_stop_via_b_stops_it(daphnes, alice, alice_session, runs_cleanup) -> None:
    server_a, server_b = daphnes(), daphnes()
    cookie = await asyncio.to_thread(_cookie_for, alice)
    on_a = await server_a.open(alice_session.id, cookie)
    on_b = await server_b.open(alice_session.id, cookie)
    try:
        await on_a.send(json.dumps({"type": "run", "code": "print('through A', flush=True)\nwhile True:\n    pass",
                                    "language": "python", "client_id": "scale"}))
        queued = await next_frame(on_b, "execution.queued")
        assert queued["client_id"] == "scale"
        execution_id = queued["execution_id"]
        assert (await next_frame(on_b, "execution.started"))["execution_id"] == execution_id
        output = await next_frame(on_b, "execution.output")
        assert (output["execution_id"], output["text"]) == (execution_id, "through A\n")

        await on_b.send(json.dumps({"type": "stop", "execution_id": execution_id}))
        finished_b = await next_frame(on_b, "execution.finished")
        finished_a = await next_frame(on_a, "execution.finished")
        assert finished_a["status"] == finished_b["status"] == "cancelled"
    finally:
        await on_a.close()
        await on_b.close()
    execution = await Execution.objects.aget(pk=execution_id)
    assert execution.status == "cancelled"


async def test_a_restart_posted_to_b_closes_the_sandbox_a_holds(daphnes, alice, alice_session, runs_cleanup) -> None:
    server_a, server_b = daphnes(), daphnes()
    cookie = await asyncio.to_thread(_cookie_for, alice)
    on_a = await server_a.open(alice_session.id, cookie)
    try:
        await on_a.send(json.dumps({"type": "run", "code": "v = 1", "language": "python", "client_id": "set"}))
        await next_frame(on_a, "execution.finished")
        held = (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id
        assert held

        token = secrets.token_hex(16)  # Django accepts its unmasked 32-character secret in both places
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server_b.port}", timeout=30) as http:
            response = await http.post(
                f"/sessions/{alice_session.id}/restart/",
                headers={"Cookie": f"{cookie.decode()}; csrftoken={token}", "X-CSRFToken": token},
            )
        assert response.status_code == 302, response.text
        lease = await SandboxLease.objects.aget(sandbox_id=held)
        assert lease.end_reason == "restart" and lease.ended_at is not None
        assert (await ChatSession.objects.aget(pk=alice_session.pk)).sandbox_id == ""

        await on_a.send(json.dumps({"type": "run", "code": "print('v' in dir())", "language": "python", "client_id": "after"}))
        started = await next_frame(on_a, "execution.started")
        assert started.get("notice") == NOTICE_NEW_SANDBOX
        assert (await next_frame(on_a, "execution.output"))["text"] == "False\n"
    finally:
        await on_a.close()


async def test_an_input_reply_sent_via_b_reaches_the_run_on_a(daphnes, alice, alice_session, runs_cleanup) -> None:
    server_a, server_b = daphnes(), daphnes()
    cookie = await asyncio.to_thread(_cookie_for, alice)
    on_a = await server_a.open(alice_session.id, cookie)
    on_b = await server_b.open(alice_session.id, cookie)
    try:
        await on_a.send(json.dumps({"type": "run", "code": "print('got', input('Name? '))", "language": "python", "client_id": "ask"}))
        asked = await next_frame(on_b, "execution.input_request")
        assert (asked["prompt"], asked["password"]) == ("Name? ", False)
        await on_b.send(json.dumps({"type": "input_reply", "execution_id": asked["execution_id"], "value": "Ada"}))
        finished = await next_frame(on_a, "execution.finished")
        assert finished["status"] == "succeeded"
    finally:
        await on_a.close()
        await on_b.close()
    texts = [c.text async for c in (await Execution.objects.aget(pk=asked["execution_id"])).chunks.order_by("index")]
    assert "".join(texts) == "Name? Ada\ngot Ada\n"
