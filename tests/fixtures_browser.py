"""A real Sandpit server for browser tests: Daphne in a subprocess, on a free port, on the test database.

`live_daphne` needs `transactional_db` so that rows the test writes are committed where the server
process can read them, and so the server's writes are cleaned up afterwards. The server is stopped
before the database is flushed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_daphne import Daphne, server_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
]


@pytest.fixture
def live_daphne(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """The base URL (http://127.0.0.1:<port>) of a Daphne serving project.asgi on the test database."""
    daphne = Daphne(server_env(), tmp_path / "daphne.log")
    try:
        yield f"http://127.0.0.1:{daphne.port}"
    finally:
        daphne.stop()
        if os.environ.get("SANDPIT_SHOW_SERVER_LOG"):
            sys.stderr.write(daphne.log_path.read_text())


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no downloaded browser).

    Module-scoped on purpose: Playwright's sync API keeps an event loop running in this thread while
    it is open, which would break the asyncio tests of modules that run after the browser tests.
    """
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is not installed (bin/setup --test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # on CI the browser tests must run, never quietly skip
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # While that loop runs, Django refuses sync ORM calls unless told they are safe (they are: one thread).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
