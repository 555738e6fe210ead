"""The page's defects a new user hit (issue 20, section 5, items 1-4), in headless Chromium against a
real Daphne and real kernels: oversized code, uploads that are too big or badly named, the output
cap's head and tail, and search.
"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from runner.models import ChatSession, Execution, OutputChunk
from tests.fixtures_browser import log_in, log_in_and_start_session, run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def session_id_of(page) -> str:
    return re.search(r"/sessions/([0-9a-f-]{36})/", page.url).group(1)


def test_a_megabyte_paste_says_the_limit_keeps_the_code_and_the_socket(page) -> None:
    log_in_and_start_session(page)
    page.evaluate("() => { window.socketCloses = 0; }")
    page.evaluate("() => { const c = document.body; new MutationObserver(() => { if (c.dataset.socket === 'closed') window.socketCloses += 1; })"
                  ".observe(c, {attributes: true, attributeFilter: ['data-socket']}); }")
    code = "s = '" + "a" * 1_200_000 + "'\nprint(len(s))"  # 1.2 MB: over Daphne's 1 MiB frame limit
    composer = page.get_by_label("Code to run")
    composer.fill(code)
    composer.press("Shift+Enter")
    message = page.locator(".composer-message")
    message.wait_for(timeout=10_000)
    assert message.inner_text().startswith("The code is 1.14 MiB; the limit is 100 KB.")
    assert composer.input_value() == code
    assert page.locator("#turns > li.turn").count() == 0
    page.wait_for_timeout(1500)  # a dropped socket would have closed by now
    assert page.evaluate("() => window.socketCloses") == 0
    assert page.evaluate("() => document.body.dataset.socket") == "open"
    # The socket still runs code.
    composer.fill("print('still here')")
    composer.press("Shift+Enter")
    turn = page.locator("#turns > li.turn").first
    turn.locator(".status-line.ok").wait_for(timeout=60_000)
    assert turn.locator(".output").inner_text() == "still here\n"


def upload(page, name: str, size_bytes: int) -> None:
    """Choose one file of `size_bytes` in the files panel's upload button."""
    page.locator("#files-input").set_input_files(files=[{"name": name, "mimeType": "application/octet-stream",
                                                           "buffer": b"x" * size_bytes}])


def open_files(page) -> None:
    page.locator("#files-toggle").click()
    page.locator('#files-panel[data-loaded="true"]').wait_for()


def test_a_file_over_the_per_file_limit_is_named_before_any_upload(page) -> None:
    log_in_and_start_session(page)
    open_files(page)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.method == "POST" and "/files/" in r.url else None)
    upload(page, "big.bin", 11 * 1024 * 1024)
    item = page.locator('#files-uploads li[data-name="big.bin"]')
    item.locator(".files-upload-error").wait_for()
    assert item.locator(".files-upload-error").inner_text() == "big.bin is 11.0 MiB; the limit is 10.0 MiB per file."
    assert item.get_attribute("data-state") == "error"
    assert requests == []


def test_a_failed_upload_turns_its_bar_red_with_the_reason(page) -> None:
    log_in_and_start_session(page)
    open_files(page)
    upload(page, "..", 10)
    item = page.locator("#files-uploads li.files-upload").first
    item.locator(".files-upload-error").wait_for()
    reason = item.locator(".files-upload-error").inner_text()
    assert reason == "'..' is not a file name (no folders, '..' or slashes)."
    assert "cut short" not in reason
    bar = item.locator("progress")
    assert bar.get_attribute("aria-label") == "Upload failed: " + reason
    red = page.evaluate("() => getComputedStyle(document.body).getPropertyValue('--err').trim()")
    assert bar.evaluate("b => getComputedStyle(b).accentColor") == page.evaluate(
        "(c) => { const d = document.createElement('div'); d.style.color = c; document.body.appendChild(d);"
        " const v = getComputedStyle(d).color; d.remove(); return v; }", red)
    assert bar.evaluate("b => b.value") == 100  # a full red bar, not an empty grey one


def test_past_the_cap_the_run_shows_its_head_a_marker_and_its_last_lines_live_and_after_a_reload(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "for i in range(40_000):\n    print(i, 'x' * 80)\nprint('the end')")  # 3.3 MiB: past the 2 MiB cap
    marker = turn.locator(".out-note.trunc")
    assert marker.count() == 1
    assert re.fullmatch(r"… 1\.\d+ MiB cut …", marker.inner_text())
    last = turn.locator(".out-note.trunc + pre.stream")
    live_tail = last.evaluate("pre => pre.textContent")
    assert live_tail.endswith("39999 " + "x" * 80 + "\nthe end\n")
    assert re.match(r"\d+ x{80}\n", live_tail)  # the tail starts on a whole line
    assert turn.locator(".output pre.stream").first.evaluate("pre => pre.textContent").startswith("0 " + "x" * 80 + "\n") or \
        turn.get_by_role("button", name="Show all output").count() == 1  # the head (clipped in the DOM past 200k chars)
    live_marker = marker.inner_text()
    page.reload()
    turn = page.locator("#turns > li.turn").first
    assert turn.locator(".out-note.trunc").inner_text() == live_marker
    assert turn.locator(".trunc").count() == 1  # no second, older "Output stopped" notice
    # The history renders a heavy run's last 32k characters; "Show all output" has the rest, as live.
    assert live_tail.endswith(turn.locator(".out-note.trunc + pre.stream").evaluate("pre => pre.textContent"))
    turn.get_by_role("button", name="Show all output").click()
    page.wait_for_function("() => document.querySelector('#turns pre.stream').textContent.startsWith('0 x')")
    assert turn.locator(".out-note.trunc").inner_text() == live_marker
    assert turn.locator(".out-note.trunc + pre.stream").evaluate("pre => pre.textContent") == live_tail


# The linked run's box lies inside the conversation's visible box.
IN_VIEW_JS = """turn => {
  const c = document.getElementById('conversation').getBoundingClientRect(), t = turn.getBoundingClientRect();
  return t.top >= c.top - 1 && t.top < c.bottom && window.scrollY === 0;
}"""


def test_a_search_finds_a_prefix_and_opens_the_run_in_view_and_highlighted(page, alice) -> None:
    session = ChatSession.objects.create(owner=alice, title="Tables")
    runs = []
    for seq in range(1, 13):
        code = "from tabulate import tabulate\nprint(tabulate([[1, 2]]))" if seq == 3 else f"for i in range(30):\n    print({seq}, i)"
        runs.append(Execution.objects.create(session=session, seq=seq, code=code, language="python", user=alice,
                                             status="succeeded", created_at=timezone.now(), duration_ms=5))
        OutputChunk.objects.create(execution=runs[-1], index=0, kind="stdout", text="".join(f"{seq} {i}\n" for i in range(30)))
    target = runs[2]
    log_in(page)
    search = page.get_by_label("Search your runs: titles, code and output")
    search.fill("tabul")
    search.press("Enter")
    hit = page.locator("#search-hits li.search-hit").first
    hit.wait_for()
    assert page.locator("#search-hits li.search-hit").count() == 1
    assert "<mark>tabulate</mark>" in hit.locator(".search-snippet").inner_html()
    hit.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/sessions/{session.id}/#run-{target.id}$"))
    turn = page.locator(f"#run-{target.id}")
    turn.wait_for()
    page.wait_for_function("() => document.readyState === 'complete'")
    assert "linked" in turn.get_attribute("class").split()
    assert turn.evaluate(IN_VIEW_JS)
    assert not page.locator(f"#run-{runs[-1].id}").evaluate(IN_VIEW_JS)  # not left at the bottom
    assert page.locator("#turns > li.turn.linked").count() == 1


def test_while_output_is_held_past_the_head_the_run_says_its_last_lines_come_at_the_end(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "for i in range(30_000):\n    print(i, 'x' * 80)\nimport time; time.sleep(4)\nprint('done')", wait=False)
    held = turn.locator(".out-note.held")
    held.wait_for(timeout=30_000)
    assert held.inner_text() == "Output past 1.88 MiB is held: the last 128 KB show when the run ends."
    assert turn.locator(".status-line.running").count() == 1
    turn.locator(".status-line.ok").wait_for(timeout=60_000)
    assert held.count() == 0
    assert re.fullmatch(r"… \d+ KB cut …", turn.locator(".out-note.trunc").inner_text())
    assert turn.locator(".out-note.trunc + pre.stream").evaluate("pre => pre.textContent").endswith("29999 " + "x" * 80 + "\ndone\n")
