"""The session websocket with classrooms: who may connect (every role, as in the HTTP matrix),
a teacher's socket is a viewer, comments arrive live and on reconnect, and leaving or removal
closes an open socket with 4403 at once. The cast is in tests/fixtures_classrooms.py."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from project.asgi import application
from runner import services
from runner.models import Execution
from tests.fixtures_classrooms import ROLES, Cast
from tests.fixtures_runs import receive
from tests.test_access_matrix import WS_ROWS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

SESSION_ROUTE = "ws/sessions/<uuid:session_id>/"


async def _hello(ws) -> dict:
    frame = await receive(ws)
    assert frame["type"] == "hello"
    return frame


async def _assert_open(ws) -> None:
    await ws.send_json_to({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def _until(ws, kind: str) -> dict:
    while True:
        frame = await receive(ws)
        if frame["type"] == kind:
            return frame


@pytest.mark.parametrize("role", ROLES)
async def test_session_socket_by_role(connect, live_cast: Cast, role: str) -> None:
    expected = WS_ROWS[SESSION_ROUTE][role]
    ws = await connect(live_cast.user(role), live_cast.session)
    if isinstance(expected, int):
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": expected}
        return
    hello = await _hello(ws)
    assert (hello["can_run"], hello["can_comment"]) == {
        "hello:run": (True, False), "hello:comment": (False, True), "hello:watch": (False, False),
    }[expected]


async def test_session_socket_from_a_foreign_origin_is_refused(live_cast: Cast, runs_cleanup) -> None:
    from tests.fixtures_runs import _cookie_for

    import asyncio

    cookie = await asyncio.to_thread(_cookie_for, live_cast.teacher)
    ws = WebsocketCommunicator(
        application, f"/ws/sessions/{live_cast.session.id}/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)]
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected is False
    await ws.disconnect()


async def test_a_teachers_socket_may_not_run_or_stop(connect, live_cast: Cast) -> None:
    ws = await connect(live_cast.teacher, live_cast.session)
    await _hello(ws)
    await ws.send_json_to({"type": "run", "code": "print('sneaky')", "language": "python", "client_id": "t1"})
    assert (await receive(ws))["code"] == "forbidden"
    await ws.send_json_to({"type": "stop", "execution_id": live_cast.execution.id})
    assert (await receive(ws))["code"] == "forbidden"
    assert await Execution.objects.acount() == 1
    await _assert_open(ws)


async def test_a_comment_reaches_the_students_open_socket_live(connect, live_cast: Cast) -> None:
    student = await connect(live_cast.owner, live_cast.session)
    await _hello(student)
    comment = await sync_to_async(services.comment_create)(
        author=live_cast.teacher, execution=live_cast.execution, body="Look at <b>line 2</b><script>alert(1)</script>"
    )
    frame = await _until(student, "comment.added")
    assert frame["comment_id"] == comment.pk and frame["execution_id"] == live_cast.execution.id
    assert frame["author"] == "Tess Teacher" and frame["can_edit"] is False and frame["version"] == 1
    assert "<script" not in frame["html"] and "<b>line 2</b>" in frame["html"]

    await sync_to_async(services.comment_edit)(comment=comment, author=live_cast.teacher, body="Look at line 3")
    changed = await _until(student, "comment.changed")
    assert (changed["version"], changed["body"]) == (2, "Look at line 3") and changed["edited_at"]

    await sync_to_async(services.comment_delete)(comment=comment, author=live_cast.teacher)
    deleted = await _until(student, "comment.deleted")
    assert deleted == {"type": "comment.deleted", "comment_id": comment.pk, "execution_id": live_cast.execution.id, "version": 3}


async def test_comments_are_replayed_on_reconnect_with_edits_and_deletions(connect, live_cast: Cast) -> None:
    """A student who was away gets each comment's current state after the run replay."""
    gone = await sync_to_async(services.comment_create)(author=live_cast.teacher, execution=live_cast.execution, body="soon gone")
    await sync_to_async(services.comment_delete)(comment=gone, author=live_cast.teacher)
    await sync_to_async(services.comment_edit)(comment=live_cast.comment, author=live_cast.teacher, body="Edited while away")
    ws = await connect(live_cast.owner, live_cast.session, query=f"after_execution={live_cast.execution.id}&after_index=0")
    await _hello(ws)
    frames = [await receive(ws) for _ in range(3)]
    assert frames[0]["type"] == "execution.finished"
    assert frames[1]["type"] == "comment.changed" and frames[1]["body"] == "Edited while away" and frames[1]["version"] == 2
    assert frames[2] == {"type": "comment.deleted", "comment_id": gone.pk, "execution_id": live_cast.execution.id, "version": 2}
    assert await ws.receive_nothing(timeout=0.3)


async def test_the_author_sees_can_edit_in_frames(connect, live_cast: Cast) -> None:
    ws = await connect(live_cast.teacher, live_cast.session, query="after_execution=0&after_index=-1")
    await _hello(ws)
    frame = await _until(ws, "comment.added")
    assert frame["comment_id"] == live_cast.comment.pk and frame["can_edit"] is True


async def test_removing_the_student_closes_the_teachers_open_socket_with_4403(connect, live_cast: Cast) -> None:
    teacher = await connect(live_cast.teacher, live_cast.session)
    student = await connect(live_cast.owner, live_cast.session)
    await _hello(teacher)
    await _hello(student)
    await sync_to_async(services.classroom_student_remove)(classroom=live_cast.class_a, student_id=live_cast.owner.id)
    assert await teacher.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await _assert_open(student)  # the owner keeps her own session


async def test_a_teacher_leaving_the_classroom_loses_the_open_socket_at_once(connect, live_cast: Cast) -> None:
    teacher = await connect(live_cast.teacher, live_cast.session)
    await _hello(teacher)
    await sync_to_async(services.classroom_leave)(classroom=live_cast.class_a, user=live_cast.teacher)
    assert await teacher.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_an_unrelated_membership_change_leaves_sockets_open(connect, live_cast: Cast) -> None:
    teacher = await connect(live_cast.teacher, live_cast.session)
    await _hello(teacher)
    await sync_to_async(services.classroom_student_remove)(classroom=live_cast.class_a, student_id=live_cast.classmate.id)
    await _assert_open(teacher)


async def test_removing_the_student_in_the_django_admin_closes_the_teachers_socket(connect, live_cast: Cast) -> None:
    from django.test import Client

    teacher = await connect(live_cast.teacher, live_cast.session)
    await _hello(teacher)

    def admin_removes_olive() -> int:
        client = Client()
        client.force_login(live_cast.admin)
        classroom = live_cast.class_a
        response = client.post(
            f"/admin/runner/classroom/{classroom.id}/change/",
            {"name": classroom.name, "teachers": [live_cast.teacher.id], "students": [live_cast.classmate.id], "archived_at_0": "", "archived_at_1": ""},
        )
        return response.status_code

    assert await sync_to_async(admin_removes_olive)() == 302
    assert await teacher.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_moving_the_session_out_of_the_class_closes_the_teachers_open_socket(connect, live_cast: Cast) -> None:
    """The owner moves her session to private (the header's form): the class's teacher is closed out
    at once; the owner's socket stays open."""
    from django.test import Client

    teacher = await connect(live_cast.teacher, live_cast.session)
    student = await connect(live_cast.owner, live_cast.session)
    await _hello(teacher)
    await _hello(student)

    def owner_makes_it_private() -> int:
        client = Client()
        client.force_login(live_cast.owner)
        return client.post(f"/sessions/{live_cast.session.id}/classroom/", {"classroom": ""}).status_code

    assert await sync_to_async(owner_makes_it_private)() == 302
    assert await teacher.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await _assert_open(student)


async def test_moving_the_session_to_another_class_hands_it_to_that_classs_teacher(connect, live_cast: Cast) -> None:
    await sync_to_async(live_cast.class_b.students.add)(live_cast.owner)
    teacher_a = await connect(live_cast.teacher, live_cast.session)
    await _hello(teacher_a)
    await sync_to_async(services.session_classroom_set)(session=live_cast.session, classroom=live_cast.class_b)
    assert await teacher_a.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    teacher_b = await connect(live_cast.other_teacher, live_cast.session)
    assert (await _hello(teacher_b))["can_comment"] is True
