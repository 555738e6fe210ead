"""Recovery from a crash without waiting for a socket (issue 12, part 1).

A Daphne SIGKILLed mid-run, then restarted: the first request the new process answers, plain HTTP,
already shows the dead process's run as `interrupted`, its output kept, with the sweep's note.
`manage.py sweep` does the same for operators and cron, without a server.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from io import StringIO

import pytest
from django.core.management import call_command

from runner.models import Execution, OutputChunk, ServerProcess
from runner.services.sweep import SWEEP_NOTE
from tests.fixtures_daphne import start_spinning
from tests.fixtures_runs import _cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def _get(port: int, path: str, cookie: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie.decode()})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read().decode()


async def test_a_restarted_server_settles_the_dead_run_before_its_first_http_answer(daphnes, alice, alice_session, runs_cleanup) -> None:
    cookie = await asyncio.to_thread(_cookie_for, alice)
    first = daphnes()
    spinning = await start_spinning(first, alice_session, cookie)
    first.stop(signal.SIGKILL)
    assert (await Execution.objects.aget(pk=spinning)).status == "running"  # nobody has swept it yet

    # No /healthz probe and no socket: this page is the new process's first request.
    second = daphnes(probe=None)
    path = f"/sessions/{alice_session.id}/executions/{spinning}/output/"
    status, html = await asyncio.to_thread(_get, second.port, path, cookie)
    assert status == 200
    assert "working" in html  # output written before the crash is kept
    assert SWEEP_NOTE in html
    assert (await Execution.objects.aget(pk=spinning)).status == "interrupted"


async def test_manage_py_sweep_interrupts_runs_of_dead_processes_only(dead_runs, live_peer_run, runs_cleanup) -> None:
    out = StringIO()
    await asyncio.to_thread(call_command, "sweep", stdout=out)
    assert "swept 2 run(s)" in out.getvalue()
    for dead in dead_runs:
        assert (await Execution.objects.aget(pk=dead.pk)).status == "interrupted"
        assert await OutputChunk.objects.filter(execution_id=dead.pk, text=SWEEP_NOTE + "\n").aexists()
    assert await OutputChunk.objects.filter(execution_id=dead_runs[0].pk, text="before the crash\n").aexists()
    assert (await Execution.objects.aget(pk=live_peer_run.pk)).status == "running"
    assert await ServerProcess.objects.filter(boot_id=live_peer_run.owner_boot_id).aexists()
