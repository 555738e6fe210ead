"""Fault drill: Redis (a private one, tests/fixtures_drills.py) killed mid-stream and across a
run's end, with the page open. The run goes on (publishing is best effort, everything is stored
first), the page says "Reconnecting…" while Redis is down, then recovers every chunk once through
replay, and new runs work.
"""

from __future__ import annotations

import pytest

from tests.fixtures_drills import private_redis  # noqa: F401  (fixture)
from tests.fixtures_browser import RUN_TIMEOUT_MS, log_in_and_start_session, run, wait_connected, wait_finished

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

STREAM_LINES = 60
STREAM = f"import time\nfor i in range({STREAM_LINES}):\n    print(i, flush=True)\n    time.sleep(0.1)"


def _wait_for_text(turn, text: str, timeout_s: float = 30) -> None:
    """Wait until the turn's output holds `text`."""
    turn.locator("pre.stream").wait_for()
    turn.page.wait_for_function("([el, text]) => el.textContent.includes(text)", arg=[turn.locator("pre.stream").element_handle(), text], timeout=timeout_s * 1000)


@pytest.mark.browser
def test_redis_restarted_mid_stream_the_run_goes_on_and_the_page_recovers_every_chunk(
    chromium_browser, daphnes, private_redis, alice
) -> None:
    server = daphnes(REDIS_URL=private_redis.url, CHANNEL_PREFIX="drill")
    context = chromium_browser.new_context(base_url=f"http://127.0.0.1:{server.port}")
    context.set_default_timeout(RUN_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in_and_start_session(page)

        turn = run(page, STREAM, wait=False)
        _wait_for_text(turn, "5\n")
        private_redis.stop()
        # While Redis is down the page says so.
        page.wait_for_function("() => document.body.dataset.socket === 'closed'", timeout=15_000)
        assert page.locator("#toast").is_visible()
        page.wait_for_timeout(1500)
        private_redis.start()

        wait_finished(turn)
        wait_connected(page)
        assert not page.locator("#toast").is_visible()
        assert turn.locator("pre.stream").inner_text() == "".join(f"{i}\n" for i in range(STREAM_LINES))
        assert turn.locator(".status-text").inner_text().startswith("✓")
        after = run(page, "print('after')")
        assert after.locator(".output").inner_text().strip() == "after"

        # Down across a run's end: the end is stored, and shown once Redis is back.
        short = run(page, "import time\nfor i in range(20):\n    print(i, flush=True)\n    time.sleep(0.05)", wait=False)
        _wait_for_text(short, "3\n")
        private_redis.stop()
        page.wait_for_function("() => document.body.dataset.socket === 'closed'", timeout=15_000)
        page.wait_for_timeout(2500)  # the run ends meanwhile
        private_redis.start()
        wait_finished(short)
        assert short.locator("pre.stream").inner_text() == "".join(f"{i}\n" for i in range(20))
        assert short.locator(".status-text").inner_text().startswith("✓")
        assert errors == []
    finally:
        context.close()
