"""A real Sandpit server for browser tests, and the page in headless Chromium.

`live_daphne` is the base URL of a Daphne serving project.asgi on the test database, with the
default test settings (`server_env()`); tests that need settings of their own start their own
through `daphnes(**env)` (fixtures_daphne.py). One Daphne subprocess serves a whole module's
browser tests (`shared_daphne`), while the database is still reset per test: `live_daphne`
needs `transactional_db`, so rows the test writes are committed where the server can read them,
and the flush after the test deletes the server's rows as well. Before that flush, the server is
handed back clean: every session's sandbox is restarted over HTTP, as its owner (so no kernel of
one test lives on into the next), and /healthz must then report 0 live sandboxes. When that
fails (a run still going, or the server died), that Daphne is stopped and the next test gets a
new one. Outside browser modules no shared server runs, so its periodic sweeps never touch the
rows of the other tests.

`chromium_browser` is one Chromium process per module; each test gets a fresh context (`page`).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from runner.models import ChatSession
from tests.fixtures_daphne import Daphne, server_env
from tests.fixtures_runs import ALICE_PASSWORD, _cookie_for

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


# How long /healthz may take to report no live sandboxes after the restarts.
CLEAN_WAIT_S = 10.0
LIVE_SANDBOXES_RE = re.compile(r"(\d+) live sandboxes")


class SharedDaphne:
    """One Daphne with the default test settings, started on first use and reused while each test
    hands it back clean (`release`)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.daphne: Daphne | None = None
        self.started = 0  # how many Daphnes this module started (numbers their logs)
        self.log_offset = 0

    def get(self) -> Daphne:
        if self.daphne is not None and self.daphne.proc.poll() is not None:
            self.daphne = None  # it died: start another
        if self.daphne is None:
            self.started += 1
            self.daphne = Daphne(server_env(), self.log_dir / f"daphne-{self.started}.log")
            self.log_offset = 0
        return self.daphne

    def release(self) -> None:
        """Called after each test, before the flush: close every sandbox the server holds, or stop it."""
        daphne = self.daphne
        if daphne is None:
            return
        try:
            clean = daphne.proc.poll() is None and self._restart_sandboxes(daphne)
        except (OSError, http.client.HTTPException):
            clean = False
        self._show_log(daphne)
        if not clean:
            self.stop()

    def stop(self) -> None:
        if self.daphne is not None:
            self.daphne.stop()
            self.daphne = None

    def _restart_sandboxes(self, daphne: Daphne) -> bool:
        cookies: dict[int, bytes] = {}
        for session in ChatSession.objects.select_related("owner").order_by("created_at"):
            if session.owner_id not in cookies:
                cookies[session.owner_id] = _cookie_for(session.owner)
            token = secrets.token_hex(16)  # a CSRF secret of our own, sent as cookie and header
            status, _ = _request(
                daphne.port, "POST", f"/sessions/{session.id}/restart/",
                {"Cookie": f"{cookies[session.owner_id].decode()}; {settings.CSRF_COOKIE_NAME}={token}", "X-CSRFToken": token},
            )
            if status not in (302, 404):  # 409: a run is still going; 404: the owner deleted it
                return False
        deadline_s = time.monotonic() + CLEAN_WAIT_S
        while True:
            _, body = _request(daphne.port, "GET", "/healthz", {})
            live = LIVE_SANDBOXES_RE.search(str(json.loads(body).get("detail", "")))
            if live is not None and live.group(1) == "0":
                return True
            if time.monotonic() > deadline_s:
                return False
            time.sleep(0.1)

    def _show_log(self, daphne: Daphne) -> None:
        if not os.environ.get("SANDPIT_SHOW_SERVER_LOG"):
            return
        with open(daphne.log_path, "rb") as log:
            log.seek(self.log_offset)
            sys.stderr.write(log.read().decode(errors="replace"))
            self.log_offset = log.tell()


def _request(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def shared_daphne(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedDaphne]:
    shared = SharedDaphne(tmp_path_factory.mktemp("daphne"))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def live_daphne(transactional_db: None, shared_daphne: SharedDaphne) -> Iterator[str]:
    """The base URL (http://127.0.0.1:<port>) of the module's Daphne, handed back clean after the test."""
    daphne = shared_daphne.get()
    try:
        yield f"http://127.0.0.1:{daphne.port}"
    finally:
        shared_daphne.release()


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


def log_in(page: Any) -> None:
    """Log in as alice through the login form."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def log_in_and_start_session(page: Any) -> None:
    """Log in as alice and start a session from the sidebar; returns once its socket is open."""
    log_in(page)
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
