"""The E2B API's kernels beyond the page's (issue 21's gaps), with the real `e2b-code-interpreter`
SDK against a real Daphne and real kernels: R (IRkernel), each code context its own kernel, a
context's cwd anywhere in the sandbox, and a run cut short by its sandbox's kill."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from e2b_code_interpreter import Sandbox

from runner.sandboxes.local.kernel import r_available
from tests.fixtures_daphne import Daphne
from tests.test_e2b_api import key_for

pytestmark = pytest.mark.django_db(transaction=True)

needs_r = pytest.mark.skipif(not r_available(), reason="R and IRkernel are not installed (bin/setup installs them)")


@pytest.fixture
def sandpit(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    yield url


@needs_r
def test_r_runs_with_create_and_per_run_envs_and_the_home_cwd(sandpit: str) -> None:
    sandbox = Sandbox.create(envs={"GREETING": "hello from create", "KEPT": "k"})
    try:
        execution = sandbox.run_code('print("Hello, World!")', language="r")
        assert execution.error is None, execution.error
        assert execution.logs.stdout == ['[1] "Hello, World!"\n']
        assert sandbox.run_code("getwd()", language="R").results[0].text.strip() == '[1] "/home/user"'
        assert sandbox.run_code("Sys.getenv('GREETING')", language="r").results[0].text.strip() == '[1] "hello from create"'
        # A run's envs apply to that run only, then what was there before is back (set or unset).
        run = sandbox.run_code("cat(Sys.getenv('GREETING'), Sys.getenv('ONLY_NOW'), sep = '|')", language="r",
                               envs={"GREETING": "overwritten", "ONLY_NOW": "a \"quoted\" é\nline"})
        assert run.logs.stdout == ['overwritten|a "quoted" é\nline']
        after = sandbox.run_code("cat(Sys.getenv('GREETING'), Sys.getenv('ONLY_NOW', unset = 'default'), Sys.getenv('KEPT'), sep = '|')",
                                 language="r")
        assert after.logs.stdout == ["hello from create|default|k"]
        # Variables persist between runs, errors come back as E2B errors.
        sandbox.run_code("x <- 41", language="r")
        assert sandbox.run_code("x + 1", language="r").results[0].text.strip() == "[1] 42"
        failed = sandbox.run_code('stop("boom")', language="r")
        assert failed.error is not None and "boom" in failed.error.value
    finally:
        sandbox.kill()


@needs_r
def test_r_has_no_network_and_sees_no_host_files(sandpit: str) -> None:
    sandbox = Sandbox.create()
    try:
        # /root is the sandbox's own, empty.
        code = ('c(file.exists("/work"), length(list.files("/root", all.files = TRUE, no.. = TRUE)) > 0, '
                'inherits(try(url("http://127.0.0.1:1/", open = "r"), silent = TRUE), "try-error"))')
        assert sandbox.run_code(code, language="r").results[0].text.strip() == "[1] FALSE FALSE  TRUE"
    finally:
        sandbox.kill()


def test_a_sandbox_killed_mid_run_code_raises_the_sdks_killed_timeout(sandpit: str) -> None:
    from e2b import TimeoutException

    sandbox = Sandbox.create()
    timer = threading.Timer(2.0, sandbox.kill)
    timer.start()
    try:
        with pytest.raises(TimeoutException, match="sandbox was killed while the request was in progress"):
            sandbox.run_code("import time; print('started', flush=True); time.sleep(300)", timeout=300)
        timer.join(30)  # the kill's own request ends after the stream is cut
        assert not sandbox.is_running()
    finally:
        timer.cancel()


def test_each_code_context_is_a_kernel_of_its_own_up_to_the_limit(daphnes: Callable[..., Daphne],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from e2b import SandboxException

    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="",
                     RUN_TIMEOUT_S="30", SANDBOX_KERNELS_MAX="4")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    _user, key = key_for("alice")
    monkeypatch.setenv("E2B_API_KEY", key)
    sandbox = Sandbox.create(envs={"FROM_CREATE": "yes"})
    try:
        context = sandbox.create_code_context()
        sandbox.run_code("x = 1")
        isolated = sandbox.run_code("x", context=context)
        assert isolated.error is not None and isolated.error.value == "name 'x' is not defined"
        sandbox.run_code("x = 2", context=context)
        assert sandbox.run_code("x").text == "1"
        assert sandbox.run_code("x", context=context).text == "2"
        # Create-time envs reach the context's kernel too; a run's envs stay in that run.
        assert sandbox.run_code("import os; os.environ['FROM_CREATE']", context=context).text == "yes"
        assert sandbox.run_code("os.getenv('ONCE')", context=context, envs={"ONCE": "1"}).text == "1"
        assert sandbox.run_code("os.getenv('ONCE', 'gone')", context=context).text == "gone"
        # Restarting a context restarts its kernel only.
        sandbox.restart_code_context(context)
        assert sandbox.run_code("x", context=context).error is not None
        assert sandbox.run_code("x").text == "1"
        # The default python and javascript contexts, this one, and one more: then the limit (4).
        sandbox.create_code_context()
        with pytest.raises(SandboxException, match="400 Bad Request: a sandbox has at most 4 code contexts"):
            sandbox.create_code_context()
        sandbox.remove_code_context(context)  # its kernel stops, and its place is free again
        third = sandbox.create_code_context(language="bash")
        assert sandbox.run_code("echo $FROM_CREATE", context=third).logs.stdout == ["yes\n"]
    finally:
        sandbox.kill()


def test_a_context_cwd_may_be_any_folder_in_the_sandbox_made_if_missing(sandpit: str) -> None:
    sandbox = Sandbox.create()
    try:
        root = sandbox.create_code_context(language="python", cwd="/root")
        assert sandbox.list_code_contexts()[-1].cwd == "/root"
        assert sandbox.run_code("import os; os.getcwd()", context=root).text == "/root"
        made = sandbox.create_code_context(language="bash", cwd="/tmp/a/../made/here")
        assert made.cwd == "/tmp/made/here"
        assert sandbox.run_code("pwd", context=made).logs.stdout == ["/tmp/made/here\n"]
        js = sandbox.create_code_context(language="js", cwd="/home/user/sub")
        assert sandbox.run_code("Deno.cwd()", context=js).text == "/home/user/sub"
        # The default context keeps /home/user; nothing of the host is there to change to.
        assert sandbox.run_code("import os; os.getcwd()").text == "/home/user"
        host = sandbox.create_code_context(language="python", cwd="/work/wt")
        failed = sandbox.run_code("1", context=host)
        assert failed.error is not None and "Read-only file system" in failed.error.value
    finally:
        sandbox.kill()


BOX_PLOT = """
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.set_title('Exam Scores Distribution')
ax.set_xlabel('Class')
ax.set_ylabel('Score')
ax.boxplot([[85, 90, 78, 92, 88], [75, 82, 88, 79, 86]], labels=['Class A', 'Class C'], patch_artist=True)
plt.show()
"""


def test_a_box_plot_drawn_as_e2bs_examples_draw_it_is_a_box_and_whisker_chart(sandpit: str) -> None:
    from e2b_code_interpreter.charts import BoxAndWhiskerChart

    sandbox = Sandbox.create()
    try:
        execution = sandbox.run_code(BOX_PLOT)
        assert execution.error is None, execution.error  # boxplot(labels=...): matplotlib < 3.11
        chart = execution.results[0].chart
        assert isinstance(chart, BoxAndWhiskerChart) and chart.title == "Exam Scores Distribution"
        assert [(e.label, e.median) for e in chart.elements] == [("Class A", 88.0), ("Class C", 82.0)]
    finally:
        sandbox.kill()


@needs_r
def test_an_r_run_past_the_sdks_timeout_is_interrupted_and_its_variables_kept(sandpit: str) -> None:
    from e2b import TimeoutException

    sandbox = Sandbox.create()
    try:
        sandbox.run_code("kept <- 7", language="r")
        with pytest.raises(TimeoutException):
            sandbox.run_code("Sys.sleep(60)", language="r", timeout=2)
        assert sandbox.run_code("kept * 6", language="r").results[0].text.strip() == "[1] 42"
    finally:
        sandbox.kill()
