"""The teacher's side of a class in headless Chromium (real Daphne, real kernels): the bugs of issue 19
("Bugs on the way", 1-6). Each test failed before its fix. The cast (olive the student, tess her
teacher, carl her classmate) is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from runner.models import ChatSession, Execution, OutputChunk
from tests.fixtures_browser import RUN_TIMEOUT_MS, run, wait_connected, wait_finished
from tests.fixtures_classrooms import PASSWORD, Cast

DEFAULT_TITLE = ChatSession._meta.get_field("title").default

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def open_page(chromium_browser, live_daphne):
    """`open_page(username, width=1200)` → a page in its own browser context, logged in as that user."""
    contexts = []

    def _open(username: str, width: int = 1200):
        context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": width, "height": 820})
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


def _stored_run(session: ChatSession, seq: int, *, lines: int = 1) -> Execution:
    now = timezone.now()
    execution = Execution.objects.create(
        session=session, seq=seq, code=f"print({seq})", language="python", user=session.owner,
        status="succeeded", started_at=now, finished_at=now, duration_ms=5,
    )
    OutputChunk.objects.create(execution=execution, index=0, kind="stdout", text="".join(f"line {i}\n" for i in range(lines)))
    return execution


def test_a_run_watched_from_its_middle_keeps_its_number_and_the_comment_list_follows_its_status(open_page, live_cast: Cast) -> None:
    """Bug 1: the teacher opens the page while a run is going ([*]); when it ends it reads [2], not [];
    the "Comment on" list drops "running…", and a run that arrives live gets its status there too."""
    student, teacher = open_page("olive"), open_page("tess")
    student.goto(f"/sessions/{live_cast.session.id}/")
    wait_connected(student)
    going = run(student, "import time\nprint('start', flush=True)\ntime.sleep(2.5)", wait=False)
    going.locator(".output pre.stream").filter(has_text="start").wait_for()
    teacher.goto(f"/sessions/{live_cast.session.id}/")
    wait_connected(teacher)
    watched = teacher.locator("#turns > li.turn").nth(1)
    assert watched.locator(".seq").inner_text() == "[*]"
    option = teacher.locator("#comment-execution option").first
    assert option.inner_text() == "run [2] · running…"
    wait_finished(watched)
    assert watched.locator(".seq").inner_text() == "[2]"
    teacher.wait_for_function("() => document.querySelector('#comment-execution option').textContent.startsWith('run [2] · ok')")

    run(student, "1 / 0")
    live = teacher.locator("#turns > li.turn").nth(2)
    wait_finished(live)
    assert live.locator(".seq").inner_text() == "[3]"
    teacher.wait_for_function("() => document.querySelector('#comment-execution option').textContent.startsWith('run [3] · ZeroDivisionError')")
    assert teacher.locator("#comment-execution").input_value() == live.get_attribute("data-execution-id")
    assert student.errors == [] and teacher.errors == []


def test_a_link_to_a_run_targets_the_comment_box_and_each_run_has_a_comment_button(open_page, live_cast: Cast) -> None:
    """Bug 2: /sessions/<id>/#run-<first> puts the comment box on that run, not the newest; each run
    has its own Comment button, which targets it and focuses the box."""
    newest = _stored_run(live_cast.session, 2)
    teacher = open_page("tess")
    teacher.goto(f"/sessions/{live_cast.session.id}/#run-{live_cast.execution.id}")
    wait_connected(teacher)
    assert teacher.locator("#comment-execution").input_value() == str(live_cast.execution.id)
    teacher.get_by_role("button", name="Comment on run 2").click()
    assert teacher.locator("#comment-execution").input_value() == str(newest.id)
    assert teacher.evaluate("() => document.activeElement.id") == "comment-body"
    teacher.get_by_role("button", name="Comment on run 1").click()
    assert teacher.locator("#comment-execution").input_value() == str(live_cast.execution.id)
    assert teacher.errors == []


def test_a_comment_on_a_run_above_the_fold_shows_a_notice_that_jumps_to_it(open_page, live_cast: Cast) -> None:
    """Bug 3: the student is at the bottom of a long session; a comment lands on run 1, far above:
    a notice says so, and its button scrolls run 1 into view, where the comment is marked new."""
    for seq in range(2, 8):
        _stored_run(live_cast.session, seq, lines=30)
    student, teacher = open_page("olive"), open_page("tess")
    for page in (student, teacher):
        page.goto(f"/sessions/{live_cast.session.id}/")
        wait_connected(page)
    first = student.locator(f"#run-{live_cast.execution.id}")
    assert not first.evaluate("(el) => el.getBoundingClientRect().bottom > 0")  # above the fold
    teacher.get_by_label("Comment on", exact=True).select_option(str(live_cast.execution.id))
    teacher.locator("#comment-body").fill("Look at this one again.")
    teacher.get_by_role("button", name="Comment", exact=True).click()

    notice = student.locator("#comment-notice")
    notice.wait_for()
    assert "run [1]" in notice.inner_text()
    notice.get_by_role("button", name=re.compile("Show")).click()
    student.wait_for_function(
        "(id) => { const r = document.getElementById('run-' + id).getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }",
        arg=live_cast.execution.id,
    )
    new_comment = first.locator(".comment.unread").filter(has_text="Look at this one again.")
    assert new_comment.count() == 1
    assert new_comment.locator(".new-badge").text_content() == "new"
    assert not notice.is_visible()
    assert student.errors == [] and teacher.errors == []


def test_the_watch_view_follows_the_title_lists_the_class_and_locks_when_the_student_leaves(open_page, live_cast: Cast) -> None:
    """Bug 4: the header takes the name the session gives itself, the sidebar lists the class's
    sessions (not the teacher's own), and once the student has left the comment box is off."""
    fresh = ChatSession.objects.create(owner=live_cast.owner, title=DEFAULT_TITLE, classroom=live_cast.class_a)
    ChatSession.objects.create(owner=live_cast.teacher, title="Tess's own scratch")
    ChatSession.objects.create(owner=live_cast.owner, title="Olive's private diary")
    student, teacher = open_page("olive"), open_page("tess")
    for page in (student, teacher):
        page.goto(f"/sessions/{fresh.id}/")
        wait_connected(page)
    sidebar = teacher.locator("#session-list")
    assert "Tess's own scratch" not in sidebar.inner_text()
    assert "Olive's private diary" not in sidebar.inner_text()
    assert "Olive's loops" in sidebar.inner_text()

    run(student, "# squares\nprint([i * i for i in range(4)])")
    teacher.locator("h1.title-static").filter(has_text="squares").wait_for()
    assert DEFAULT_TITLE not in teacher.locator("h1.title-static").inner_text()
    assert teacher.title().startswith("squares")

    student.goto("/join/")  # she leaves the class, through the server (whose sockets it tells)
    with student.expect_navigation():
        student.get_by_role("button", name="Leave Class A").click()
        student.locator("dialog.confirm[open]").get_by_role("button", name="Leave Class A").click()
    teacher.get_by_text("You no longer have access to this session.").wait_for()
    assert teacher.locator("#comment-body").is_disabled()
    assert teacher.locator("#comment-submit").is_disabled()
    assert student.errors == [] and teacher.errors == []


def test_remove_leave_and_stop_teaching_ask_before_they_act(open_page, live_cast: Cast) -> None:
    """Bug 5: one click never removes a student, leaves a class or stops teaching: a dialog asks,
    Cancel keeps things as they were. The class page has no row of red Remove buttons."""
    teacher = open_page("tess")
    teacher.goto(f"/teach/classrooms/{live_cast.class_a.id}/")
    assert teacher.locator("button.danger:visible").count() == 0
    teacher.locator("details.remove-students summary").click()
    assert teacher.locator("details.remove-students button").count() == 1
    teacher.get_by_label("Student to remove").select_option(label="Carl")
    teacher.get_by_role("button", name="Remove…").click()
    dialog = teacher.locator("dialog.confirm[open]")
    assert "Carl" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert live_cast.class_a.students.filter(pk=live_cast.classmate.pk).exists()
    teacher.get_by_role("button", name="Remove…").click()
    with teacher.expect_navigation():
        teacher.locator("dialog.confirm[open]").get_by_role("button", name="Remove Carl").click()
    assert not live_cast.class_a.students.filter(pk=live_cast.classmate.pk).exists()

    teacher.get_by_role("button", name="Stop teaching this classroom").click()
    teacher.locator("dialog.confirm[open]").get_by_role("button", name="Cancel").click()
    assert live_cast.class_a.teachers.filter(pk=live_cast.teacher.pk).exists()

    student = open_page("olive")
    student.goto("/join/")
    student.get_by_role("button", name="Leave Class A").click()
    assert "Class A" in student.locator("dialog.confirm[open]").inner_text()
    student.locator("dialog.confirm[open]").get_by_role("button", name="Cancel").click()
    assert live_cast.class_a.students.filter(pk=live_cast.owner.pk).exists()
    with student.expect_navigation():
        student.get_by_role("button", name="Leave Class A").click()
        student.locator("dialog.confirm[open]").get_by_role("button", name="Leave Class A").click()
    assert not live_cast.class_a.students.filter(pk=live_cast.owner.pk).exists()
    assert teacher.errors == [] and student.errors == []


def test_the_class_pages_fit_a_phone(open_page, live_cast: Cast) -> None:
    """Bug 6: at 390 px the class page and /teach/ don't scroll sideways, and no nav link wraps inside."""
    for seq in range(2, 5):
        _stored_run(live_cast.session, seq)
    teacher = open_page("tess", width=390)
    for path in (f"/teach/classrooms/{live_cast.class_a.id}/", "/teach/"):
        teacher.goto(path)
        assert teacher.evaluate("() => document.documentElement.scrollWidth") <= 390, path
        assert teacher.evaluate("() => [...document.querySelectorAll('.page-nav a')].every((a) => a.getClientRects().length === 1)")
    assert teacher.errors == []
