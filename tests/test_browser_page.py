"""The page as a demanding user finds it (issue 14): layout, folds, Stop's wording, the menu, exports, statuses.

Same set-up as tests/test_browser.py: alice in headless Chromium, a real Daphne and real kernels.
"""

from __future__ import annotations

import pytest

from tests.fixtures_browser import log_in_and_start_session, run, wait_finished

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

# The last non-blank text node of an element is drawn inside the element's box (not clipped away).
LAST_LINE_VISIBLE_JS = """pre => {
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  let last = null;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) if (n.data.trim()) last = n;
  if (!last) return false;
  let hidden = false;
  for (let p = last.parentElement; p && p !== pre; p = p.parentElement) if (getComputedStyle(p).display === 'none') hidden = true;
  const range = document.createRange();
  range.selectNodeContents(last);
  const a = range.getBoundingClientRect(), b = pre.getBoundingClientRect();
  return !hidden && a.height > 0 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
}"""

PAGE_FITS_JS = """() => ({
  documentHeight: document.documentElement.scrollHeight,
  viewportHeight: window.innerHeight,
  scrollY: window.scrollY,
  headerTop: document.querySelector('.session-header').getBoundingClientRect().top,
})"""


def assert_page_fits(page) -> None:
    fit = page.evaluate(PAGE_FITS_JS)
    assert fit["documentHeight"] <= fit["viewportHeight"], fit
    assert fit["scrollY"] == 0 and fit["headerTop"] == 0, fit


def choose_language(page, language: str) -> None:
    page.locator("#composer-language").select_option(language)


def test_opening_a_run_link_keeps_the_page_exactly_the_viewport(page) -> None:
    log_in_and_start_session(page)
    first = run(page, "print('first')")
    for _ in range(4):
        run(page, "for i in range(60):\n    print(i)")
    running = run(page, "import time; time.sleep(30)", wait=False)
    running.locator(".status-line.running").wait_for()
    assert_page_fits(page)
    page.goto(page.url.split("#")[0] + "#" + first.get_attribute("id"))
    page.wait_for_timeout(300)
    assert_page_fits(page)
    assert first.locator("pre.code").is_visible()
    page.reload()
    first.locator("pre.code").wait_for()
    page.wait_for_timeout(300)
    assert_page_fits(page)
    # Scrolling a hidden status element into view moves only the conversation.
    page.evaluate("() => document.querySelector('#turns > li.turn .status-sr').scrollIntoView()")
    assert_page_fits(page)
    page.get_by_role("button", name="Stop").click()
    wait_finished(running)


def test_a_folded_traceback_still_shows_its_last_line(page) -> None:
    log_in_and_start_session(page)
    deep = run(page, "def f(n):\n    return f(n - 1) if n else 1 / 0\nf(30)")
    pre = deep.locator("pre.traceback")
    assert deep.get_by_role("button", name="Show full traceback").is_visible()
    assert pre.evaluate(LAST_LINE_VISIBLE_JS), pre.inner_text()
    assert "ZeroDivisionError: division by zero" in pre.inner_text()
    assert pre.bounding_box()["height"] < 600  # still folded
    page.reload()
    pre = page.locator("#turns > li.turn").first.locator("pre.traceback")
    pre.wait_for()
    assert pre.evaluate(LAST_LINE_VISIBLE_JS)
    folded_height = pre.bounding_box()["height"]
    page.get_by_role("button", name="Show full traceback").click()
    assert pre.bounding_box()["height"] > folded_height * 1.5


def test_stopping_bash_words_it_for_the_shell_and_leaves_no_empty_box(page) -> None:
    log_in_and_start_session(page)
    choose_language(page, "bash")
    turn = run(page, "x=5; echo started; sleep 30", wait=False)
    turn.locator("pre.stream").wait_for()
    page.get_by_role("button", name="Stop").click()
    wait_finished(turn)
    expected = "Stopped; the shell and its variables are kept."
    output = turn.locator(".output")
    assert "KeyboardInterrupt" not in output.inner_text()
    assert turn.locator(".stopped-note").inner_text() == expected
    empty = turn.locator(".output > .out").evaluate_all("els => els.filter(e => !e.textContent.trim() && !e.querySelector('img')).length")
    assert empty == 0, output.inner_html()
    page.reload()
    turn = page.locator("#turns > li.turn").first
    assert turn.locator(".stopped-note").inner_text() == expected
    assert "KeyboardInterrupt" not in turn.locator(".output").inner_text()
    assert turn.locator(".output > .out").evaluate_all("els => els.filter(e => !e.textContent.trim()).length") == 0
    choose_language(page, "bash")  # a reload puts back the session's language
    after = run(page, "echo $x")
    assert after.locator(".output").inner_text().strip() == "5"


def test_the_session_menu_closes_after_an_export_and_on_escape(page) -> None:
    log_in_and_start_session(page)
    run(page, "print('hi')")
    menu = page.locator("#session-menu")
    page.get_by_label("Session menu").click()
    with page.expect_download():
        page.get_by_role("link", name="Export .ipynb").click()
    assert menu.evaluate("d => d.open") is False
    page.get_by_label("Session menu").click()
    assert menu.evaluate("d => d.open") is True
    page.keyboard.press("Escape")
    assert menu.evaluate("d => d.open") is False


def test_the_markdown_export_keeps_images_as_data_uris(page) -> None:
    log_in_and_start_session(page)
    run(page, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\nprint('after')")
    page.get_by_label("Session menu").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export Markdown").click()
    text = open(download.value.path(), encoding="utf-8").read()
    assert "[image/png output]" not in text
    assert "![Image output 0 of run 1](data:image/png;base64,iVBOR" in text
    assert "after" in text


def test_a_failed_install_does_not_look_green_and_bash_pip_starts(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "%pip install --no-index sandpit-no-such-package")
    status = turn.locator(".status-line")
    assert "ok" not in status.get_attribute("class").split(), turn.locator(".reply").inner_text()
    assert not turn.locator(".status-text").inner_text().startswith("✓")
    # %pip goes to the session's installer, which refuses pip's options before it installs anything.
    assert "InstallError: pip option '--no-index'" in turn.locator(".output").inner_text()
    choose_language(page, "bash")
    pip = run(page, "pip --version")
    assert pip.locator(".status-text").inner_text().startswith("✓"), pip.locator(".reply").inner_text()
    assert pip.locator(".output").inner_text().startswith("pip ")
    failed = run(page, "pip install --no-index sandpit-no-such-package")
    assert failed.locator(".status-line.err").count() == 1


# --- what users expect --------------------------------------------------------------------------------


def test_a_session_names_itself_from_its_first_run_and_the_title_looks_editable(page) -> None:
    log_in_and_start_session(page)
    title = page.get_by_label("Session title (press Enter to rename)")
    assert title.input_value() == "Untitled session"
    run(page, "# Plot a sine wave\nimport math\nprint(math.sin(1))")
    page.wait_for_function("() => document.title.startsWith('Plot a sine wave')")
    assert title.input_value() == "Plot a sine wave"
    assert page.locator('#session-list a[aria-current="page"] .session-title').inner_text() == "Plot a sine wave"
    run(page, "# Something else")
    assert title.input_value() == "Plot a sine wave"  # only the first run names it
    page.get_by_role("button", name="Rename this session").click()
    assert page.evaluate("() => document.activeElement.id") == "title-input"
    page.keyboard.type("Sines")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.title.startsWith('Sines')")
    page.reload()
    assert title.input_value() == "Sines"


def test_the_sidebar_shows_a_running_session_live(page) -> None:
    log_in_and_start_session(page)
    first_url = page.url
    page.get_by_role("button", name="+ New session").click()
    page.wait_for_url(lambda url: url != first_url)
    page.goto(first_url)  # the older session, second in the list
    page.wait_for_function("() => document.body.dataset.socket === 'open'")
    entries = page.locator("#session-list a")
    assert entries.nth(1).get_attribute("aria-current") == "page"
    turn = run(page, "import time; time.sleep(3)", wait=False)
    current = page.locator('#session-list a[aria-current="page"]')
    current.locator(".running-dot").wait_for()
    assert entries.nth(0).get_attribute("aria-current") == "page"  # moved to the top
    clock = current.locator(".running-elapsed")
    page.wait_for_function("() => /^\\d+\\.\\d s$/.test(document.querySelector('[aria-current=page] .running-elapsed').textContent)")
    before = clock.inner_text()
    page.wait_for_timeout(1200)
    assert clock.inner_text() != before  # it ticks
    wait_finished(turn)
    assert not current.locator(".running-dot").is_visible()
    assert not clock.is_visible()
    assert current.locator("time").inner_text() == "just now"


def test_shortcuts_list_ctrl_enter_and_a_phone_says_tap_run(chromium_browser, live_daphne, alice) -> None:
    context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    log_in_and_start_session(phone)
    assert phone.locator("#composer-hint").is_visible()
    assert "tap Run" in phone.locator("#composer-hint").inner_text().replace("Tap", "tap")
    assert "tap Run" in phone.get_by_label("Code to run").get_attribute("placeholder")
    context.close()


def test_icons_are_svg_and_plots_sit_on_a_light_card_in_dark_mode(chromium_browser, live_daphne, alice) -> None:
    context = chromium_browser.new_context(base_url=live_daphne, color_scheme="dark", viewport={"width": 1280, "height": 860})
    dark = context.new_page()
    log_in_and_start_session(dark)
    turn = run(dark, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    card = turn.locator(".out-image")
    card.wait_for()
    assert card.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"
    assert dark.evaluate("() => getComputedStyle(document.body).backgroundColor") != "rgb(255, 255, 255)"
    for name in ("Session menu", "Open the session list", "Close the session list", "Rename this session"):
        control = dark.get_by_label(name)
        assert control.locator("svg").count() == 1 and control.inner_text().strip() == "", name
    dark.get_by_label("Session menu").click()
    dark.get_by_role("button", name="Keyboard shortcuts").click()
    assert "Ctrl+Enter" in dark.get_by_role("dialog", name="Keyboard shortcuts").inner_text()
    context.close()


def test_input_asks_inline_and_the_reply_reaches_the_code(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "name = input('Your name? ')\nprint('Hello,', name)", wait=False)
    field = turn.get_by_label("Your name?")
    field.wait_for()
    assert page.evaluate("() => document.activeElement.type") == "text"
    field.fill("Ada")
    field.press("Enter")
    wait_finished(turn)
    assert turn.locator(".status-text").inner_text().startswith("✓")
    assert turn.locator(".output").inner_text() == "Your name? Ada\nHello, Ada\n"
    assert turn.locator(".input-prompt").count() == 0
    secret = run(page, "import getpass\nprint(len(getpass.getpass('Password: ')))", wait=False)
    field = secret.get_by_label("Password:")
    assert field.get_attribute("type") == "password"
    field.fill("s3cret")
    field.press("Enter")
    wait_finished(secret)
    assert secret.locator(".output").inner_text() == "Password: \n6\n"
    page.reload()
    assert page.locator("#turns > li.turn").first.locator(".output").inner_text() == "Your name? Ada\nHello, Ada\n"


def test_a_waiting_input_survives_a_reload_and_stop_cancels_it(page) -> None:
    log_in_and_start_session(page)
    turn = run(page, "kept = 3\nanswer = input('Go on? ')", wait=False)
    turn.get_by_label("Go on?").wait_for()
    page.reload()
    turn = page.locator("#turns > li.turn").first
    turn.get_by_label("Go on?").wait_for()  # asked again on the new socket
    page.get_by_role("button", name="Stop").click()
    wait_finished(turn)
    assert turn.locator(".status-text").inner_text() == "■ stopped"
    assert turn.locator(".input-prompt").count() == 0
    after = run(page, "print(kept)")
    assert after.locator(".output").inner_text() == "3\n"


def test_a_heavy_run_loads_its_tail_and_shows_all_on_request(page) -> None:
    log_in_and_start_session(page)
    run(page, "for i in range(20_000):\n    print(i, 'x' * 80)")  # 1.7 MB: under the output cap's head
    page.reload()
    turn = page.locator("#turns > li.turn").first
    pre = turn.locator("pre.stream")
    pre.wait_for()
    assert pre.evaluate("p => p.textContent.length") < 40_000
    assert pre.evaluate("p => p.classList.contains('tail') && p.scrollTop > 0")  # its end in view
    assert not pre.inner_text().startswith("0 x")
    turn.get_by_role("button", name="Show all output").click()
    page.wait_for_function("() => document.querySelector('#turns pre.stream').textContent.startsWith('0 x')")
    assert turn.locator("pre.stream").evaluate("p => p.textContent.length") > 1_700_000


def test_the_sidebar_shows_a_run_going_in_another_tab(page) -> None:
    log_in_and_start_session(page)
    watched = page.url
    page.get_by_role("button", name="+ New session").click()
    page.wait_for_url(lambda url: url != watched)
    busy = page.url
    page.goto(watched)
    page.wait_for_function("() => document.body.dataset.socket === 'open'")
    other_entry = page.locator(f'#session-list a[href$="{busy.split("/sessions/")[1]}"]')
    assert other_entry.locator(".running-dot").is_hidden()
    tab = page.context.new_page()
    tab.goto(busy)
    tab.wait_for_function("() => document.body.dataset.socket === 'open'")
    other = run(tab, "import time; time.sleep(30)", wait=False)
    other_entry.locator(".running-dot").wait_for(timeout=8000)  # within one poll
    assert other_entry.locator(".running-elapsed").inner_text().endswith(" s")
    assert page.locator("#session-list a").first.get_attribute("href") == other_entry.get_attribute("href")
    tab.get_by_role("button", name="Stop").click()
    wait_finished(other)
    other_entry.locator(".running-dot").wait_for(state="hidden", timeout=8000)
    tab.close()


def test_after_an_admin_kill_the_run_says_why_and_the_chip_is_not_ready(chromium_browser, live_daphne, page, alice) -> None:  # noqa: F811
    """An admin kills alice's sandboxes from the usage page (a second browser) while her run runs:
    her run ends with the admin's reason, and her header chip says so, also after a reload."""
    from django.contrib.auth import get_user_model

    from tests.fixtures_browser import PASSWORD

    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    log_in_and_start_session(page)
    running = run(page, "import time\nprint('working', flush=True)\ntime.sleep(60)", wait=False)
    running.locator(".status-line.running").wait_for()
    page.wait_for_function("() => document.querySelector('#sandbox-state').dataset.state === 'ready'")

    admin = chromium_browser.new_context(base_url=live_daphne).new_page()
    admin.goto("/admin/login/?next=/admin/")
    admin.fill("#id_username", "boss")
    admin.fill("#id_password", PASSWORD)
    admin.click("input[type=submit]")
    admin.goto(f"/admin/usage/users/{alice.pk}/")
    admin.get_by_label("Why").first.fill("exam over")
    admin.locator("form.usage-action input[type=submit]").first.click()
    admin.wait_for_load_state()
    admin.context.close()

    wait_finished(running)
    assert "An administrator stopped this sandbox: exam over." in running.inner_text()
    assert "closed while this ran" not in running.inner_text()
    chip = page.locator("#sandbox-state")
    page.wait_for_function("() => document.querySelector('#sandbox-state').dataset.state === 'stopped'")
    assert chip.inner_text() == "stopped by an administrator"
    page.reload()
    chip.wait_for()
    assert chip.get_attribute("data-state") == "stopped" and chip.inner_text() == "stopped by an administrator"
    assert not page.errors
