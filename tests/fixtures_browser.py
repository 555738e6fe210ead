"""A real Sandpit server for browser tests: Daphne in a subprocess, on a free port, on the test database.

`live_daphne` needs `transactional_db` so that rows the test writes are committed where the server
process can read them, and so the server's writes are cleaned up afterwards. The server is stopped
before the database is flushed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_daphne import Daphne, server_env
from tests.fixtures_runs import ALICE_PASSWORD

# alice's password (tests/fixtures_runs.py), typed into the login form.
PASSWORD = ALICE_PASSWORD
RUN_TIMEOUT_MS = 60_000
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


@pytest.fixture
def page(chromium_browser: Any, live_daphne: str, alice: Any) -> Iterator[Any]:
    """A page in a fresh browser context on `live_daphne`, with alice in the database (not logged in).
    `page.errors` collects uncaught page errors, so a broken script fails the test that caused it."""
    context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(RUN_TIMEOUT_MS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


def log_in_and_start_session(page: Any) -> None:
    """Log in as alice and start a session from the sidebar; returns once its socket is open."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Start a session").click()
    page.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}/$"))
    wait_connected(page)


def wait_connected(page: Any) -> None:
    """Wait until the page's socket is open (the composer is usable and no toast shows)."""
    page.wait_for_function("() => document.body.dataset.socket === 'open'")


def run(page: Any, code: str, *, wait: bool = True) -> Any:
    """Type `code` into the composer, Shift+Enter, and return the new turn (after it finishes if `wait`)."""
    before = page.locator("#turns > li.turn").count()
    composer = page.get_by_label("Code to run")
    composer.fill(code)
    composer.press("Shift+Enter")
    turn = page.locator("#turns > li.turn").nth(before)
    turn.wait_for()
    if wait:
        wait_finished(turn)
    return turn


def wait_finished(turn: Any) -> None:
    turn.locator(".status-line.ok, .status-line.err, .status-line.warn, .status-line.muted").wait_for(timeout=RUN_TIMEOUT_MS)
