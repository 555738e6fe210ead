"""An assignment in two browser contexts (headless Chromium, real Daphne, real kernels): the student
starts it from their Assignments page (starter code in the composer), runs, checks their work (the
result appears when ready, without a reload by hand) and hands in; the teacher sees the hand-in on
the grid, opens it read-only and grades it; the student sees the score and feedback.
The cast (olive the student, tess her teacher, class A's assignment "Loops") is in
tests/fixtures_classrooms.py."""

from __future__ import annotations

import re

import pytest

from tests.fixtures_browser import run, wait_connected
from tests.fixtures_classrooms import Cast
from tests.test_classroom_browser import open_page  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

CHECKS = 'def check_total():\n    """total is 45"""\n    assert total == 45, "total should be 45"\n'


def test_a_student_starts_checks_and_hands_in_and_sees_the_teachers_grade(open_page, live_cast: Cast) -> None:  # noqa: F811
    assignment = live_cast.assignment
    assignment.starter_code = "total = 0\nfor i in range(10):\n    total += i"
    assignment.checks = CHECKS
    assignment.save()
    student = open_page("olive")
    student.get_by_role("link", name="Assignments").click()
    student.get_by_role("link", name="Loops").click()
    student.get_by_role("button", name="Start").click()
    student.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}/$"))
    wait_connected(student)
    composer = student.get_by_label("Code to run")
    assert composer.input_value() == "total = 0\nfor i in range(10):\n    total += i"
    run(student, composer.input_value())
    student.locator("#assignment-bar").get_by_role("button", name="Check my work").click()
    student.wait_for_url(re.compile(rf"/assignments/{assignment.pk}/$"))
    student.locator(".checks-summary").filter(has_text="1 of 1 checks passed").wait_for(timeout=120_000)
    assert "total is 45" in student.locator(".check-results").inner_text()
    student.get_by_role("button", name="Hand in").click()
    student.locator(".flash").filter(has_text="Handed in").wait_for()
    student.locator(".checks-summary").filter(has_text="1 of 1 checks passed").wait_for(timeout=120_000)

    teacher = open_page("tess")
    teacher.goto(f"/teach/assignments/{assignment.pk}/")
    row = teacher.locator(f'tr[data-student-id="{live_cast.owner.pk}"]')
    assert row.locator(".state").inner_text() == "Handed in"
    assert "1 of 1" in row.inner_text()
    row.get_by_role("link").last.click()
    assert "total += i" in teacher.locator(".submission-runs").inner_text()
    teacher.get_by_label("Score (out of 10)").fill("9")
    teacher.get_by_label("Feedback").fill("Well done; try sum(range(10)) too.")
    teacher.get_by_role("button", name="Save grade").click()
    teacher.locator(".flash").filter(has_text="Grade saved").wait_for()

    student.goto(f"/assignments/{assignment.pk}/")
    assert student.locator(".grade .score").inner_text() == "9.00 / 10"
    assert "try sum(range(10)) too" in student.locator(".feedback").inner_text()
    assert student.errors == [] and teacher.errors == []
