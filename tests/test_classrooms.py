"""Classrooms over HTTP: creating and joining, join codes, /teach/ figures, filters and search, the
teacher's read-only session page, comments (limits, inert HTML, author-only), exports with
comments, and ids that leak nothing. The cast is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import importlib
import json

import nbformat
import pytest
from django.test import Client, override_settings
from django.utils import timezone

from runner.models import Classroom, Comment, Execution, OutputChunk
from tests.fixtures_classrooms import Cast
from tests.fixtures_daphne import _free_port
from tests.fixtures_usage import rate_limits_reset

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # Only the rate-limit keys: on Redis, cache.clear() is a FLUSHDB of what other processes share.
    rate_limits_reset()
    yield
    rate_limits_reset()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- classrooms and join codes ------------------------------------------------------------------


def test_a_classroom_makes_its_own_unguessable_join_code() -> None:
    first, second = Classroom.objects.create(name="One"), Classroom.objects.create(name="Two")
    assert len(first.join_code) == 10 and first.join_code != second.join_code
    assert set(first.join_code) <= set("23456789ABCDEFGHJKMNPQRSTUVWXYZ")


def test_a_teacher_creates_a_classroom_from_the_page(cast: Cast) -> None:
    client = client_for(cast.classmate)
    response = client.post("/teach/classrooms/new/", {"name": "  Carl's  club "})
    classroom = Classroom.objects.get(name="Carl's club")
    assert response["Location"] == f"/teach/classrooms/{classroom.id}/"
    page = client.get(response["Location"]).content.decode()
    assert classroom.join_code in page and f"/join/{classroom.join_code}/" in page


def test_an_empty_classroom_name_is_refused(cast: Cast) -> None:
    client = client_for(cast.classmate)
    client.post("/teach/classrooms/new/", {"name": "   "})
    assert not Classroom.objects.filter(teachers=cast.classmate).exists()
    assert "A classroom needs a name." in client.get("/teach/").content.decode()


def test_a_student_joins_by_code_and_the_teacher_sees_their_sessions(cast: Cast) -> None:
    newcomer = client_for(cast.other_student)
    code = cast.class_a.join_code
    assert newcomer.post("/join/", {"code": code.lower()[:5] + " " + code.lower()[5:]}).status_code == 302
    assert cast.class_a.students.filter(pk=cast.other_student.pk).exists()
    session = cast.other_student.chat_sessions.create(title="Sam's first", classroom=cast.class_a)
    scratch = cast.other_student.chat_sessions.create(title="Sam's scratch")
    assert client_for(cast.teacher).get(f"/sessions/{session.id}/").status_code == 200
    assert client_for(cast.teacher).get(f"/sessions/{scratch.id}/").status_code == 404  # private


def test_a_join_link_only_fills_the_form_joining_is_a_post(cast: Cast) -> None:
    client = client_for(cast.other_student)
    page = client.get(f"/join/{cast.class_a.join_code}/")
    assert page.status_code == 200 and f'value="{cast.class_a.join_code}"' in page.content.decode()
    assert not cast.class_a.students.filter(pk=cast.other_student.pk).exists()
    assert client.post(f"/join/{cast.class_a.join_code}/").status_code == 302
    assert cast.class_a.students.filter(pk=cast.other_student.pk).exists()


def test_a_wrong_join_code_is_refused_clearly(cast: Cast) -> None:
    response = client_for(cast.other_student).post("/join/", {"code": "NOPE234567"})
    assert response.status_code == 400
    assert "doesn&#x27;t match any open classroom" in response.content.decode()
    assert not cast.class_a.students.filter(pk=cast.other_student.pk).exists()


def test_an_old_join_code_stops_working_when_regenerated(cast: Cast) -> None:
    old = cast.class_a.join_code
    assert client_for(cast.teacher).post(f"/teach/classrooms/{cast.class_a.id}/code/").status_code == 302
    cast.class_a.refresh_from_db()
    assert cast.class_a.join_code != old
    student = client_for(cast.other_student)
    assert student.post("/join/", {"code": old}).status_code == 400
    assert student.post("/join/", {"code": cast.class_a.join_code}).status_code == 302


def test_an_archived_classroom_cannot_be_joined(cast: Cast) -> None:
    Classroom.objects.filter(pk=cast.class_a.pk).update(archived_at=timezone.now())
    assert client_for(cast.other_student).post("/join/", {"code": cast.class_a.join_code}).status_code == 400


@override_settings(JOIN_ATTEMPTS_PER_10MIN=3)
def test_guessing_join_codes_is_rate_limited(cast: Cast) -> None:
    client = client_for(cast.other_student)
    for guess in ("AAAAAAAAAA", "BBBBBBBBBB", "CCCCCCCCCC"):
        assert client.post("/join/", {"code": guess}).status_code == 400
    blocked = client.post("/join/", {"code": cast.class_a.join_code})
    assert blocked.status_code == 429 and "Too many join attempts" in blocked.content.decode()
    assert not cast.class_a.students.filter(pk=cast.other_student.pk).exists()


def test_a_student_who_leaves_is_no_longer_seen_by_the_teacher(cast: Cast) -> None:
    assert client_for(cast.owner).post(f"/classrooms/{cast.class_a.id}/leave/").status_code == 302
    assert client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").status_code == 404


def dead_channel_layer() -> dict:
    """CHANNEL_LAYERS pointing at a Redis that isn't there (connecting is refused)."""
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [dead]}}}


@pytest.mark.django_db(transaction=True)  # on_commit callbacks run, as in a request outside tests
def test_with_the_channel_layer_down_leaving_and_removal_still_take_effect(cast: Cast) -> None:
    with override_settings(CHANNEL_LAYERS=dead_channel_layer()):
        assert client_for(cast.owner).post(f"/classrooms/{cast.class_a.id}/leave/").status_code == 302
        removed = client_for(cast.teacher).post(f"/teach/classrooms/{cast.class_a.id}/students/{cast.classmate.id}/remove/")
        assert removed.status_code == 302
    assert not cast.class_a.students.filter(pk__in=[cast.owner.pk, cast.classmate.pk]).exists()


def test_a_removed_student_is_no_longer_seen_by_the_teacher(cast: Cast) -> None:
    teacher = client_for(cast.teacher)
    assert teacher.post(f"/teach/classrooms/{cast.class_a.id}/students/{cast.owner.id}/remove/").status_code == 302
    assert teacher.get(f"/sessions/{cast.session.id}/").status_code == 404
    assert teacher.get(f"/sessions/{cast.session.id}/export.ipynb").status_code == 404


def test_one_person_can_teach_one_class_and_attend_another(cast: Cast) -> None:
    cast.class_b.students.add(cast.teacher)
    own = cast.teacher.chat_sessions.create(title="Tess practises", classroom=cast.class_b)
    assert client_for(cast.other_teacher).get(f"/sessions/{own.id}/").status_code == 200
    assert client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").status_code == 200
    assert client_for(cast.other_teacher).get(f"/sessions/{cast.session.id}/").status_code == 404


# --- /teach/ ------------------------------------------------------------------------------------


def _more_runs(cast: Cast) -> None:
    now = timezone.now()
    ok = Execution.objects.create(
        session=cast.session, seq=2, code="print('needle in code')", language="python", user=cast.owner,
        status="succeeded", started_at=now, finished_at=now, duration_ms=1500,
    )
    OutputChunk.objects.create(execution=ok, index=0, kind="stdout", text="needle in code\n")
    other = cast.classmate.chat_sessions.create(title="Carl's bash", language="bash", classroom=cast.class_a)
    slow = Execution.objects.create(
        session=other, seq=1, code="sleep 100", language="bash", user=cast.classmate, status="timed_out",
        started_at=now, finished_at=now, duration_ms=60000,
    )
    OutputChunk.objects.create(execution=slow, index=0, kind="stdout", text="haystack with a hidden needle\n")
    Execution.objects.create(session=other, seq=2, code="ls", language="bash", user=cast.classmate, status="running", started_at=now)


def test_the_class_page_lists_the_roster_with_figures_and_a_live_dot(cast: Cast) -> None:
    _more_runs(cast)
    page = client_for(cast.teacher).get(f"/teach/classrooms/{cast.class_a.id}/")
    summary = page.context["summary"]
    rows = {row.username: row for row in summary.students}
    olive, carl = rows["olive"], rows["carl"]
    assert (olive.sessions, olive.runs, olive.failed, olive.error_rate_text, olive.is_running) == (1, 2, 1, "50 %", False)
    assert olive.running_time_text == "1.54 s"
    assert (carl.runs, carl.failed, carl.error_rate_text, carl.is_running) == (2, 1, "100 %", True)
    assert cast.class_a.join_code in page.content.decode()
    live = client_for(cast.teacher).get(f"/teach/classrooms/{cast.class_a.id}/live.json").json()
    assert live == {"running": [cast.classmate.id]}


def test_teach_shows_only_the_teachers_classrooms(cast: Cast) -> None:
    page = client_for(cast.teacher).get("/teach/").content.decode()
    assert "Class A" in page and "Class B" not in page and cast.class_b.join_code not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {("olive", 1), ("olive", 2), ("carl", 1), ("carl", 2)}),
        ({"student": "{carl}"}, {("carl", 1), ("carl", 2)}),
        ({"language": "bash"}, {("carl", 1), ("carl", 2)}),
        ({"failed": "1"}, {("olive", 1), ("carl", 1)}),
        ({"q": "needle"}, {("olive", 2), ("carl", 1)}),  # code and output text
        ({"q": "NAMEERROR"}, set()),  # error names aren't searched; error values are
        ({"q": "is not defined"}, {("olive", 1)}),
        ({"date_from": "2000-01-01", "date_to": "2000-01-02"}, set()),
    ],
)
def test_classroom_runs_filter_and_search(cast: Cast, query: dict, expected: set) -> None:
    _more_runs(cast)
    query = {k: v.replace("{carl}", str(cast.classmate.id)) for k, v in query.items()}
    page = client_for(cast.teacher).get(f"/teach/classrooms/{cast.class_a.id}/", query)
    names = {"Olive Owner": "olive", "Carl": "carl"}
    assert {(names[r.student_name], r.seq) for r in page.context["runs"]} == expected


def test_a_bad_date_filter_says_so(cast: Cast) -> None:
    page = client_for(cast.teacher).get(f"/teach/classrooms/{cast.class_a.id}/", {"date_from": "yesterday"})
    assert page.status_code == 200 and "date from must be a date" in page.content.decode()


def test_runs_of_students_outside_the_classroom_never_show(cast: Cast) -> None:
    foreign = cast.other_student.chat_sessions.create(title="Sam's")
    Execution.objects.create(session=foreign, seq=1, code="print('needle')", language="python", user=cast.other_student)
    page = client_for(cast.teacher).get(f"/teach/classrooms/{cast.class_a.id}/", {"q": "needle", "student": str(cast.other_student.id)})
    assert page.context["runs"] == [] and page.context["student_sessions"] == []


def test_a_student_in_two_classes_counts_in_each_only_for_that_classs_sessions(cast: Cast) -> None:
    """olive is in A (her session, run 1 failed) and in B (one run going) and has private scratch work:
    each class's roster, run list, session list and live dots show only that class's sessions."""
    cast.class_b.students.add(cast.owner)
    now = timezone.now()
    in_b = cast.owner.chat_sessions.create(title="Olive's art", classroom=cast.class_b)
    Execution.objects.create(session=in_b, seq=1, code="draw()", language="python", user=cast.owner, status="running", started_at=now)
    scratch = cast.owner.chat_sessions.create(title="Olive's scratch")
    for seq in (1, 2):
        Execution.objects.create(
            session=scratch, seq=seq, code="print('scratch')", language="python", user=cast.owner,
            status="succeeded", started_at=now, finished_at=now, duration_ms=5,
        )
    for teacher, classroom, expected in (
        (cast.teacher, cast.class_a, ((1, 1, 1, "100 %", False), {"Olive's loops"}, {1}, [])),
        (cast.other_teacher, cast.class_b, ((1, 1, 0, "–", True), {"Olive's art"}, {1}, [cast.owner.id])),
    ):
        client = client_for(teacher)
        summary = client.get(f"/teach/classrooms/{classroom.id}/").context["summary"]
        olive = next(row for row in summary.students if row.username == "olive")
        page = client.get(f"/teach/classrooms/{classroom.id}/", {"student": str(cast.owner.id)})
        assert (olive.sessions, olive.runs, olive.failed, olive.error_rate_text, olive.is_running) == expected[0], classroom.name
        assert {s.title for s in page.context["student_sessions"]} == expected[1], classroom.name
        assert {r.session_title for r in page.context["runs"]} == expected[1], classroom.name
        assert {r.seq for r in page.context["runs"]} == expected[2], classroom.name
        assert client.get(f"/teach/classrooms/{classroom.id}/live.json").json() == {"running": expected[3]}


def test_the_migration_puts_a_students_sessions_in_their_only_class(cast: Cast) -> None:
    """The data move of 0011_session_classroom, run on real rows: olive (class A only) gets her chat
    sessions in A; sam in two classes and the teacher (in none as a student) stay private; an API
    session always stays private."""
    from django.apps import apps

    move = importlib.import_module("runner.migrations.0011_session_classroom").sessions_to_sole_class
    cast.class_a.students.add(cast.other_student)  # sam: in B and A
    olive_chat = cast.owner.chat_sessions.create(title="olive chat")
    olive_api = cast.owner.chat_sessions.create(title="olive api", kind="api")
    sam_chat = cast.other_student.chat_sessions.create(title="sam chat")
    tess_chat = cast.teacher.chat_sessions.create(title="tess chat")
    cast.owner.chat_sessions.update(classroom=None)
    move(apps, None)
    where = dict(cast.owner.chat_sessions.values_list("title", "classroom"))
    assert where == {"Olive's loops": cast.class_a.id, "olive chat": cast.class_a.id, "olive api": None}
    for session in (sam_chat, tess_chat, olive_api):
        session.refresh_from_db()
        assert session.classroom_id is None, session.title
    assert olive_chat.pk in set(cast.class_a.sessions.values_list("pk", flat=True))


def test_the_page_offers_the_students_classes_with_their_only_class_preselected(cast: Cast) -> None:
    page = client_for(cast.owner).get(f"/sessions/{cast.session.id}/").content.decode()
    picker = page.split('id="new-session-classroom"')[1].split("</select>")[0]
    assert '<option value="" selected>Private</option>' not in picker  # olive is in one class: it is the default
    assert f'<option value="{cast.class_a.id}" selected>Class A</option>' in picker and "Class B" not in picker
    cast.class_b.students.add(cast.owner)  # in two classes: nothing is guessed
    page = client_for(cast.owner).get("/").content.decode()
    picker = page.split('id="new-session-classroom"')[1].split("</select>")[0]
    assert '<option value="" selected>Private</option>' in picker and "Class B" in picker


def test_the_owner_moves_a_session_between_private_and_a_class(cast: Cast) -> None:
    client = client_for(cast.owner)
    assert client.post(f"/sessions/{cast.session.id}/classroom/", {"classroom": ""}).status_code == 302
    cast.session.refresh_from_db()
    assert cast.session.classroom is None
    assert client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").status_code == 404
    assert 'class="badge class-badge"' not in client.get("/").content.decode()
    moved = client.post(f"/sessions/{cast.session.id}/classroom/", {"classroom": str(cast.class_a.id)}, HTTP_ACCEPT="application/json")
    assert moved.json() == {"ok": True, "classroom": "Class A"}
    watch = client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").content.decode()
    assert '<span class="chip class-chip" id="session-class">Class A</span>' in watch
    sidebar = client.get("/").content.decode().split('id="session-list"')[1]
    assert 'class="badge class-badge" title="In the class Class A: its teachers see it">Class A</span>' in sidebar


def test_an_api_session_stays_private(cast: Cast) -> None:
    """An API sandbox's session can't be moved into a class (400, nothing changes) and has no picker."""
    api = cast.owner.chat_sessions.create(title="API sandbox", kind="api")
    client = client_for(cast.owner)
    refused = client.post(f"/sessions/{api.id}/classroom/", {"classroom": str(cast.class_a.id)})
    assert refused.status_code == 400 and "stay private" in refused.content.decode()
    api.refresh_from_db()
    assert api.classroom_id is None
    assert 'id="session-classroom"' not in client.get(f"/sessions/{api.id}/").content.decode()
    assert client_for(cast.teacher).get(f"/sessions/{api.id}/").status_code == 404


# --- the teacher's read-only session page -------------------------------------------------------


def test_the_teachers_session_page_has_a_comment_box_instead_of_the_composer(cast: Cast) -> None:
    page = client_for(cast.teacher).get(f"/sessions/{cast.session.id}/").content.decode()
    assert 'id="composer"' not in page and 'id="composer-code"' not in page
    assert 'id="comment-box"' in page and "read-only" in page
    assert 'data-action="rerun"' not in page and 'id="restart-dialog"' not in page
    data = json.loads(page.split('id="page-data" type="application/json">')[1].split("</script>")[0])
    assert data["can_run"] is False and data["access"] == "teacher"


def test_an_admin_audits_read_only_without_a_comment_box(cast: Cast) -> None:
    page = client_for(cast.admin).get(f"/sessions/{cast.session.id}/").content.decode()
    assert 'id="composer"' not in page and 'id="comment-box"' not in page
    assert "Nice loop" in page


def test_the_owner_sees_comments_under_the_run_with_author_and_time(cast: Cast) -> None:
    page = client_for(cast.owner).get(f"/sessions/{cast.session.id}/").content.decode()
    turn = page.split(f'id="run-{cast.execution.id}"')[1]
    assert "Tess Teacher" in turn and "<strong>fix</strong>" in turn
    assert f'id="comment-{cast.comment.id}"' in turn and 'id="composer"' in page
    assert f'/comments/{cast.comment.id}/delete/' not in page  # only the author edits or deletes


def test_a_teacher_restart_or_rename_is_forbidden(cast: Cast) -> None:
    client = client_for(cast.teacher)
    assert client.post(f"/sessions/{cast.session.id}/rename/", {"title": "mine"}).status_code == 403
    assert client.post(f"/sessions/{cast.session.id}/restart/").status_code == 403
    cast.session.refresh_from_db()
    assert cast.session.title == "Olive's loops"


# --- comments -----------------------------------------------------------------------------------


def _comment(client: Client, cast: Cast, body: str, execution_id: int | None = None, **headers):
    return client.post(
        f"/sessions/{cast.session.id}/comments/",
        {"execution_id": str(execution_id or cast.execution.id), "body": body}, **headers,
    )


def test_a_teacher_comments_and_it_renders_for_the_student(cast: Cast) -> None:
    response = _comment(client_for(cast.teacher), cast, "Try `range(1, 4)`", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json()["ok"] is True
    page = client_for(cast.owner).get(f"/sessions/{cast.session.id}/").content.decode()
    assert "<code>range(1, 4)</code>" in page


@pytest.mark.django_db(transaction=True)  # on_commit callbacks run, as in a request outside tests
def test_with_the_channel_layer_down_a_comment_is_still_saved_edited_and_deleted(cast: Cast) -> None:
    """Redis down: publishing is best effort (sockets catch up when they reconnect), the write holds."""
    teacher = client_for(cast.teacher)
    with override_settings(CHANNEL_LAYERS=dead_channel_layer()):
        response = _comment(teacher, cast, "Saved anyway", HTTP_ACCEPT="application/json")
        assert response.status_code == 200 and response.json()["ok"] is True
        assert teacher.post(f"/comments/{cast.comment.id}/edit/", {"body": "edited anyway"}).status_code == 302
        saved = Comment.objects.get(body="Saved anyway")
        assert teacher.post(f"/comments/{saved.id}/delete/").status_code == 302
    assert Comment.objects.get(pk=cast.comment.pk).body == "edited anyway"
    assert Comment.objects.get(pk=saved.pk).deleted_at is not None


def test_html_and_script_in_a_comment_are_inert(cast: Cast) -> None:
    body = '<script>window.pwned=1</script><img src=x onerror="alert(1)"><a href="javascript:alert(1)">x</a>\n\n**ok**'
    _comment(client_for(cast.teacher), cast, body)
    page = client_for(cast.owner).get(f"/sessions/{cast.session.id}/").content.decode()
    rendered = page.split('class="comment-body rich">')[2].split("</div>")[0]
    assert "<script" not in rendered and "onerror" not in rendered and "javascript:" not in rendered
    assert "<strong>ok</strong>" in rendered


@override_settings(COMMENT_MAX_CHARS=100)
def test_a_huge_comment_is_refused_with_the_limit(cast: Cast) -> None:
    response = _comment(client_for(cast.teacher), cast, "x" * 101, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["message"] == "A comment can be at most 100 characters; this one has 101."
    assert Comment.objects.count() == 1


def test_a_megabyte_comment_is_refused_at_the_default_limit(cast: Cast) -> None:
    response = _comment(client_for(cast.teacher), cast, "y" * 1_000_000)
    assert response.status_code == 400 and b"at most 10,000 characters" in response.content


def test_an_empty_comment_is_refused(cast: Cast) -> None:
    assert _comment(client_for(cast.teacher), cast, "   ").status_code == 400


@override_settings(COMMENTS_PER_MINUTE=2)
def test_comment_floods_are_rate_limited(cast: Cast) -> None:
    client = client_for(cast.teacher)
    assert [_comment(client, cast, f"n{i}").status_code for i in range(3)] == [302, 302, 429]


def test_commenting_on_a_run_of_a_session_one_may_not_see_is_404(cast: Cast) -> None:
    for user in (cast.other_teacher, cast.classmate):
        assert _comment(client_for(user), cast, "hello").status_code == 404
    assert Comment.objects.count() == 1


def test_a_run_of_another_session_answers_like_an_unknown_run(cast: Cast) -> None:
    """Posting to a session the teacher sees, with a run id from a session they don't: same 404."""
    foreign = cast.other_student.chat_sessions.create(title="Sam's")
    foreign_run = Execution.objects.create(session=foreign, seq=1, code="1", language="python", user=cast.other_student)
    client = client_for(cast.teacher)
    probe = _comment(client, cast, "x", execution_id=foreign_run.id)
    unknown = _comment(client, cast, "x", execution_id=987654321)
    assert (probe.status_code, probe.content) == (unknown.status_code, unknown.content) == (404, unknown.content)
    output_probe = client.get(f"/sessions/{cast.session.id}/executions/{foreign_run.id}/output/")
    output_unknown = client.get(f"/sessions/{cast.session.id}/executions/987654321/output/")
    assert (output_probe.status_code, output_probe.content) == (output_unknown.status_code, output_unknown.content)


def test_comment_ids_leak_nothing_across_users(cast: Cast) -> None:
    """Another class's teacher probing a comment id gets the unknown-id answer, for edit and delete."""
    client = client_for(cast.other_teacher)
    for action in ("edit", "delete"):
        probe = client.post(f"/comments/{cast.comment.id}/{action}/", {"body": "x"})
        unknown = client.post(f"/comments/987654321/{action}/", {"body": "x"})
        assert (probe.status_code, probe.content) == (unknown.status_code, unknown.content)
        assert probe.status_code == 404
    cast.comment.refresh_from_db()
    assert cast.comment.body.startswith("Nice loop") and cast.comment.deleted_at is None


def test_only_the_author_edits_or_deletes(cast: Cast) -> None:
    second_teacher = cast.classmate  # teaching too, for this test
    cast.class_a.teachers.add(second_teacher)
    client = client_for(second_teacher)
    assert client.post(f"/comments/{cast.comment.id}/edit/", {"body": "mine now"}).status_code == 403
    assert client.post(f"/comments/{cast.comment.id}/delete/").status_code == 403
    assert client_for(cast.owner).post(f"/comments/{cast.comment.id}/delete/").status_code == 403
    author = client_for(cast.teacher)
    assert author.post(f"/comments/{cast.comment.id}/edit/", {"body": "Better: **fix** it"}).status_code == 302
    cast.comment.refresh_from_db()
    assert (cast.comment.body, cast.comment.version) == ("Better: **fix** it", 2) and cast.comment.edited_at
    assert author.post(f"/comments/{cast.comment.id}/delete/").status_code == 302
    assert author.post(f"/comments/{cast.comment.id}/delete/").status_code == 404  # gone is gone


def test_the_comment_box_offers_the_teachers_last_comments_as_snippets(cast: Cast) -> None:
    client = client_for(cast.teacher)
    for body in ("Check your indentation.", "Use a loop.", "Check your indentation."):
        _comment(client, cast, body)
    snippets = client.get(f"/sessions/{cast.session.id}/").context["snippets"]
    assert snippets[:3] == ["Check your indentation.", "Use a loop.", "Nice loop; now **fix** the NameError."]


# --- exports ------------------------------------------------------------------------------------


def test_exports_carry_comments_for_owner_teacher_and_admin(cast: Cast) -> None:
    for user in (cast.owner, cast.teacher, cast.admin):
        client = client_for(user)
        notebook = nbformat.reads(client.get(f"/sessions/{cast.session.id}/export.ipynb").content.decode(), as_version=4)
        nbformat.validate(notebook)
        code_index = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code")
        note = notebook.cells[code_index + 1]
        assert note.cell_type == "markdown" and "Comment by Tess Teacher" in note.source and "**fix**" in note.source
        markdown = client.get(f"/sessions/{cast.session.id}/export.md").content.decode()
        assert "> **Comment by Tess Teacher" in markdown and "> Nice loop; now **fix** the NameError." in markdown


def test_deleted_comments_stay_out_of_exports(cast: Cast) -> None:
    client_for(cast.teacher).post(f"/comments/{cast.comment.id}/delete/")
    markdown = client_for(cast.owner).get(f"/sessions/{cast.session.id}/export.md").content.decode()
    assert "Comment by" not in markdown


# --- the demo -----------------------------------------------------------------------------------


def test_demo_accounts_make_a_teacher_two_students_in_demo_class_and_an_admin(capsys) -> None:
    from django.core.management import call_command

    call_command("demo_accounts")
    first = capsys.readouterr().out
    for name in ("teacher", "student", "student2", "admin"):
        assert f"demo login created: {name} / " in first
    classroom = Classroom.objects.get(name="Demo class")
    assert {u.username for u in classroom.teachers.all()} == {"teacher"}
    assert {u.username for u in classroom.students.all()} == {"student", "student2"}
    call_command("demo_accounts")
    assert capsys.readouterr().out == ""  # logins are printed once
    assert Classroom.objects.filter(name="Demo class").count() == 1


def test_the_sidebar_links_teach_for_teachers_and_classes_for_everyone(cast: Cast) -> None:
    teacher_page = client_for(cast.teacher).get("/").content.decode()
    student_page = client_for(cast.owner).get("/").content.decode()
    assert 'href="/teach/"' in teacher_page and 'href="/teach/"' not in student_page
    assert 'href="/join/"' in teacher_page and 'href="/join/"' in student_page


def test_a_run_an_admin_stopped_is_not_in_the_students_error_rate(cast: Cast) -> None:
    _more_runs(cast)  # olive: one failed, one succeeded
    now = timezone.now()
    for seq in (3, 4):
        Execution.objects.create(session=cast.session, seq=seq, code="x", language="python", user=cast.owner,
                                 status="killed", started_at=now, finished_at=now, duration_ms=10)
    olive = {row.username: row for row in client_for(cast.teacher).get(f"/teach/classrooms/{cast.class_a.id}/").context["summary"].students}["olive"]
    assert (olive.runs, olive.failed, olive.error_rate_text) == (4, 1, "50 %")


def test_teach_lists_each_class_with_its_counts_and_links_not_its_roster(cast: Cast) -> None:
    _more_runs(cast)
    page = client_for(cast.teacher).get("/teach/")
    (row,) = page.context["classrooms"]
    assert (row.classroom, row.students, row.sessions, row.runs, row.running_now, row.assignments) == (cast.class_a, 2, 2, 4, 1, 1)
    html = page.content.decode()
    assert f'href="/teach/classrooms/{cast.class_a.id}/"' in html
    assert cast.class_a.join_code in html
    assert "Olive" not in html and "Carl" not in html  # the roster is on the class page


def _many_runs(cast: Cast, n: int) -> None:
    now = timezone.now()
    Execution.objects.bulk_create(
        Execution(session=cast.session, seq=seq, code=f"print({seq})", language="python", user=cast.owner,
                  status="succeeded", started_at=now, finished_at=now, duration_ms=1)
        for seq in range(2, n + 1)
    )


def test_the_run_list_says_200_of_516_and_pages_through_them(cast: Cast) -> None:
    _many_runs(cast, 516)
    client = client_for(cast.teacher)
    first = client.get(f"/teach/classrooms/{cast.class_a.id}/")
    assert len(first.context["runs"]) == 200
    assert "1–200 of 516 runs" in first.content.decode()
    assert first.context["run_pager"].next_url == f"/teach/classrooms/{cast.class_a.id}/?page=2"
    assert first.context["run_pager"].previous_url == ""
    last = client.get(f"/teach/classrooms/{cast.class_a.id}/", {"page": "3", "failed": ""})
    assert len(last.context["runs"]) == 116
    assert "401–516 of 516 runs" in last.content.decode()
    assert last.context["run_pager"].next_url == ""
    assert [r.seq for r in last.context["runs"]][-1] == 1  # newest first: run 1 is the very last
    beyond = client.get(f"/teach/classrooms/{cast.class_a.id}/", {"page": "99"})
    assert beyond.context["runs"] == last.context["runs"]


def test_the_run_list_sorts_by_any_column_both_ways(cast: Cast) -> None:
    _more_runs(cast)
    url = f"/teach/classrooms/{cast.class_a.id}/"
    client = client_for(cast.teacher)
    assert [r.student_name for r in client.get(url, {"sort": "student"}).context["runs"]][0] == "Carl"
    assert [r.student_name for r in client.get(url, {"sort": "-student"}).context["runs"]][0] == "Olive Owner"
    assert [r.language_label for r in client.get(url, {"sort": "language"}).context["runs"]][:2] == ["Bash", "Bash"]
    assert [r.seq for r in client.get(url, {"sort": "when"}).context["runs"]][0] == 1
    page = client.get(url, {"sort": "-status"})
    assert [r.status_class for r in page.context["runs"]][0] == "warn"  # timed_out sorts last, first when descending
    headers = {c.label: c for c in page.context["run_columns"]}
    assert headers["Status"].aria_sort == "descending" and "sort=status" in headers["Status"].url
    assert headers["Student"].aria_sort == "none" and "sort=student" in headers["Student"].url
    assert 'aria-sort="descending"' in page.content.decode()


def test_the_roster_sorts_by_any_column_and_counts_only_the_dates_asked(cast: Cast) -> None:
    _more_runs(cast)
    url = f"/teach/classrooms/{cast.class_a.id}/"
    client = client_for(cast.teacher)
    names = lambda params: [row.username for row in client.get(url, params).context["roster"]]  # noqa: E731
    assert names({}) == ["carl", "olive"]
    assert names({"roster_sort": "-error_rate"}) == ["carl", "olive"]  # 100 % before 50 %
    assert names({"roster_sort": "error_rate"}) == ["olive", "carl"]
    assert names({"roster_sort": "-running_time"}) == ["carl", "olive"]
    assert names({"roster_sort": "-name"}) == ["olive", "carl"]
    # olive's first run was last year: from today on she has one run, none failed
    Execution.objects.filter(pk=cast.execution.pk).update(created_at=timezone.now() - timezone.timedelta(days=400))
    today = timezone.localdate().isoformat()
    page = client.get(url, {"date_from": today})
    olive = next(row for row in page.context["roster"] if row.username == "olive")
    assert (olive.runs, olive.failed, olive.error_rate_text) == (1, 0, "0 %")
    assert len(page.context["runs"]) == 3
