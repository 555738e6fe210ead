"""The page in headless Chromium, against a real Daphne and real kernels.

Each test logs in as alice (a fresh student), starts a session from the sidebar, and drives the
composer the way a user does: type, Shift+Enter, watch the reply.
"""

from __future__ import annotations

import re

import pytest

from tests.fixtures_browser import PASSWORD, RUN_TIMEOUT_MS, log_in_and_start_session, run, wait_connected, wait_finished

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_print_shows_its_output(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "print('hi')")
    assert turn.locator(".output pre.stream").inner_text() == "hi\n"
    assert turn.locator(".status-text").inner_text().startswith("✓")
    assert page.errors == []


def test_a_variable_persists_into_the_next_run(page) -> None:
    log_in_and_start_session(page)
    run(page, "x = 6 * 7")
    turn = run(page, "print(x + 1)")
    assert turn.locator(".output").inner_text().strip() == "43"


def test_a_matplotlib_plot_shows_an_image(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()")
    image = turn.locator(".out-image img")
    image.wait_for()
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert image.evaluate("img => img.complete && img.naturalWidth > 100")


def test_stop_interrupts_an_endless_loop_and_the_next_run_works(page) -> None:
    log_in_and_start_session(page)
    loop = run(page, "while True: pass", wait=False)
    loop.locator(".status-line.running").wait_for()
    page.get_by_role("button", name="Stop").click()
    wait_finished(loop)
    assert loop.locator(".status-text").inner_text() == "■ stopped", loop.locator(".reply").inner_text()
    assert "KeyboardInterrupt" in loop.locator(".output").inner_text()
    after = run(page, "print('still here')")
    assert after.locator(".output").inner_text().strip() == "still here"


def test_a_reload_shows_the_whole_history(page) -> None:
    log_in_and_start_session(page)
    run(page, "print('first')")
    run(page, "1/0")
    run(page, "import sys; print('to stderr', file=sys.stderr)")
    page.reload()
    turns = page.locator("#turns > li.turn")
    assert turns.count() == 3
    assert turns.nth(0).locator(".output").inner_text().strip() == "first"
    assert turns.nth(1).locator(".status-text").inner_text() == "✗ ZeroDivisionError"
    assert "ZeroDivisionError" in turns.nth(1).locator("pre.traceback").inner_text()
    assert turns.nth(2).locator(".output .stderr").inner_text().strip() == "to stderr"
    assert turns.nth(0).locator("pre.code").inner_text().strip() == "print('first')"
    assert page.errors == []


def test_going_offline_mid_stream_ends_with_complete_output_once(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.05)", wait=False)
    turn.locator("pre.stream").wait_for()
    page.context.set_offline(True)
    page.wait_for_function("() => document.body.dataset.socket === 'closed'", timeout=10_000)
    assert page.locator("#toast").is_visible()
    page.wait_for_timeout(1500)
    page.context.set_offline(False)
    wait_finished(turn)
    wait_connected(page)
    assert not page.locator("#toast").is_visible()
    assert turn.locator("pre.stream").inner_text() == "".join(f"{i}\n" for i in range(40))
    assert turn.locator(".status-text").inner_text().startswith("✓")


def test_rich_html_from_user_code_cannot_run_script_in_the_page(page) -> None:
    log_in_and_start_session(page)
    turn = run(
        page,
        "from IPython.display import HTML, Markdown, display\n"
        "display(HTML('<b>bold</b><script>window.pwned = 1</script>'))\n"
        "display(HTML('<img src=x onerror=\"window.pwned = 2\">'))\n"
        "display(Markdown('*md* <img src=y onerror=\"window.pwned = 3\">'))\n"
        "display(HTML('<svg onload=\"window.pwned = 4\"></svg><a href=\"javascript:window.pwned=5\">x</a>'))",
    )
    turn.locator(".rich b").wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.pwned") is None
    page.reload()
    page.locator("#turns .rich b").wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("#turns .rich script, #turns .rich [onerror], #turns .rich svg").count() == 0


def test_pages_look_right_in_light_and_dark(chromium_browser, live_daphne, alice) -> None:
    """Screenshots for a human to look at (saved to /tmp), plus the checks a screenshot can't make."""
    for scheme, size in [("light", (1280, 860)), ("dark", (1280, 860)), ("light", (390, 800))]:
        context = chromium_browser.new_context(
            base_url=live_daphne, color_scheme=scheme, viewport={"width": size[0], "height": size[1]}
        )
        context.set_default_timeout(RUN_TIMEOUT_MS)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        if scheme == "light" and size[0] > 700:
            log_in_and_start_session(page)
            page.get_by_role("button", name="Pandas table").click()
            run(page, page.get_by_label("Code to run").input_value())
            run(page, "import numpy as np\nimport matplotlib.pyplot as plt\nx = np.linspace(0, 6.3, 200)\nplt.plot(x, np.sin(x))\nplt.show()")
            run(page, "print('\\x1b[32mgreen\\x1b[0m and plain')\ndef f():\n    return 1/0\nf()")
        else:
            page.goto("/accounts/login/")
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.locator("#turns").wait_for()
            wait_connected(page)
        page.wait_for_timeout(300)
        page.screenshot(path=f"/tmp/sandpit-{scheme}-{size[0]}.png")
        assert page.errors == []
        context.close()


def test_restart_sandbox_asks_first_and_then_variables_are_gone(page) -> None:
    log_in_and_start_session(page)
    run(page, "x = 1")
    page.get_by_label("Session menu").click()
    page.get_by_role("button", name="Restart sandbox…").click()
    dialog = page.get_by_role("dialog", name="Restart the sandbox?")
    assert "Variables" in dialog.inner_text() and "will be lost" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert not dialog.is_visible()
    page.get_by_label("Session menu").click()
    page.get_by_role("button", name="Restart sandbox…").click()
    dialog.get_by_role("button", name="Restart sandbox").click()
    page.wait_for_load_state()
    wait_connected(page)
    turn = run(page, "print(x)")
    assert turn.locator(".status-text").inner_text() == "✗ NameError"
    assert turn.locator(".notice").inner_text() == "A new sandbox was started; variables from earlier runs are gone."


def test_composer_keeps_indentation_and_recalls_the_previous_code(page) -> None:
    log_in_and_start_session(page)
    composer = page.get_by_label("Code to run")
    composer.click()
    page.keyboard.type("for i in range(2):")
    page.keyboard.press("Enter")  # a newline, indented after the colon: not a run
    page.keyboard.type("print(i)")
    assert composer.input_value() == "for i in range(2):\n    print(i)"
    page.keyboard.press("Shift+Tab")
    assert composer.input_value() == "for i in range(2):\nprint(i)"
    page.keyboard.press("Home")
    page.keyboard.press("Tab")  # at the start of the line: indent it
    assert composer.input_value() == "for i in range(2):\n    print(i)"
    assert page.locator("#turns > li.turn").count() == 0
    page.keyboard.press("Shift+Enter")
    turn = page.locator("#turns > li.turn").first
    wait_finished(turn)
    assert turn.locator(".output").inner_text() == "0\n1\n"
    assert composer.input_value() == ""
    page.keyboard.press("ArrowUp")
    assert composer.input_value() == "for i in range(2):\n    print(i)"
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")  # Esc then Tab leaves the editor
    assert page.evaluate("() => document.activeElement.id") == "composer-language"
    page.keyboard.press("Tab")
    page.keyboard.press("?")  # outside a text field, ? lists the shortcuts
    assert page.get_by_role("dialog", name="Keyboard shortcuts").is_visible()


def test_a_flood_of_output_keeps_a_bounded_tail_and_says_where_it_stopped(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "for i in range(120_000):\n    print(i, 'x' * 80)")
    [marker] = turn.locator(".trunc").all_inner_texts()
    assert re.fullmatch(r"… \d\.\d+ MiB cut …", marker)  # the head, the marker, then the run's last lines
    tail = turn.locator("pre.stream").first.evaluate("pre => pre.textContent")
    assert 100_000 <= len(tail) <= 200_000
    lines = tail.splitlines()[:-1]  # the cap may cut the last line short
    assert all(re.fullmatch(r"\d+ x{80}", line) for line in lines)  # the DOM tail starts on a whole line
    numbers = [int(line.split()[0]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # the newest lines, in order
    assert numbers[0] > 10_000
    assert turn.get_by_role("button", name="Show all output").is_enabled()


def test_rename_in_place_updates_the_sidebar(page) -> None:
    log_in_and_start_session(page)
    title = page.get_by_label("Session title (press Enter to rename)")
    title.fill("Sine waves")
    title.press("Enter")
    page.wait_for_function("() => document.title.startsWith('Sine waves')")
    assert page.locator('#session-list a[aria-current="page"] .session-title').inner_text() == "Sine waves"
    page.reload()
    assert title.input_value() == "Sine waves"


def test_a_second_run_waits_in_the_queue_and_the_finish_is_announced(page) -> None:
    log_in_and_start_session(page)
    first = run(page, "import time; time.sleep(1.5); print('slow')", wait=False)
    first.locator(".status-line.running").wait_for()
    second = run(page, "print('next')", wait=False)
    chip = page.locator("#queued-chip")
    chip.wait_for()
    assert chip.inner_text() == "1 queued"
    assert second.locator(".status-text").inner_text() == "queued"
    assert first.locator(".status-line").get_attribute("aria-live") == "polite"
    wait_finished(second)
    assert not chip.is_visible()
    assert second.locator(".output").inner_text() == "next\n"
    assert re.fullmatch(r"Run finished: succeeded in \d+\.\d\d s", first.locator(".status-sr").inner_text())


def test_a_refused_run_is_explained_near_the_composer_and_keeps_the_code(page) -> None:
    log_in_and_start_session(page)
    code = "# " + "x" * 120_000
    composer = page.get_by_label("Code to run")
    composer.fill(code)
    composer.press("Shift+Enter")
    message = page.locator(".composer-message")
    message.wait_for()
    assert "too long" in message.inner_text().lower() or "KB" in message.inner_text()
    assert composer.input_value() == code
    assert page.locator("#turns > li.turn").count() == 0
    message.get_by_role("button", name="Dismiss this message").click()
    assert page.locator(".composer-message").count() == 0


def test_on_a_phone_the_sidebar_is_a_drawer(chromium_browser, live_daphne, alice) -> None:
    context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in_and_start_session(page)
    new_session = page.get_by_role("button", name="+ New session")
    assert not new_session.is_visible()
    page.get_by_role("button", name="Open the session list").click()
    assert new_session.is_visible()
    page.get_by_role("button", name="Close the session list").click()
    assert not new_session.is_visible()
    composer_width = page.get_by_label("Code to run").bounding_box()["width"]
    assert composer_width > 330
    context.close()


def test_ansi_colours_render_live_and_after_a_reload(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "print('\\x1b[1;31mred\\x1b[0m plain <b>not bold</b>')")
    assert turn.locator(".output .ansi-fg-1.ansi-bold").inner_text() == "red"
    assert turn.locator(".output").inner_text() == "red plain <b>not bold</b>\n"
    page.reload()
    again = page.locator("#turns > li.turn").first
    assert again.locator(".output .ansi-fg-1.ansi-bold").inner_text() == "red"
    assert again.locator(".output").inner_text() == "red plain <b>not bold</b>\n"


def test_long_output_and_long_tracebacks_fold_until_asked(page) -> None:
    log_in_and_start_session(page)
    long_run = run(page, "for i in range(100):\n    print(i)")
    fold = long_run.get_by_role("button", name="Show all 100 lines")
    assert fold.get_attribute("aria-expanded") == "false"
    folded_height = long_run.locator("pre.stream").bounding_box()["height"]
    fold.click()
    assert long_run.locator("pre.stream").bounding_box()["height"] > folded_height * 2
    deep = run(page, "def f(n):\n    return f(n - 1) if n else 1 / 0\nf(30)")
    assert deep.locator(".status-text").inner_text() == "✗ ZeroDivisionError"
    deep.get_by_role("button", name="Show full traceback").click()
    assert "ZeroDivisionError: division by zero" in deep.locator("pre.traceback").inner_text()
