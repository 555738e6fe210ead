"""Python kernels forked from the template (SANDBOX_KERNEL_FORK=on): real template, real kernels.

The isolation suite (tests/test_local_isolation.py) runs against forked kernels with
SANDBOX_KERNEL_FORK=on in the environment; these tests add what only forking can get wrong.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from django.conf import settings

from runner.sandboxes.base import Sandbox
from runner.sandboxes.local import LocalBackend, processes
from runner.sandboxes.local.forkserver import ForkedProcess
from tests.fixtures_sandboxes import local_backend_or_skip, run

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]


@pytest.fixture(scope="module", autouse=True)
def forking() -> Iterator[None]:
    before = settings.SANDBOX_KERNEL_FORK
    settings.SANDBOX_KERNEL_FORK = "on"
    yield
    settings.SANDBOX_KERNEL_FORK = before


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local(forking: None) -> LocalBackend:
    backend = local_backend_or_skip()
    if not (backend.isolation.as_root and backend.isolation.cgroup_version):  # type: ignore[attr-defined]
        pytest.skip("forking kernels needs a root server with cgroups")
    return backend  # type: ignore[return-value]


@pytest_asyncio.fixture(loop_scope="module")
async def two(local: LocalBackend) -> AsyncIterator[tuple[Sandbox, Sandbox]]:
    a = await local.create(owner_id=1, session_id=str(uuid.uuid4()))
    b = await local.create(owner_id=2, session_id=str(uuid.uuid4()))
    yield a, b
    await a.close()
    await b.close()


async def says(sandbox: Sandbox, code: str) -> str:
    outcome, events = await run(sandbox, code)
    assert outcome.status == "ok", events.events
    return events.stdout.strip()


def template_python(local: LocalBackend) -> int:
    """The pid of the template's own Python process: the one named so whose parent is its bwrap
    (each forked kernel's processes carry the name too, under the template)."""
    template = local.forkserver()._template
    assert template is not None and template.alive()
    tree = processes.process_tree(template.pid)
    comms = dict(tree)
    found = [pid for pid, comm in tree if comm == "sandpit-zygote" and comms.get(_ppid(pid), "bwrap") == "bwrap"]
    assert len(found) == 1, tree
    return found[0]


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def test_a_python_kernel_is_forked_and_health_says_so(local: LocalBackend, two: tuple[Sandbox, Sandbox]) -> None:
    a, _ = two
    assert await says(a, "print(1)") == "1"
    kernel = a.kernels[next(iter(a.kernels))]  # type: ignore[attr-defined]
    assert isinstance(kernel.proc, ForkedProcess)
    assert kernel.proc.pid in a.cgroup.pids()  # type: ignore[attr-defined]
    assert "Python kernels: forked from a template" in (await local.health()).detail
    settings.SANDBOX_KERNEL_FORK = "off"
    try:
        assert "Python kernels: started afresh (SANDBOX_KERNEL_FORK=off)" in (await local.health()).detail
    finally:
        settings.SANDBOX_KERNEL_FORK = "on"


async def test_two_forked_sandboxes_draw_different_random_numbers(two: tuple[Sandbox, Sandbox]) -> None:
    code = "import random, numpy\nprint(random.random(), numpy.random.random(), numpy.random.randint(1 << 30))"
    a, b = two
    first, second = await says(a, code), await says(b, code)
    assert len(first.split()) == 3
    assert set(first.split()).isdisjoint(second.split()), (first, second)


async def test_two_forked_sandboxes_cannot_reach_each_other_over_loopback(two: tuple[Sandbox, Sandbox]) -> None:
    a, b = two
    port = await says(a, "import socket\nsrv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
                         "print(srv.getsockname()[1])")
    probe = ("import socket\ntry:\n"
             f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('connected')\n"
             "except OSError as exc:\n    print('refused')\n")
    assert await says(a, probe) == "connected"  # not vacuous: it listens
    assert await says(b, probe) == "refused"


async def test_a_forked_sandbox_cannot_see_anothers_processes_files_or_memory(two: tuple[Sandbox, Sandbox]) -> None:
    a, b = two
    token = secrets.token_hex(8)
    await says(a, "import subprocess\n"
                  f"open('/tmp/{token}', 'w').write('x'); open('/dev/shm/{token}', 'w').write('x')\n"
                  f"p = subprocess.Popen(['sleep', '3600', '{token}'][:2]); open('/tmp/pid', 'w').write(str(p.pid))\n"
                  f"import os; os.environ['T'] = '{token}'; buf = b'{token}' * 1000\nprint('ok')")
    seen = await says(b, (
        "import os\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "cmds = [open(f'/proc/{p}/cmdline', 'rb').read() for p in pids]\n"
        "print(len(pids), any(b'sleep' in c for c in cmds))\n"
        f"print(os.path.exists('/tmp/{token}'), os.path.exists('/dev/shm/{token}'), os.listdir('/dev/shm'))\n"
        f"print(any(b'{token}' in open(f'/proc/{{p}}/environ', 'rb').read() for p in pids))\n"
    ))
    count, sleeping, tmp, shm, listing, env = seen.split()
    assert sleeping == "False" and tmp == "False" and shm == "False" and listing == "[]" and env == "False", seen
    assert int(count) <= 4, seen  # its own pid 1 and kernel (and the cell's children): nothing of a's
    # Not vacuous: a sees its own.
    assert (await says(a, f"import os; print(os.path.exists('/dev/shm/{token}'))")) == "True"


async def test_the_template_killed_mid_fork_the_start_is_retried_and_nothing_is_left(local: LocalBackend) -> None:
    warm = local._new_sandbox()  # not create(): a sandbox from the warm pool has its kernel already
    try:
        assert await says(warm, "print(1)") == "1"  # the template is up
    finally:
        await warm.close()
    old = local.forkserver()._template
    assert old is not None
    zygote = template_python(local)
    os.kill(zygote, signal.SIGSTOP)  # the request waits in its socket...
    sandbox = local._new_sandbox()
    try:
        started = asyncio.ensure_future(says(sandbox, "print(2)"))
        await asyncio.sleep(0.5)
        assert not started.done()
        os.kill(zygote, signal.SIGKILL)  # ...and the template dies before it forks
        assert await asyncio.wait_for(started, 120) == "2"
        new = local.forkserver()._template
        assert new is not None and new is not old and new.pid != old.pid
        deadline = time.monotonic() + 10
        while old.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert old.popen.poll() is not None  # its bwrap is gone and reaped: nothing left of it
        assert not Path(f"/proc/{zygote}").exists()
        assert len(sandbox.cgroup.pids()) == 3  # type: ignore[attr-defined]  # one kernel's three processes
    finally:
        await sandbox.close()


async def test_the_template_is_replaced_when_the_kernels_venv_changes(local: LocalBackend) -> None:
    sandbox = local._new_sandbox()
    try:
        assert await says(sandbox, "print(1)") == "1"
        before = local.forkserver()._template
        assert before is not None
        bin_dir = Path(settings.SANDBOX_KERNEL_ENV) / "bin"
        info = os.stat(bin_dir)
        os.utime(bin_dir, ns=(info.st_atime_ns, info.st_mtime_ns + 1))  # as bin/setup adding a script would
        try:
            await sandbox.restart_language("python")
            assert await says(sandbox, "print(2)") == "2"
            after = local.forkserver()._template
            assert after is not None and after is not before
        finally:
            os.utime(bin_dir, ns=(info.st_atime_ns, info.st_mtime_ns))
        deadline = time.monotonic() + 10
        while before.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert before.popen.poll() is not None  # retired once its last kernel ended
    finally:
        await sandbox.close()
