"""Stopping a local run early: a Stop (or a timeout) right after a run starts ends it as
"interrupted" (or "timeout") and the kernel keeps its variables (real kernels in bwrap)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from runner.sandboxes.base import Sandbox
from runner.sandboxes.local import LocalBackend, jail
from runner.sandboxes.local.kernel import PROBE_AFTER_S, Kernel, KernelDied
from tests.fixtures_sandboxes import local_backend_or_skip, run

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local() -> LocalBackend:
    return local_backend_or_skip()  # type: ignore[return-value]


@pytest_asyncio.fixture(loop_scope="module")
async def sandbox(local: LocalBackend) -> AsyncIterator[Sandbox]:
    created = await local.create(owner_id=31, session_id=str(uuid.uuid4()))
    yield created
    await created.close()


async def test_early_stops_interrupt_a_busy_loop_and_keep_variables(sandbox: Sandbox) -> None:
    results = []
    for round_ in range(10):
        for delay_s in (0, 0.005, 0.02):
            outcome, events = await run(sandbox, f"kept = {round_}\nprint('set')")
            assert (outcome.status, events.stdout) == ("ok", "set\n"), events.events
            running = asyncio.create_task(run(sandbox, "while True: pass", timeout_s=120))
            await asyncio.sleep(delay_s)
            await sandbox.interrupt()
            outcome, events = await asyncio.wait_for(running, 60)
            _, said = await run(sandbox, "print(kept)")
            results.append((round_, delay_s, outcome.status, said.stdout.strip(), events.text[-200:]))
    assert [r for r in results if r[2:4] != ("interrupted", str(r[0]))] == []


async def test_a_stop_is_repeated_while_the_cell_swallows_it(sandbox: Sandbox) -> None:
    # An interrupt can land where it is swallowed (here: by the cell itself; in the kernel: in a
    # hook that runs just before the cell). While the same run is live, it is sent again.
    await run(sandbox, "kept = 'yes'")
    code = (
        "import time\n"
        "swallowed = 0\n"
        "while True:\n"
        "    try:\n"
        "        while True: time.sleep(0.01)\n"
        "    except KeyboardInterrupt:\n"
        "        swallowed += 1\n"
        "        if swallowed == 2: raise\n"
    )
    running = asyncio.create_task(run(sandbox, code, timeout_s=120))
    await asyncio.sleep(0.5)
    await sandbox.interrupt()
    outcome, events = await asyncio.wait_for(running, 60)
    assert outcome.status == "interrupted", events.text
    assert outcome.duration_ms < 4000  # not left to the probe that declares a kernel stuck
    _, said = await run(sandbox, "print(kept, swallowed)")
    assert said.stdout == "yes 2\n", (said.events, events.events)


async def test_a_timeout_while_the_kernel_is_starved_still_stops_the_cell_and_keeps_variables(sandbox: Sandbox) -> None:
    # Under load the kernel can start a cell only after the timeout's interrupt (ignored then) and
    # the kernel_info probe have gone out: here its processes are stopped (SIGSTOP) meanwhile. The
    # cell then waits in input(), the probe queued behind it; the interrupt must be sent again.
    await run(sandbox, "kept = 'yes'")
    kernel = sandbox.kernels["python"]  # type: ignore[attr-defined]
    pids = sorted(kernel.protected_pids)

    async def never_answered(prompt: str, password: bool) -> str:
        await asyncio.Event().wait()
        return ""

    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        running = asyncio.create_task(sandbox.run("input('never? ')", language="python", on_event=lambda e: None,
                                                  timeout_s=0.5, on_input=never_answered))
        await asyncio.sleep(0.5 + PROBE_AFTER_S + 0.5)  # past the timeout, and the probe is out
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    outcome = await asyncio.wait_for(running, 60)
    assert outcome.status == "timeout"
    _, said = await run(sandbox, "print(kept)")
    assert said.stdout == "yes\n", said.events


async def test_a_timeout_right_at_the_start_keeps_variables(sandbox: Sandbox) -> None:
    await run(sandbox, "kept = 'yes'")
    for timeout_s in (0.001, 0.01, 0.05):
        outcome, events = await run(sandbox, "while True: pass", timeout_s=timeout_s)
        assert outcome.status == "timeout", events.text
    _, said = await run(sandbox, "print(kept)")
    assert said.stdout == "yes\n"


async def test_python_tracebacks_come_coloured_like_jupyters(sandbox: Sandbox) -> None:
    outcome, events = await run(sandbox, "def f():\n    return 1 / 0\nf()")
    assert outcome.status == "error"
    [error] = events.errors
    text = "\n".join(error.traceback)
    assert "\x1b[" in text  # ANSI SGR colours, rendered by the page
    assert "ZeroDivisionError" in text and "f()" in re.sub(r"\x1b\[[0-9;]*m", "", text)


async def test_a_kernel_that_cannot_start_says_why(local: LocalBackend, sandbox: Sandbox,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # A kernel program that fails as it starts: the error quotes the end of its stderr rather than
    # only an exit status. (Nothing of the user's can make the real one fail so: see below.)
    control = sandbox.root / f"py-{secrets.token_hex(4)}"  # type: ignore[attr-defined]
    kernel = Kernel(kind="python", control_dir=control, owner=local.kernel_owner,
                    argv_for=lambda _command: local.confined_argv(
                        sandbox, command=[f"{jail.VENV}/bin/python", "-c", "raise RuntimeError('planted breakage')"],  # type: ignore[arg-type]
                        language="python", control=control))
    try:
        with caplog.at_level("WARNING", logger="runner.sandboxes.local.kernel"), pytest.raises(KernelDied) as died:
            await kernel.start(local.zmq_context)
    finally:
        kernel.kill()
    assert "exited while starting" in died.value.detail
    assert "RuntimeError: planted breakage" in died.value.detail, died.value.detail
    assert "planted breakage" in caplog.text


async def test_a_module_planted_among_the_packages_cannot_break_the_kernels_start(sandbox: Sandbox) -> None:
    # The kernel's own modules load before ~/.local/packages joins sys.path (after the lock).
    planted = (
        "import os, sys\n"
        "os.makedirs(os.path.expanduser('~/.local/packages/ipykernel'), exist_ok=True)\n"
        "with open(os.path.expanduser('~/.local/packages/ipykernel/__init__.py'), 'w') as f:\n"
        "    f.write('raise RuntimeError(\"planted breakage\")')\n"
        "os._exit(1)\n"
    )
    outcome, _ = await run(sandbox, planted)
    assert outcome.status == "gone"
    outcome, events = await run(sandbox, "print('hi')")
    assert (outcome.status, events.stdout) == ("ok", "hi\n"), events.events
