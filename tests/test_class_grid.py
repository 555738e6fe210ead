"""The class page's live grid (`selectors.classroom_grid`, `/teach/classrooms/<id>/grid.json`): state,
failures in a row, the last error, the stuck flag by both rules, assignment progress, only the class's
sessions, and a query count that does not grow with the class. The cast is in
tests/fixtures_classrooms.py: olive (one failed run, NameError, in class A; one hand-in), carl (class
A, no session), sam (class B); tess teaches A."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runner.models import Assignment, ChatSession, Classroom, Execution, SandboxLease, Submission
from runner.selectors import GridTile, classroom_grid
from tests.fixtures_classrooms import Cast

pytestmark = pytest.mark.django_db

@pytest.fixture(autouse=True)
def _fixture_run_is_older(request: pytest.FixtureRequest) -> None:
    """The cast's failed run (NameError) is moved 100 s back, before every run these tests add."""
    if "cast" in request.fixturenames:
        cast: Cast = request.getfixturevalue("cast")
        at = timezone.now() - dt.timedelta(seconds=100)
        Execution.objects.filter(pk=cast.execution.pk).update(created_at=at, started_at=at, finished_at=at)


def _run(session: ChatSession, status: str, *, error: str = "", ago_s: float = 0.0) -> Execution:
    """A run of the session's owner that started `ago_s` seconds ago (finished at once unless active)."""
    seq = session.executions.count() + 1
    at = timezone.now() - dt.timedelta(seconds=ago_s)
    done = status not in ("queued", "running")
    return Execution.objects.create(
        session=session, seq=seq, code="x", language="python", user=session.owner, status=status,
        error_name=error, created_at=at, started_at=at, finished_at=at if done else None, duration_ms=1 if done else None,
    )


def _tile(cast: Cast, user: object, classroom: Classroom | None = None) -> GridTile:
    tiles = {t.student_id: t for t in classroom_grid(classroom=classroom or cast.class_a)}
    return tiles[user.pk]  # type: ignore[attr-defined]


def test_failures_in_a_row_count_since_the_last_success_across_the_class_sessions(cast: Cast) -> None:
    other = ChatSession.objects.create(owner=cast.owner, title="Second", classroom=cast.class_a)
    _run(cast.session, "succeeded", ago_s=50)
    _run(other, "failed", error="TypeError", ago_s=40)
    _run(cast.session, "timed_out", ago_s=30)
    _run(other, "failed", error="ZeroDivisionError", ago_s=20)
    tile = _tile(cast, cast.owner)
    assert (tile.failures_in_row, tile.last_error) == (3, "ZeroDivisionError")  # the fixture's NameError is older than the success
    _run(cast.session, "succeeded", ago_s=10)
    tile = _tile(cast, cast.owner)
    assert (tile.failures_in_row, tile.last_error, tile.stuck) == (0, "", False)


def test_stopped_killed_and_rejected_runs_neither_count_nor_break_the_row(cast: Cast) -> None:
    _run(cast.session, "failed", error="KeyError", ago_s=30)
    for status in ("cancelled", "killed", "rejected", "interrupted"):
        _run(cast.session, status, ago_s=20)
    tile = _tile(cast, cast.owner)
    assert (tile.failures_in_row, tile.last_error) == (2, "KeyError")


def test_three_failures_in_a_row_flag_the_student_stuck(cast: Cast) -> None:
    _run(cast.session, "failed", error="NameError")
    assert not _tile(cast, cast.owner).stuck  # two in a row, just now
    _run(cast.session, "failed", error="NameError")
    tile = _tile(cast, cast.owner)
    assert tile.stuck and tile.stuck_reason == "3 failures in a row"
    with override_settings(CLASS_STUCK_FAILURES=4):
        assert not _tile(cast, cast.owner).stuck


def test_a_failed_last_run_and_five_idle_minutes_flag_the_student_stuck(cast: Cast) -> None:
    Execution.objects.filter(pk=cast.execution.pk).update(
        created_at=timezone.now() - dt.timedelta(seconds=290), finished_at=timezone.now() - dt.timedelta(seconds=280),
    )
    assert not _tile(cast, cast.owner).stuck  # idle 280 s, under CLASS_STUCK_IDLE_S
    with override_settings(CLASS_STUCK_IDLE_S=240):
        tile = _tile(cast, cast.owner)
        assert tile.stuck and tile.stuck_reason == "failed, idle 5 min"
        _run(cast.session, "running")
        tile = _tile(cast, cast.owner)
        assert (tile.state, tile.stuck) == ("running", False)  # trying again is not stuck


def test_state_is_running_idle_or_offline(cast: Cast) -> None:
    assert _tile(cast, cast.owner).state == "offline"  # no live sandbox, nothing going
    lease = SandboxLease.objects.create(user=cast.owner, session=cast.session, backend="local", sandbox_id="sb-1")
    assert (_tile(cast, cast.owner).state, _tile(cast, cast.owner).state_text) == ("idle", "Idle")
    _run(cast.session, "queued")
    assert _tile(cast, cast.owner).state == "running"
    Execution.objects.filter(status="queued").update(status="succeeded")
    lease.ended_at = timezone.now()
    lease.save()
    assert _tile(cast, cast.owner).state == "offline"


def test_only_the_class_sessions_count(cast: Cast) -> None:
    private = ChatSession.objects.create(owner=cast.owner, title="Mine")
    cast.class_b.students.add(cast.owner)
    in_b = ChatSession.objects.create(owner=cast.owner, title="B work", classroom=cast.class_b)
    for session in (private, in_b):
        _run(session, "failed", error="ValueError")
        _run(session, "running")
        SandboxLease.objects.create(user=cast.owner, session=session, backend="local", sandbox_id=f"sb-{session.pk}")
    tile = _tile(cast, cast.owner)
    assert (tile.state, tile.failures_in_row, tile.last_error, tile.session_id) == ("offline", 1, "NameError", cast.session.pk)
    in_class_b = _tile(cast, cast.owner, cast.class_b)
    assert (in_class_b.state, in_class_b.failures_in_row, in_class_b.last_error) == ("running", 1, "ValueError")
    assert {t.name for t in classroom_grid(classroom=cast.class_b)} == {"Sam", "Olive Owner"}


def test_a_student_who_left_is_not_on_the_grid(cast: Cast) -> None:
    cast.class_a.students.remove(cast.owner)
    assert [t.name for t in classroom_grid(classroom=cast.class_a)] == ["Carl"]


def test_assignment_progress_counts_hand_ins_not_checks(cast: Cast) -> None:
    second = Assignment.objects.create(classroom=cast.class_a, title="Functions")
    Submission.objects.create(assignment=cast.assignment, student=cast.owner)  # handed in again: still one assignment
    Submission.objects.create(assignment=second, student=cast.owner, is_hand_in=False)  # "Check my work"
    assert _tile(cast, cast.owner).progress_text == "1 of 2 handed in"
    carl = _tile(cast, cast.classmate)
    assert (carl.progress_text, carl.last_run_text, carl.session_id, carl.failures_in_row) == ("0 of 2 handed in", "never", None, 0)


def _class_of(n: int, runs_each: int) -> Classroom:
    classroom = Classroom.objects.create(name=f"Big {n}")
    assignment = Assignment.objects.create(classroom=classroom, title="One")
    for i in range(n):
        student = get_user_model().objects.create_user(f"s{n}-{i}")
        classroom.students.add(student)
        session = ChatSession.objects.create(owner=student, classroom=classroom)
        for _ in range(runs_each):
            _run(session, "failed", error="NameError", ago_s=60)
        SandboxLease.objects.create(user=student, session=session, backend="local", sandbox_id=f"sb-{n}-{i}")
        Submission.objects.create(assignment=assignment, student=student)
    return classroom


def test_the_grid_takes_the_same_few_queries_for_any_class_size() -> None:
    counts = []
    for n in (2, 12):
        classroom = _class_of(n, runs_each=3)
        with CaptureQueriesContext(connection) as queries:
            tiles = classroom_grid(classroom=classroom)
        assert len(tiles) == n and all(t.stuck for t in tiles)
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 8


def test_grid_json_lists_each_student_with_the_stuck_count_and_a_watch_link(cast: Cast) -> None:
    _run(cast.session, "failed", error="NameError")
    _run(cast.session, "failed", error="IndexError")
    client = Client()
    client.force_login(cast.teacher)
    body = json.loads(client.get(f"/teach/classrooms/{cast.class_a.id}/grid.json").content)
    assert body["stuck"] == 1
    assert [row["username"] for row in body["students"]] == ["carl", "olive"]  # by name
    tiles = {row["username"]: row for row in body["students"]}
    assert tiles["olive"]["stuck"] is True and tiles["olive"]["last_error"] == "IndexError"
    assert tiles["olive"]["failures_in_row"] == 3 and tiles["olive"]["watch_url"] == f"/sessions/{cast.session.id}/"
    assert tiles["carl"]["watch_url"] == "" and tiles["carl"]["state"] == "offline" and tiles["carl"]["last_run_at"] is None


def test_the_class_page_shows_the_grid_with_the_stuck_flag(cast: Cast) -> None:
    _run(cast.session, "failed", error="NameError")
    _run(cast.session, "failed", error="NameError")
    client = Client()
    client.force_login(cast.teacher)
    page = client.get(f"/teach/classrooms/{cast.class_a.id}/").content.decode()
    assert 'id="class-grid"' in page and f'data-grid-url="/teach/classrooms/{cast.class_a.id}/grid.json"' in page
    assert "· 1 stuck" in page and '<span class="stuck-flag">Stuck</span>' in page and "3 failures in a row" in page


def test_an_earlier_lessons_failures_are_not_stuck_now(cast: Cast) -> None:
    for _ in range(3):
        _run(cast.session, "failed", error="NameError", ago_s=3700)
    earlier = timezone.now() - dt.timedelta(seconds=3800)
    Execution.objects.filter(pk=cast.execution.pk).update(created_at=earlier, finished_at=earlier)
    tile = _tile(cast, cast.owner)
    assert (tile.failures_in_row, tile.last_error, tile.stuck) == (4, "NameError", False)
    with override_settings(CLASS_STUCK_WITHIN_S=7200):
        assert _tile(cast, cast.owner).stuck_reason == "4 failures in a row"
