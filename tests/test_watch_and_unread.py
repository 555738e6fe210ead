"""The watch view's previous / next student, unread comments (the sidebar's count, the run's
marker, seen marks) over HTTP, and the class page's assignment counts. The cast (olive and carl in class A, tess their teacher, sam in
class B) is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from runner import selectors, services
from runner.models import Assignment, ChatSession, Comment, Execution, Submission
from tests.fixtures_classrooms import Cast
from tests.fixtures_usage import rate_limits_reset

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    rate_limits_reset()
    yield
    rate_limits_reset()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _student(cast: Cast, username: str, first_name: str):
    student = get_user_model().objects.create_user(username, first_name=first_name)
    cast.class_a.students.add(student)
    return student


def _session(owner, classroom, *, title: str, minutes_ago: int = 0) -> ChatSession:
    session = ChatSession.objects.create(owner=owner, title=title, classroom=classroom)
    ChatSession.objects.filter(pk=session.pk).update(last_activity_at=timezone.now() - dt.timedelta(minutes=minutes_ago))
    return session


def _run(session: ChatSession, seq: int = 1) -> Execution:
    return Execution.objects.create(session=session, seq=seq, code=f"print({seq})", language="python", user=session.owner, status="succeeded")


# --- next and previous student -----------------------------------------------------------------


def test_next_and_previous_follow_the_rosters_name_order_at_each_students_latest_class_session(cast: Cast) -> None:
    """Carl < Dora < Olive by name; Dora's latest session in the class is shown, not her older one,
    and not her newer private one; the ends have no neighbour."""
    dora = _student(cast, "dora", "Dora")
    carl_session = _session(cast.classmate, cast.class_a, title="Carl's", minutes_ago=5)
    _session(dora, cast.class_a, title="Dora old", minutes_ago=60)
    dora_latest = _session(dora, cast.class_a, title="Dora latest", minutes_ago=10)
    _session(dora, None, title="Dora private", minutes_ago=1)

    middle = selectors.classroom_watch_neighbours(classroom=cast.class_a, student_id=dora.pk)
    assert middle.previous is not None and middle.previous.session_id == carl_session.id
    assert middle.next is not None and middle.next.session_id == cast.session.id
    assert (middle.position, middle.total) == (2, 3)
    first = selectors.classroom_watch_neighbours(classroom=cast.class_a, student_id=cast.classmate.pk)
    assert first.previous is None and first.next is not None and first.next.session_id == dora_latest.id
    last = selectors.classroom_watch_neighbours(classroom=cast.class_a, student_id=cast.owner.pk)
    assert last.next is None and last.previous is not None and last.previous.student_name == "Dora"


def test_next_and_previous_skip_students_without_a_class_session_and_those_who_left(cast: Cast) -> None:
    """Carl has only a private session and a session in class B; Bea left class A: neither is a
    neighbour, so Olive is alone."""
    cast.class_b.students.add(cast.classmate)
    _session(cast.classmate, None, title="Carl private")
    _session(cast.classmate, cast.class_b, title="Carl in B")
    bea = _student(cast, "bea", "Bea")
    _session(bea, cast.class_a, title="Bea's")
    cast.class_a.students.remove(bea)

    alone = selectors.classroom_watch_neighbours(classroom=cast.class_a, student_id=cast.owner.pk)
    assert (alone.previous, alone.next, alone.position, alone.total) == (None, None, 1, 1)


def test_the_watch_view_links_the_previous_and_next_students_and_disables_the_ends(cast: Cast) -> None:
    carl_session = _session(cast.classmate, cast.class_a, title="Carl's")
    page = client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").content.decode()
    assert re.search(rf'<a [^>]*id="student-prev" rel="prev" href="/sessions/{carl_session.id}/"', page)
    assert re.search(r'<span [^>]*id="student-next" aria-disabled="true"', page)
    assert "2 of 2" in page
    back = client_for(cast.teacher).get(f"/sessions/{carl_session.id}/").content.decode()
    assert re.search(rf'<a [^>]*id="student-next" rel="next" href="/sessions/{cast.session.id}/"', back)
    assert re.search(r'<span [^>]*id="student-prev" aria-disabled="true"', back)


def test_the_student_and_the_admin_get_no_student_buttons(cast: Cast) -> None:
    for user in (cast.owner, cast.admin):
        page = client_for(user).get(f"/sessions/{cast.session.id}/").content.decode()
        assert 'id="student-nav"' not in page


# --- unread comments ---------------------------------------------------------------------------


def _fresh_comment(cast: Cast, body: str = "Look again.") -> Comment:
    return services.comment_create(author=cast.teacher, execution=cast.execution, body=body)


def _sidebar_unread(cast: Cast, session: ChatSession) -> int:
    items = {item.id: item for item in selectors.sessions_for_sidebar(user=cast.owner)}
    return items[session.id].unread_comments


def test_a_new_comment_counts_as_unread_on_the_owners_sidebar_and_activity(cast: Cast) -> None:
    cast.comment.delete()
    other = _session(cast.owner, cast.class_a, title="Another")
    assert _sidebar_unread(cast, cast.session) == 0
    _fresh_comment(cast)
    _fresh_comment(cast, "And this.")
    assert _sidebar_unread(cast, cast.session) == 2
    assert _sidebar_unread(cast, other) == 0
    activity = client_for(cast.owner).get("/sessions/activity.json").json()["sessions"]
    assert {s["id"]: s["unread_comments"] for s in activity} == {str(cast.session.id): 2, str(other.id): 0}


def test_the_owners_page_marks_unread_comments_and_their_run(cast: Cast) -> None:
    page = client_for(cast.owner).get(f"/sessions/{cast.session.id}/").content.decode()
    assert f'class="comment unread" id="comment-{cast.comment.id}"' in page
    assert '<span class="badge unread-marker">1 new comment</span>' in page
    assert re.search(r'<span class="unread-count" data-unread="1"[^>]*>1<', page)
    teacher_page = client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").content.decode()
    assert "unread-marker" not in teacher_page and 'class="comment unread"' not in teacher_page


def test_seen_marks_clear_the_count_and_answer_what_is_left(cast: Cast) -> None:
    second = _fresh_comment(cast)
    answer = client_for(cast.owner).post(
        f"/sessions/{cast.session.id}/comments/seen/", {"comment_id": [str(cast.comment.id)]}, HTTP_ACCEPT="application/json",
    ).json()
    assert answer == {"ok": True, "marked": 1, "unread": 1}
    assert _sidebar_unread(cast, cast.session) == 1
    cast.comment.refresh_from_db()
    assert cast.comment.seen_at is not None
    client_for(cast.owner).post(f"/sessions/{cast.session.id}/comments/seen/", {"comment_id": [str(second.id)]})
    assert _sidebar_unread(cast, cast.session) == 0
    page = client_for(cast.owner).get(f"/sessions/{cast.session.id}/").content.decode()
    assert "unread-marker" not in page and 'class="comment unread"' not in page


def test_a_seen_mark_for_another_sessions_comment_changes_nothing(cast: Cast) -> None:
    """Olive can't mark comments on Carl's session (ids of other sessions are ignored)."""
    carl_session = _session(cast.classmate, cast.class_a, title="Carl's")
    carl_comment = services.comment_create(author=cast.teacher, execution=_run(carl_session), body="Carl, look.")
    mine = _session(cast.owner, cast.class_a, title="Mine")
    answer = client_for(cast.owner).post(
        f"/sessions/{mine.id}/comments/seen/", {"comment_id": [str(carl_comment.id), str(cast.comment.id)]},
        HTTP_ACCEPT="application/json",
    ).json()
    assert answer["marked"] == 0
    assert Comment.objects.filter(seen_at__isnull=True).count() == 2


def test_the_teacher_cannot_mark_the_students_comments_seen(cast: Cast) -> None:
    response = client_for(cast.teacher).post(f"/sessions/{cast.session.id}/comments/seen/", {"comment_id": [str(cast.comment.id)]})
    assert response.status_code == 403
    cast.comment.refresh_from_db()
    assert cast.comment.seen_at is None


def test_a_bad_seen_mark_is_refused_clearly(cast: Cast) -> None:
    response = client_for(cast.owner).post(
        f"/sessions/{cast.session.id}/comments/seen/", {"comment_id": ["12", "x"]}, HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert "comment_id must be" in response.json()["message"]
    cast.comment.refresh_from_db()
    assert cast.comment.seen_at is None


def test_deleted_comments_are_not_unread_and_an_edit_is_unread_again(cast: Cast) -> None:
    services.comments_mark_seen(session=cast.session, comment_ids=[cast.comment.pk])
    assert _sidebar_unread(cast, cast.session) == 0
    services.comment_edit(comment=cast.comment, author=cast.teacher, body="Now fix the NameError, please.")
    assert _sidebar_unread(cast, cast.session) == 1
    services.comment_delete(comment=cast.comment, author=cast.teacher)
    assert _sidebar_unread(cast, cast.session) == 0


# --- the class page's assignment counts ----------------------------------------------------------


def test_the_class_pages_assignment_counts_agree_with_each_assignments_grid(cast: Cast) -> None:
    """Olive handed in late then on time (the last counts), Carl is working, Dora hasn't started;
    Sam (class B) and Bea (who left) are not counted. The cast's submission is a check, not a hand-in."""
    _student(cast, "dora", "Dora")
    bea = _student(cast, "bea", "Bea")
    second = Assignment.objects.create(classroom=cast.class_a, title="Functions", points=5)
    Submission.objects.filter(pk=cast.submission.pk).update(is_hand_in=False)
    for assignment in (cast.assignment, second):
        olive_session = ChatSession.objects.create(owner=cast.owner, title="a", classroom=cast.class_a, assignment=assignment)
        Submission.objects.create(assignment=assignment, student=cast.owner, session=olive_session, late=True, checks_status="done")
        Submission.objects.create(assignment=assignment, student=cast.owner, session=olive_session, late=False, checks_status="done")
        ChatSession.objects.create(owner=cast.classmate, title="c", classroom=cast.class_a, assignment=assignment)
        ChatSession.objects.create(owner=cast.other_student, title="s", classroom=cast.class_a, assignment=assignment)
        bea_session = ChatSession.objects.create(owner=bea, title="b", classroom=cast.class_a, assignment=assignment)
        Submission.objects.create(assignment=assignment, student=bea, session=bea_session, checks_status="done")
    Submission.objects.create(assignment=second, student=cast.classmate, late=True, checks_status="done")
    cast.class_a.students.remove(bea)

    counts = dict(selectors.assignments_for_classroom(classroom=cast.class_a))
    assert counts[cast.assignment] == {"not_started": 1, "working": 1, "handed_in": 1, "late": 0}
    assert counts[second] == {"not_started": 1, "working": 0, "handed_in": 1, "late": 1}
    for assignment, figures in counts.items():
        from_grid = {"not_started": 0, "working": 0, "handed_in": 0, "late": 0}
        for row in selectors.assignment_grid(assignment=assignment):
            from_grid[row.state] += 1
        assert figures == from_grid
