"""The Sandbox Protocol's contract, checked against every backend in BACKEND_PARAMS (real kernels).

Each test takes a fresh `sandbox` of the parametrised `backend` (see tests/fixtures_sandboxes.py).
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import pytest

from runner.sandboxes.base import Backend, Sandbox, SandboxGone, SandboxUsage, Stderr, Stdout
from tests.fixtures_sandboxes import run

pytestmark = pytest.mark.timeout(180)

HELLO = {
    "python": "print('hello, world')",
    "bash": "echo hello, world",
    "javascript": "console.log('hello, world')",
    "typescript": "const greeting: string = 'hello, world'; console.log(greeting)",
}


async def test_backend_satisfies_the_protocol(backend: Backend, sandbox: Sandbox) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(sandbox, Sandbox)
    assert isinstance(sandbox.id, str) and sandbox.id
    assert {"python"} <= backend.languages


async def test_usage_reports_the_memory_a_run_holds(sandbox: Sandbox) -> None:
    """The admin's live view: what a sandbox uses now. Memory counts what its code holds (the local
    cgroup; E2B's metrics API); CPU is a share of its allowance, or None where unknown."""
    outcome, _ = await run(sandbox, "block = bytearray(120 * 1024 * 1024)\nfor i in range(0, len(block), 4096): block[i] = 1")
    assert outcome.status == "ok"
    usage = await sandbox.usage()
    assert isinstance(usage, SandboxUsage)
    assert usage.memory_bytes is not None and usage.memory_bytes > 100 * 1024 * 1024, usage
    assert usage.memory_limit_bytes is not None and usage.memory_limit_bytes > usage.memory_bytes
    assert usage.cpu_percent is None or 0 <= usage.cpu_percent <= 1000


async def test_state_persists_across_runs(sandbox: Sandbox) -> None:
    first, _ = await run(sandbox, "answer = 41")
    second, events = await run(sandbox, "print(answer + 1)")
    assert (first.status, second.status) == ("ok", "ok")
    assert events.stdout == "42\n"


async def test_stdout_and_stderr_interleave_in_kernel_order(backend: Backend, sandbox: Sandbox) -> None:
    if backend.name == "e2b":
        pytest.skip("E2B's stock ipykernel buffers stdout and stderr separately, so their relative order is not kept")
    code = "import sys\nfor i in range(3):\n    print('out', i)\n    print('err', i, file=sys.stderr)\n"
    outcome, events = await run(sandbox, code)
    assert outcome.status == "ok"
    streams = [(type(e).__name__, e.text) for e in events.events if isinstance(e, (Stdout, Stderr))]
    merged: list[tuple[str, str]] = []
    for kind, text in streams:  # a backend may split or join chunks of one stream
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    assert merged == [
        ("Stdout", "out 0\n"), ("Stderr", "err 0\n"),
        ("Stdout", "out 1\n"), ("Stderr", "err 1\n"),
        ("Stdout", "out 2\n"), ("Stderr", "err 2\n"),
    ]


async def test_last_expression_is_the_main_result(sandbox: Sandbox) -> None:
    outcome, events = await run(sandbox, "6 * 7")
    assert outcome.status == "ok"
    assert [(r.data.get("text/plain"), r.is_main) for r in events.results] == [("42", True)]


async def test_matplotlib_plot_arrives_as_png(sandbox: Sandbox) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
    outcome, events = await run(sandbox, code, timeout_s=60)
    assert outcome.status == "ok"
    pngs = [r.data["image/png"] for r in events.results if "image/png" in r.data]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")


async def test_exception_arrives_with_its_traceback(sandbox: Sandbox) -> None:
    outcome, events = await run(sandbox, "def f():\n    return 1 / 0\nf()")
    assert outcome.status == "error"
    [error] = events.errors
    assert (error.ename, error.evalue) == ("ZeroDivisionError", "division by zero")
    assert any("f()" in line for line in error.traceback)


async def test_timeout_interrupts_and_keeps_variables(sandbox: Sandbox) -> None:
    await run(sandbox, "kept = 'still here'")
    outcome, events = await run(sandbox, "import time\nprint('started', flush=True)\ntime.sleep(60)", timeout_s=1.5)
    assert outcome.status == "timeout"
    assert "started" in events.stdout
    assert outcome.duration_ms < 15_000
    after, events = await run(sandbox, "print(kept)")
    assert (after.status, events.stdout) == ("ok", "still here\n")


async def test_interrupt_from_another_task_stops_the_run(sandbox: Sandbox) -> None:
    await run(sandbox, "kept = 7")
    running = asyncio.create_task(run(sandbox, "import time\nprint('go', flush=True)\ntime.sleep(60)", timeout_s=120))
    await asyncio.sleep(1.0)
    await sandbox.interrupt()
    outcome, _ = await asyncio.wait_for(running, 30)
    assert outcome.status == "interrupted"
    after, events = await run(sandbox, "print(kept)")
    assert (after.status, events.stdout) == ("ok", "7\n")


async def test_file_round_trip_between_the_api_and_code(sandbox: Sandbox) -> None:
    await sandbox.write_file("data/in.txt", b"from the server\n")
    outcome, events = await run(
        sandbox, "print(open('data/in.txt').read(), end='')\nopen('data/out.bin', 'wb').write(bytes(range(256)))"
    )
    assert (outcome.status, events.stdout) == ("ok", "from the server\n")
    assert await sandbox.read_file("data/out.bin") == bytes(range(256))
    listing = {f.name: f for f in await sandbox.list_files("data")}
    assert set(listing) == {"in.txt", "out.bin"}
    assert listing["out.bin"].size == 256 and not listing["out.bin"].is_dir


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "/home/user/../../etc/passwd"])
async def test_paths_that_leave_the_workspace_are_rejected(sandbox: Sandbox, path: str) -> None:
    with pytest.raises(ValueError):
        await sandbox.write_file(path, b"x")
    with pytest.raises(ValueError):
        await sandbox.read_file(path)


async def test_a_symlink_leading_out_of_the_workspace_is_not_followed(sandbox: Sandbox) -> None:
    outcome, _ = await run(sandbox, "import os\nos.symlink('/etc', 'etc-link')\nos.symlink('/etc/passwd', 'passwd-link')")
    assert outcome.status == "ok"
    with pytest.raises(ValueError):
        await sandbox.read_file("passwd-link")
    with pytest.raises(ValueError):
        await sandbox.read_file("etc-link/passwd")
    with pytest.raises(ValueError):
        await sandbox.write_file("etc-link/planted", b"x")


async def test_installed_package_is_importable_in_the_next_run(sandbox: Sandbox) -> None:
    installed: list[object] = []
    outcome = await sandbox.install(["humanize==4.11.0"], language="python", on_event=installed.append, timeout_s=180)
    assert outcome.status == "ok", installed
    after, events = await run(sandbox, "import humanize\nprint(humanize.intcomma(1234567))")
    assert (after.status, events.stdout) == ("ok", "1,234,567\n")


@pytest.mark.parametrize("bad", ["--index-url=http://evil.example/", "-r requirements.txt", "./local", "/tmp/x.whl",
                                 "https://example.com/x.whl", "git+https://example.com/x", "pkg; rm -rf /", ""])
async def test_install_rejects_anything_but_package_names(sandbox: Sandbox, bad: str) -> None:
    with pytest.raises(ValueError):
        await sandbox.install([bad], language="python", on_event=lambda e: None, timeout_s=30)


async def test_a_killed_kernel_is_gone_and_the_next_run_works(sandbox: Sandbox) -> None:
    await run(sandbox, "lost = 1")
    outcome, events = await run(sandbox, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert outcome.status == "gone"
    assert events.text.strip(), "a gone run says why"
    after, events = await run(sandbox, "print('fresh', 'lost' in globals())")
    assert (after.status, events.stdout) == ("ok", "fresh False\n")


@pytest.mark.parametrize("language", sorted(HELLO))
async def test_hello_world(backend: Backend, sandbox: Sandbox, language: str) -> None:
    if language not in backend.languages:
        pytest.skip(f"{backend.name} does not offer {language}")
    outcome, events = await run(sandbox, HELLO[language], language=language, timeout_s=60)
    assert outcome.status == "ok", events.events
    assert events.stdout == "hello, world\n"


# A cell that prints a line and ends with a string value, per language (bash has no value).
PRINT_AND_VALUE = {
    "python": ("print('p{i}'); 'r{i}'", "r{i}"),
    "bash": ("echo p{i}", None),
    "javascript": ("console.log('p{i}'); 'r{i}'", "r{i}"),
    "typescript": ("const s{i}: string = 'r{i}'; console.log('p{i}'); s{i}", "r{i}"),
}
CELLS_EACH = 40


@pytest.mark.parametrize("language", sorted(PRINT_AND_VALUE))
async def test_each_run_ends_with_all_of_its_output_and_its_value_from_the_first_run_on(
    backend: Backend, sandbox: Sandbox, language: str
) -> None:
    # Deno's kernel sends console output and a cell's value on paths of their own, which can reach
    # the client after the cell's idle status (some 1 in 15 cells on an idle machine, more under load).
    if language not in backend.languages:
        pytest.skip(f"{backend.name} does not offer {language}")
    if backend.name == "e2b" and language in ("javascript", "typescript"):
        # E2B's own server ends a run at the kernel's idle status (tests/e2b_server models it), so
        # there Deno's late output is E2B's to lose; the e2b backend relays what it is sent.
        pytest.skip("E2B's code interpreter ends a Deno run at idle")
    code, value = PRINT_AND_VALUE[language]
    for i in range(CELLS_EACH):  # the first in a fresh kernel
        outcome, events = await run(sandbox, code.format(i=i), language=language, timeout_s=60)
        assert outcome.status == "ok", (i, events.events)
        assert events.stdout == f"p{i}\n", (i, events.events)
        # The string as shown (quoted by the kernels; E2B's server strips the quotes).
        results = [r.data.get("text/plain", "").strip("'\"") for r in events.results]
        assert results == ([value.format(i=i)] if value else []), (i, events.events)


async def test_connect_finds_a_live_sandbox_by_id(backend: Backend, sandbox: Sandbox) -> None:
    await run(sandbox, "here = 'yes'")
    again = await backend.connect(sandbox.id)
    outcome, events = await run(again, "print(here)")
    assert (outcome.status, events.stdout) == ("ok", "yes\n")


async def test_connect_to_a_closed_sandbox_raises_gone(backend: Backend) -> None:
    sandbox = await backend.create(owner_id=1, session_id=str(uuid.uuid4()))
    await sandbox.close()
    await sandbox.close()  # idempotent
    with pytest.raises(SandboxGone):
        await backend.connect(sandbox.id)


async def test_health_says_how_code_is_isolated(backend: Backend) -> None:
    health = await backend.health()
    assert health.ok, health.detail
    assert health.isolation and health.isolation != "none"


async def test_files_are_renamed_and_deleted(sandbox: Sandbox) -> None:
    await sandbox.write_file("old/a.txt", b"a")
    await sandbox.write_file("b.txt", b"b")
    with pytest.raises(FileExistsError):
        await sandbox.rename_file("b.txt", "old/a.txt")
    await sandbox.rename_file("old/a.txt", "new.txt")
    listing = {f.name: f for f in await sandbox.list_files(".")}
    assert {"new.txt", "b.txt", "old"} <= set(listing)
    assert abs(listing["new.txt"].modified - time.time()) < 600, "modified is seconds since the epoch"
    assert await sandbox.read_file("new.txt") == b"a"
    await sandbox.delete_file("old")
    await sandbox.delete_file("b.txt")
    assert {"old", "b.txt"}.isdisjoint(f.name for f in await sandbox.list_files("."))
    with pytest.raises(FileNotFoundError):
        await sandbox.delete_file("b.txt")
    with pytest.raises(ValueError):
        await sandbox.delete_file("../outside")
    with pytest.raises(ValueError):
        await sandbox.rename_file("new.txt", "../outside.txt")


async def test_workspace_reaches_a_live_sandboxs_files(backend: Backend, sandbox: Sandbox) -> None:
    session_id = getattr(sandbox, "session_id", "") or str(uuid.uuid4())
    await sandbox.write_file("seen.txt", b"by the backend")
    workspace = await backend.workspace(session_id=session_id, sandbox_id=sandbox.id)
    assert workspace is not None
    assert await workspace.read_file("seen.txt") == b"by the backend"
