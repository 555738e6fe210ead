"""A real Sandpit server for browser tests: Daphne in a subprocess, on a free port, on the test database.

`live_daphne` needs `transactional_db` so that rows the test writes are committed where the server
process can read them, and so the server's writes are cleaned up afterwards. The server is stopped
before the database is flushed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _database_url() -> str:
    """The URL of the database pytest-django made for this test process, for the server to share."""
    from django.db import connection

    d = connection.settings_dict
    if d["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{d['NAME']}"
    auth = quote(d.get("USER") or "", safe="")
    if d.get("PASSWORD"):
        auth += ":" + quote(d["PASSWORD"], safe="")
    host = d.get("HOST") or "127.0.0.1"
    port = f":{d['PORT']}" if d.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{d['NAME']}"


@pytest.fixture
def live_daphne(transactional_db, tmp_path: Path) -> Iterator[str]:
    """The base URL (http://127.0.0.1:<port>) of a Daphne serving project.asgi on the test database."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_CURRENT_TEST")}
    env.update({"DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "daphne.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "--websocket-max-message-size", "1048576", "project.asgi:application"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=5)
                break
            except urllib.error.HTTPError:
                break  # 503 (degraded) still means the server is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start:\n{log_path.read_text()[-4000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("SANDPIT_SHOW_SERVER_LOG"):
            sys.stderr.write(log_path.read_text())


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no downloaded browser).

    Module-scoped on purpose: Playwright's sync API keeps an event loop running in this thread while
    it is open, which would break the asyncio tests of modules that run after the browser tests.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (bin/setup --test installs it)")
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
