"""The page while a run waits for its sandbox (issue 18): "Starting your sandbox · N s" on the run and
the chip, its own state distinct from "running", replaced by the output when the run starts."""

from __future__ import annotations

import re

import pytest

from tests.fixtures_browser import PASSWORD, RUN_TIMEOUT_MS, log_in_and_start_session, run, wait_connected, wait_finished  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@pytest.fixture
def full_server(daphnes) -> str:
    """A server with room for one live sandbox and no warm pool, so a second session's run must wait."""
    server = daphnes(SANDBOX_MAX_LIVE="1", SANDBOX_POOL_SIZE="0", QUOTA_LIVE_SANDBOXES="0", SANDBOX_QUEUE_WAIT_S="120")
    return f"http://127.0.0.1:{server.port}"


def test_a_run_waiting_for_room_shows_starting_then_its_output(chromium_browser, full_server, alice) -> None:  # noqa: F811
    context = chromium_browser.new_context(base_url=full_server, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(RUN_TIMEOUT_MS)
    errors: list[str] = []
    try:
        first = context.new_page()
        first.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in_and_start_session(first)
        # The one slot runs code for a few seconds.
        busy = run(first, "import time\nprint('busy', flush=True)\ntime.sleep(8)\nprint('done')", wait=False)
        busy.locator(".output pre.stream").filter(has_text="busy").wait_for()

        second = context.new_page()
        second.on("pageerror", lambda exc: errors.append(str(exc)))
        second.goto(first.url)
        second.locator("#new-session").click()
        second.wait_for_url(lambda url: re.search(r"/sessions/[0-9a-f-]{36}/$", url) is not None and url != first.url)
        wait_connected(second)
        waiting = run(second, "print('my turn')", wait=False)
        status = waiting.locator(".status-line.starting .status-text")
        status.wait_for()
        assert re.fullmatch(r"Starting your sandbox · \d+ s", status.inner_text()), status.inner_text()
        assert second.locator("#sandbox-state").get_attribute("data-state") == "starting"
        assert waiting.locator(".status-line.running").count() == 0  # not "running" while it waits
        # The clock ticks while it waits.
        second.wait_for_function(
            "(el) => /· [1-9]\\d* s$/.test(el.textContent)", arg=status.element_handle(), timeout=RUN_TIMEOUT_MS
        )

        wait_finished(waiting)  # the busy run ends, its idle sandbox is reclaimed, this one runs
        assert waiting.locator(".output pre.stream").inner_text() == "my turn\n"
        assert waiting.locator(".status-line.starting").count() == 0
        assert waiting.locator(".status-text").inner_text().startswith("✓")
        assert second.locator("#sandbox-state").get_attribute("data-state") == "ready"
        wait_finished(busy)
        assert "done" in busy.locator(".output").inner_text()
        assert errors == []
    finally:
        context.close()
