"""The browser tests' shared Daphne (tests/fixtures_browser.py): reused from test to test, handed
back with no live sandbox, and replaced when it can't be (a run still going)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.fixtures_browser import LIVE_SANDBOXES_RE, SharedDaphne, log_in, log_in_and_start_session, run, wait_connected

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def _live_sandboxes(port: int) -> int:
    """How many live sandboxes the server's /healthz reports (its detail names the cap in words)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=20) as response:
        detail = json.loads(response.read())["detail"]
    match = LIVE_SANDBOXES_RE.search(detail)
    assert match is not None, detail
    return int(match.group(1))


def test_the_shared_daphne_is_reused_clean_and_replaced_when_a_run_is_still_going(
    chromium_browser, shared_daphne: SharedDaphne, alice
) -> None:
    first = shared_daphne.get()
    context = chromium_browser.new_context(base_url=f"http://127.0.0.1:{first.port}")
    page = context.new_page()
    log_in_and_start_session(page)
    session_path = page.url.removeprefix(f"http://127.0.0.1:{first.port}")
    run(page, "x = 1")
    assert _live_sandboxes(first.port) == 1
    context.close()

    shared_daphne.release()  # as after a test: the session's sandbox is restarted, the server kept
    assert shared_daphne.get() is first and first.proc.poll() is None
    assert _live_sandboxes(first.port) == 0

    context = chromium_browser.new_context(base_url=f"http://127.0.0.1:{first.port}")
    page = context.new_page()
    log_in(page)
    page.goto(session_path)
    wait_connected(page)
    spinning = run(page, "while True: pass", wait=False)
    spinning.locator(".status-line.running").wait_for()
    context.close()  # the run goes on without a page

    shared_daphne.release()  # its sandbox can't be restarted (409): that server is stopped
    assert first.proc.poll() is not None and shared_daphne.daphne is None
    second = shared_daphne.get()
    assert second is not first and _live_sandboxes(second.port) == 0
