"""The class page's live grid in headless Chromium (real Daphne, real kernels), with a teacher and two
students in their own browser contexts: failing runs make a tile stuck with the error's name, and a
run shows as running then idle, all without a reload; the headers sort from the keyboard. The cast
(olive and carl, students of class A; tess, its teacher) is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import re

import pytest

from runner.models import ChatSession
from tests.fixtures_browser import RUN_TIMEOUT_MS, run, wait_connected
from tests.fixtures_classrooms import PASSWORD, Cast

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def open_page(chromium_browser, live_daphne):
    """`open_page(username)` → a page in its own browser context, logged in as that user."""
    contexts = []

    def _open(username: str):
        context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 1200, "height": 820})
        context.set_default_timeout(RUN_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/$"))
        return page

    yield _open
    for context in contexts:
        context.close()


def _row(page, username_name: str):
    return page.locator("#grid-rows tr", has=page.locator("th", has_text=username_name))


def test_failing_runs_make_a_tile_stuck_and_a_run_shows_running_then_idle_without_a_reload(open_page, live_cast: Cast) -> None:
    carl_session = ChatSession.objects.create(owner=live_cast.classmate, title="Carl's work", classroom=live_cast.class_a)
    teacher = open_page("tess")
    teacher.goto(f"/teach/classrooms/{live_cast.class_a.id}/")
    teacher.evaluate("() => { window.notReloaded = true; }")
    olive_row, carl_row = _row(teacher, "Olive"), _row(teacher, "Carl")
    assert olive_row.locator(".grid-state").inner_text() == "Offline" and "Stuck" not in olive_row.inner_text()

    olive = open_page("olive")
    olive.goto(f"/sessions/{live_cast.session.id}/")
    wait_connected(olive)
    run(olive, "print(undefined_name)")  # with the cast's NameError: two in a row
    teacher.wait_for_function(
        "() => [...document.querySelectorAll('#grid-rows tr')].some(r => r.textContent.includes('Olive') && r.cells[3].textContent === '2')"
    )
    assert not olive_row.evaluate("(r) => r.classList.contains('stuck')")
    run(olive, "undefined_name + 1")
    olive_row.locator(".stuck-flag").wait_for()
    assert olive_row.locator("code.ename").inner_text() == "NameError"
    assert "3 failures in a row" in olive_row.inner_text() and olive_row.locator(".grid-state").inner_text() == "Idle"
    assert teacher.locator("#grid-stuck").inner_text() == "· 1 stuck"
    assert teacher.locator("#grid-rows tr").first.inner_text().startswith("Olive")  # stuck first

    carl = open_page("carl")
    carl.goto(f"/sessions/{carl_session.id}/")
    wait_connected(carl)
    going = run(carl, "import time\nprint('working', flush=True)\ntime.sleep(6)", wait=False)
    going.locator(".output pre.stream").filter(has_text="working").wait_for()
    carl_row.locator(".grid-state[data-state='running']").wait_for()
    assert carl_row.locator(".grid-state").inner_text() == "Running now"
    carl_row.locator(".grid-state[data-state='idle']").wait_for(timeout=30_000)
    assert carl_row.locator("td").nth(1).inner_text() == "just now" and "Stuck" not in carl_row.inner_text()
    assert teacher.evaluate("() => window.notReloaded") is True
    assert teacher.errors == [] and olive.errors == [] and carl.errors == []


def test_the_grid_sorts_from_the_keyboard(open_page, live_cast: Cast) -> None:
    teacher = open_page("tess")
    teacher.goto(f"/teach/classrooms/{live_cast.class_a.id}/")
    names = "() => [...document.querySelectorAll('#grid-rows th')].map(th => th.textContent.trim()).join(',')"
    teacher.wait_for_function(f"() => ({names})() === 'Olive Owner,Carl'")  # one failure in a row ranks first
    button = teacher.get_by_role("button", name="Student")
    button.focus()
    teacher.keyboard.press("Enter")
    assert teacher.evaluate(names) == "Carl,Olive Owner"
    assert button.evaluate("(b) => b.closest('th').getAttribute('aria-sort')") == "ascending"
    teacher.keyboard.press("Space")
    assert teacher.evaluate(names) == "Olive Owner,Carl"
    assert button.evaluate("(b) => b.closest('th').getAttribute('aria-sort')") == "descending"
    assert teacher.errors == []
