"""A teacher and a student in two browser contexts (headless Chromium, real Daphne, real kernels):
the teacher watches the student's run stream live, comments and the student sees it without a
reload, and the teacher's page has no composer and a forced `run` frame is refused.
The cast (olive the student, tess her teacher) is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import re

import pytest

from runner.models import Comment
from tests.fixtures_classrooms import PASSWORD, Cast
from tests.fixtures_browser import RUN_TIMEOUT_MS, run, wait_connected, wait_finished

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


def _open_session(page, cast: Cast) -> None:
    page.goto(f"/sessions/{cast.session.id}/")
    wait_connected(page)


def test_the_teacher_watches_the_students_run_stream_live(open_page, live_cast: Cast) -> None:
    student, teacher = open_page("olive"), open_page("tess")
    _open_session(student, live_cast)
    _open_session(teacher, live_cast)
    code = "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n    time.sleep(0.6)"
    run(student, code, wait=False)
    watched = teacher.locator("#turns > li.turn").nth(1)
    watched.locator(".output pre.stream").filter(has_text="tick 0").wait_for()
    # the first line arrived while the run was still going: live, not after the fact
    assert watched.locator(".status-line.running").count() == 1
    wait_finished(watched)
    assert watched.locator(".output pre.stream").inner_text() == "tick 0\ntick 1\ntick 2\ntick 3\n"
    assert watched.locator(".status-text").inner_text().startswith("✓")
    assert watched.locator('[data-action="rerun"]').count() == 0
    assert student.errors == [] and teacher.errors == []


def test_a_teachers_comment_appears_on_the_students_page_without_a_reload(open_page, live_cast: Cast) -> None:
    student, teacher = open_page("olive"), open_page("tess")
    _open_session(student, live_cast)
    _open_session(teacher, live_cast)
    student.evaluate("() => { window.notReloaded = true; }")
    teacher.get_by_label("Comment on", exact=True).select_option(str(live_cast.execution.id))
    teacher.locator("#comment-body").fill('Good start. Try **range(1, 4)**.\n\n<img src=x onerror="window.pwned=1">')
    teacher.get_by_role("button", name="Comment", exact=True).click()

    comment = student.locator(f"#run-{live_cast.execution.id} .comment").filter(has_text="Good start")
    comment.wait_for()
    assert comment.locator(".comment-author").inner_text() == "Tess Teacher"
    assert comment.locator("strong").inner_text() == "range(1, 4)"
    assert comment.locator("time").count() == 1
    assert student.evaluate("() => window.notReloaded") is True
    assert student.evaluate("() => window.pwned") is None
    # the teacher's own page shows it too (from the same frame), with the author's controls
    mine = teacher.locator(f"#run-{live_cast.execution.id} .comment").filter(has_text="Good start")
    mine.wait_for()
    assert mine.get_by_role("button", name="Delete comment").count() == 1
    assert comment.get_by_role("button", name="Delete comment").count() == 0

    # the author deletes it: it leaves the student's page, again without a reload
    mine.get_by_role("button", name="Delete comment").click()
    comment.wait_for(state="detached")
    assert Comment.objects.get(body="").deleted_at is not None
    assert student.errors == [] and teacher.errors == []


def test_the_teachers_page_has_no_composer_and_a_forced_run_is_refused(open_page, live_cast: Cast) -> None:
    teacher = open_page("tess")
    _open_session(teacher, live_cast)
    assert teacher.locator("#composer, #composer-code, #run-button").count() == 0
    assert teacher.locator("#comment-box").is_visible()
    answer = teacher.evaluate(
        """(path) => new Promise((resolve) => {
            const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path);
            ws.onmessage = (event) => {
                const frame = JSON.parse(event.data);
                if (frame.type === 'hello') ws.send(JSON.stringify({type: 'run', code: 'print(1)', language: 'python', client_id: 'forced'}));
                else if (frame.type === 'error') { resolve(frame); ws.close(); }
            };
        })""",
        f"/ws/sessions/{live_cast.session.id}/",
    )
    assert answer["code"] == "forbidden"
    assert live_cast.session.executions.count() == 1
    assert teacher.errors == []


def test_a_student_picks_the_class_of_a_new_session_and_only_that_classs_teacher_sees_it(open_page, live_cast: Cast) -> None:
    """olive is in class A and class B: she starts a session in B from the sidebar; tom (B's teacher)
    watches it, tess (A's teacher) gets the unknown-session 404."""
    live_cast.class_b.students.add(live_cast.owner)
    student = open_page("olive")
    _open_session(student, live_cast)
    picker = student.locator("#new-session-classroom")
    assert picker.input_value() == ""  # two classes: Private until she picks
    picker.select_option(label="Class B")
    student.locator("#new-session").click()
    student.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}/$"))
    session_id = student.url.rstrip("/").rsplit("/", 1)[1]
    assert session_id != str(live_cast.session.id)
    assert student.locator("#session-classroom").input_value() == str(live_cast.class_b.id)
    assert live_cast.owner.chat_sessions.get(pk=session_id).classroom_id == live_cast.class_b.id

    watcher = open_page("tom")
    assert watcher.goto(f"/sessions/{session_id}/").status == 200
    assert watcher.locator("#session-class").inner_text() == "Class B"
    outsider = open_page("tess")
    assert outsider.goto(f"/sessions/{session_id}/").status == 404

    # she makes it private from the header's picker (no Move button with JavaScript on): tom loses it
    assert not student.locator("#class-move").is_visible()
    with student.expect_navigation():  # the POST's redirect back to the session
        student.locator("#session-classroom").select_option(label="Private")
    assert student.locator("#session-classroom").input_value() == ""
    assert live_cast.owner.chat_sessions.get(pk=session_id).classroom_id is None
    assert watcher.goto(f"/sessions/{session_id}/").status == 404
    student.set_viewport_size({"width": 390, "height": 800})
    assert student.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert student.errors == [] and watcher.errors == []
