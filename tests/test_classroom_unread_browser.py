"""Unread comments and the watch view's next / previous student in headless Chromium (real Daphne):
a teacher comments, the student's sidebar counts it while she is on another session, the run is
marked (and, above the fold, named by the notice), and having it on screen clears them; the
teacher steps between two students by link and by key. The cast
(olive and carl in class A, tess their teacher) is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from runner.models import ChatSession, Comment, Execution, OutputChunk
from tests.fixtures_browser import RUN_TIMEOUT_MS, wait_connected
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


def _stored_run(session: ChatSession, seq: int, *, lines: int = 30) -> Execution:
    now = timezone.now()
    execution = Execution.objects.create(
        session=session, seq=seq, code=f"print({seq})", language="python", user=session.owner,
        status="succeeded", started_at=now, finished_at=now, duration_ms=5,
    )
    OutputChunk.objects.create(execution=execution, index=0, kind="stdout", text="".join(f"line {i}\n" for i in range(lines)))
    return execution


def test_a_comment_is_counted_in_the_students_sidebar_marked_on_its_run_and_cleared_once_seen(open_page, live_cast: Cast) -> None:
    Comment.objects.filter(pk=live_cast.comment.pk).update(seen_at=timezone.now())  # start with nothing unread
    for seq in range(2, 8):
        _stored_run(live_cast.session, seq)  # run 1 ends up far above the fold
    other = ChatSession.objects.create(owner=live_cast.owner, title="Scratch", classroom=live_cast.class_a)
    student, teacher = open_page("olive"), open_page("tess")
    student.goto(f"/sessions/{other.id}/")
    wait_connected(student)
    teacher.goto(f"/sessions/{live_cast.session.id}/")
    wait_connected(teacher)
    teacher.get_by_label("Comment on", exact=True).select_option(str(live_cast.execution.id))
    teacher.locator("#comment-body").fill("Run 1 needs another look.")
    teacher.get_by_role("button", name="Comment", exact=True).click()

    # The student is on another session: the sidebar's poll brings the count.
    entry = student.locator(f'#session-list a[href="/sessions/{live_cast.session.id}/"]')
    count = entry.locator(".unread-count")
    count.wait_for(state="visible", timeout=15_000)
    assert count.inner_text().startswith("1")
    entry.click()
    student.wait_for_url(f"**/sessions/{live_cast.session.id}/")
    wait_connected(student)
    first = student.locator(f"#run-{live_cast.execution.id}")
    assert not first.evaluate("(el) => el.getBoundingClientRect().bottom > 0")  # above the fold
    assert first.locator(".unread-marker").text_content() == "1 new comment"
    assert student.locator('#session-list a[aria-current="page"] .unread-count').is_visible()
    student.wait_for_timeout(1000)  # not seen while it is off screen
    assert Comment.objects.get(body="Run 1 needs another look.").seen_at is None

    notice = student.locator("#comment-notice")  # the comment is far above: the notice says where
    assert notice.is_visible() and "run [1]" in notice.inner_text()
    first.locator(".comment.unread").scroll_into_view_if_needed()  # the student scrolls up to it
    first.locator(".unread-marker").wait_for(state="detached", timeout=10_000)
    notice.wait_for(state="hidden")
    student.locator('#session-list a[aria-current="page"] .unread-count').wait_for(state="hidden")
    assert Comment.objects.get(body="Run 1 needs another look.").seen_at is not None
    student.reload()
    wait_connected(student)
    assert student.locator(".unread-marker").count() == 0
    assert not student.locator('#session-list a[aria-current="page"] .unread-count').is_visible()
    assert student.errors == [] and teacher.errors == []


def test_the_teacher_steps_to_the_previous_and_next_student(open_page, live_cast: Cast) -> None:
    carl_session = ChatSession.objects.create(owner=live_cast.classmate, title="Carl's loops", classroom=live_cast.class_a)
    _stored_run(carl_session, 1, lines=1)
    teacher = open_page("tess")
    teacher.goto(f"/sessions/{live_cast.session.id}/")
    wait_connected(teacher)
    assert teacher.locator("#student-next").get_attribute("aria-disabled") == "true"  # Olive is last by name
    teacher.get_by_role("link", name=re.compile("Previous student")).click()
    teacher.wait_for_url(f"**/sessions/{carl_session.id}/")
    assert "Carl's loops" in teacher.locator("#title-text").inner_text()
    assert "Carl" in teacher.locator(".owner-name").inner_text()
    assert teacher.locator("#student-prev").get_attribute("aria-disabled") == "true"
    teacher.get_by_role("link", name=re.compile("Next student")).click()
    teacher.wait_for_url(f"**/sessions/{live_cast.session.id}/")
    assert "Olive" in teacher.locator(".owner-name").inner_text()
    teacher.locator("body").press("[")  # the keyboard: [ and ] step too
    teacher.wait_for_url(f"**/sessions/{carl_session.id}/")
    assert teacher.errors == []
