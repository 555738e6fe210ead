"""Issue 20, section 5, items 5, 7 and 8, in headless Chromium against a real Daphne: the page's
status and titles use its own SVG icons (no emoji font needed), a new API session appears in an
open sidebar, and the API keys page (Copy buttons, a working example, expiry dates)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from runner.models import ApiKey, ApiSandbox
from tests.fixtures_browser import log_in, log_in_and_start_session, run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

JS_DIR = Path(__file__).resolve().parent / "js"


def _create_key(page: Any, name: str, expires_on: str = "") -> str:
    page.goto("/account/keys/")
    page.fill("#key-name", name)
    if expires_on:
        page.fill("#key-expires", expires_on)
    page.click("button:has-text('Create a key')")
    return page.locator("#new-key").inner_text().strip()


def _exports(text: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in text.strip().splitlines())
    return {name: value for name, value in pairs}


def test_keys_page_copies_the_key_and_the_export_lines(page: Any, live_daphne: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_daphne)
    log_in(page)
    key = _create_key(page, "laptop")
    assert key.startswith("e2b_")
    page.click("button[aria-label='Copy the key']")
    page.wait_for_selector("button[aria-label='Copy the key']:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.click("button[aria-label='Copy the export lines']")
    page.wait_for_selector("button[aria-label='Copy the export lines']:has-text('Copied')")
    assert _exports(page.evaluate("navigator.clipboard.readText()")) == {
        "E2B_API_URL": live_daphne, "E2B_SANDBOX_URL": live_daphne, "E2B_API_KEY": key,
    }
    # What the key can and cannot do is said on the page.
    assert page.locator("h2:has-text('What a key can do')").is_visible()
    assert page.locator("h2:has-text('What a key cannot do')").is_visible()
    assert page.errors == []


def test_keys_page_python_example_runs_as_shown_with_the_copied_exports(page: Any, live_daphne: str, tmp_path: Path) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_daphne)
    log_in(page)
    _create_key(page, "example")
    page.click("button[aria-label='Copy the export lines']")
    page.wait_for_selector("button[aria-label='Copy the export lines']:has-text('Copied')")
    exports = _exports(page.evaluate("navigator.clipboard.readText()"))
    page.click("button[aria-label='Copy the Python example']")
    page.wait_for_selector("button[aria-label='Copy the Python example']:has-text('Copied')")
    example = page.evaluate("navigator.clipboard.readText()").splitlines()
    assert example[0] == "pip install e2b-code-interpreter" and len(example) == 5
    assert "Sandbox.create()" in example[2] and "run_code" in example[3]
    script = tmp_path / "example.py"
    script.write_text("\n".join(example[1:]) + "\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **exports}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "45"


@pytest.mark.skipif(not (JS_DIR / "node_modules" / "@e2b" / "code-interpreter").is_dir(), reason="the JS SDK is not installed (tests/js)")
def test_keys_page_javascript_example_runs_as_shown(page: Any, live_daphne: str) -> None:
    log_in(page)
    _create_key(page, "node")
    exports = _exports(page.locator("#key-env").inner_text())
    example = page.locator("#example-js").inner_text().splitlines()
    assert example[0] == "npm install @e2b/code-interpreter"
    script = JS_DIR / f"keys-page-example-{os.getpid()}.mjs"  # beside tests/js/node_modules, where node finds the SDK
    script.write_text("\n".join(example[1:]) + "\n")
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(JS_DIR), **exports}
        done = subprocess.run(["node", script.name], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120)
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "45"


def test_keys_page_sets_an_expiry_date_and_marks_the_key_expired_after_it(page: Any, live_daphne: str) -> None:
    log_in(page)
    in_a_week = timezone.localdate() + timedelta(days=7)
    _create_key(page, "week", expires_on=in_a_week.isoformat())
    row = ApiKey.objects.get(name="week")
    assert row.expires_at is not None and timezone.localtime(row.expires_at).date() == in_a_week + timedelta(days=1)
    assert page.locator("table.keys tr:has-text('week') td").nth(4).inner_text().startswith(
        timezone.localtime(row.expires_at).strftime("%Y-%m-%d")
    )
    ApiKey.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    page.goto("/account/keys/")
    assert "expired" in page.locator("table.keys tr:has-text('week')").inner_text()
    assert page.errors == []


def test_a_new_api_session_appears_in_the_open_sidebar_without_a_reload(page: Any, live_daphne: str, alice: Any) -> None:
    from e2b_code_interpreter import Sandbox

    from runner import services

    log_in_and_start_session(page)
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    _row, key = services.api_key_create(owner=alice, name="sidebar")
    sandbox = Sandbox.create(api_key=key, api_url=live_daphne, sandbox_url=live_daphne, metadata={"title": "made by my script"})
    try:
        entry = page.locator("#session-list li:has-text('made by my script')")
        entry.wait_for(timeout=15_000)  # the sidebar's activity poll (every 5 s) adds it
        assert entry.locator(".badge.kind-api").inner_text() == "API"
        assert entry.locator(".badge.lang-python").is_visible()
        assert page.evaluate("window.sameDocument") is True
        # It is the newest, so it comes first, and it leads to the session.
        assert "made by my script" in page.locator("#session-list li").first.inner_text()
        href = entry.locator("a").get_attribute("href")
        assert href == f"/sessions/{ApiSandbox.objects.get(sandbox_id=sandbox.sandbox_id).session_id}/"
        assert page.errors == []
    finally:
        sandbox.kill()


# Characters any system font has; anything else a status line paints could be an empty box.
PAINTED_TEXT_OK = r"[\x20-\x7e\s·…–—‘’“”]"

PAINTED_ODD_CHARACTERS = """(selector) => {
  const odd = [];
  for (const root of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const parent = node.parentElement;
      if (parent.closest('.visually-hidden, [hidden]') || parseFloat(getComputedStyle(parent).fontSize) === 0) continue;
      for (const ch of node.textContent) if (!new RegExp('""" + PAINTED_TEXT_OK.replace("\\", "\\\\") + """').test(ch)) odd.push(ch);
    }
  }
  return odd;
}"""

DRAWN_BY_SVG = """(icons) => icons.map((icon) => {
  const style = getComputedStyle(icon);
  const mask = style.maskImage || style.webkitMaskImage || '';
  const box = icon.getBoundingClientRect();
  return mask.includes('image/svg+xml') && box.width > 0 && box.height > 0;
})"""


def test_status_lines_and_folders_are_drawn_with_the_pages_svg_icons_not_font_glyphs(page: Any, alice: Any) -> None:
    from runner.models import ChatSession, Execution

    log_in_and_start_session(page)
    session = ChatSession.objects.get(owner=alice)
    finished = [("succeeded", "", 120), ("failed", "ZeroDivisionError", 5), ("timed_out", "", 60_000),
                ("cancelled", "", 5), ("interrupted", "", 5), ("killed", "", 5), ("rejected", "QuotaExceeded", 0)]
    for seq, (status, ename, ms) in enumerate(finished, start=1):
        Execution.objects.create(session=session, seq=seq, code=f"# {status}", language="python", user=alice,
                                 status=status, error_name=ename, duration_ms=ms, finished_at=timezone.now())
    page.reload()
    turns = page.locator("#turns > li.turn")
    turns.nth(len(finished) - 1).wait_for()
    # Live runs too: the page's own status lines (JS), an error, a success, and a folder.
    failed = run(page, "1/0")
    done = run(page, "import os\nos.makedirs('data', exist_ok=True)\nprint('ok')")
    assert failed.locator(".status-line.err .status-icon.icon-err").count() == 1
    assert done.locator(".status-line.ok .status-icon.icon-ok").count() == 1
    # The symbol stays in the text (copying the line gives "✓ 0.12 s"), but no font draws it.
    assert done.locator(".status-text").inner_text().startswith("✓")
    for icon in ("ok", "err", "timeout", "stopped", "warn"):
        assert page.locator(f".status-line .status-icon.icon-{icon}").count() >= 1, icon
    assert page.evaluate(PAINTED_ODD_CHARACTERS, ".status-line") == []
    assert all(page.locator(".status-line .status-icon").evaluate_all(DRAWN_BY_SVG))

    page.get_by_role("button", name="Files").click()
    folder = page.locator('#files-list tr[data-name="data"]')
    folder.wait_for()
    assert page.evaluate(PAINTED_ODD_CHARACTERS, "#files-list .files-name") == []
    assert all(folder.locator(".file-icon.icon-folder").evaluate_all(DRAWN_BY_SVG))
    assert folder.get_by_role("button", name="data", exact=True).count() == 1
    assert page.errors == []
