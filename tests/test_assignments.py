"""Assignments end to end: start (one session, starter files and code), hand in (a snapshot,
late past due), checks in a fresh sandbox (never the student's kernel, so patching it gains
nothing), grade and feedback shown to the student, grades.csv and the class's export zip.

Who is who: tess teaches "Python 101"; olive and carl are its students; sam is in no class.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import zipfile
from datetime import timedelta
from typing import Any

import nbformat
import pytest
from django.core.exceptions import ValidationError
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from runner import selectors, services
from runner.models import Assignment, AssignmentFile, ChatSession, Classroom, Execution, SandboxLease, Submission, SubmissionFile
from tests.fixtures_runs import Connect, receive, receive_until_finished, run
from tests.fixtures_sandboxes import local_backend_or_skip

CHECKS = '''
def check_add():
    """add(2, 3) is 5"""
    assert add(2, 3) == 5, "add(2, 3) should be 5"

def check_starter_file():
    """the starter file is there"""
    assert open("data.csv").read().startswith("x,y"), "data.csv is missing"

def check_answer_file():
    """answer.txt holds 42"""
    assert open("answer.txt").read().strip() == "42", "answer.txt should hold 42"
'''


def _class() -> tuple[Any, Any, Any, Classroom]:
    User = get_user_model()
    tess = User.objects.create_user("tess", first_name="Tess")
    olive = User.objects.create_user("olive", first_name="Olive")
    carl = User.objects.create_user("carl", first_name="Carl")
    classroom = Classroom.objects.create(name="Python 101")
    classroom.teachers.add(tess)
    classroom.students.add(olive, carl)
    return tess, olive, carl, classroom


def _assignment(classroom: Classroom, **fields: Any) -> Assignment:
    defaults: dict[str, Any] = {"title": "Adding", "starter_code": "def add(a, b):\n    ...", "checks": CHECKS, "points": 10}
    assignment = Assignment.objects.create(classroom=classroom, **{**defaults, **fields})
    AssignmentFile.objects.create(assignment=assignment, name="data.csv", data=b"x,y\n1,2\n", size_bytes=8)
    return assignment


def _body(response: Any) -> bytes:
    """A streamed response's bytes (its content is an async iterator: served chunk by chunk under ASGI)."""
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_start_makes_one_session_with_the_starter_files_and_code() -> None:
    local_backend_or_skip()
    _, olive, _, classroom = _class()
    assignment = _assignment(classroom)
    client = _client(olive)
    first = client.post(f"/assignments/{assignment.pk}/start/")
    session = ChatSession.objects.get(owner=olive, assignment=assignment)
    assert first.status_code == 302 and first["Location"] == f"/sessions/{session.id}/"
    assert session.classroom_id == classroom.pk and session.title == "Adding"
    assert async_to_sync(selectors.workspace_file)(session=session, path="data.csv") == b"x,y\n1,2\n"
    page = client.get(f"/sessions/{session.id}/").content.decode()
    assert "def add(a, b):\n    ...</textarea>" in page
    assert "Hand in" in page
    again = client.post(f"/assignments/{assignment.pk}/start/")
    assert again["Location"] == f"/sessions/{session.id}/"
    assert ChatSession.objects.filter(owner=olive, assignment=assignment).count() == 1


@pytest.mark.django_db
def test_a_hand_in_past_the_due_date_is_marked_late() -> None:
    local_backend_or_skip()
    _, olive, carl, classroom = _class()
    late = _assignment(classroom, title="Yesterday's", checks="", due_at=timezone.now() - timedelta(hours=1))
    on_time = _assignment(classroom, title="Tomorrow's", checks="", due_at=timezone.now() + timedelta(days=1))
    client = _client(olive)
    for assignment in (late, on_time):
        client.post(f"/assignments/{assignment.pk}/start/")
        assert client.post(f"/assignments/{assignment.pk}/hand-in/").status_code == 302
    assert Submission.objects.get(assignment=late).late is True
    assert Submission.objects.get(assignment=on_time).late is False
    grid = {row.name: row.state for row in selectors.assignment_grid(assignment=late)}
    assert grid == {"Olive": "late", "Carl": "not_started"}
    assert "Handed in late" in client.get("/assignments/").content.decode()


@pytest.mark.django_db
def test_hand_in_before_starting_is_refused_with_a_reason() -> None:
    _, olive, _, classroom = _class()
    assignment = _assignment(classroom)
    response = _client(olive).post(f"/assignments/{assignment.pk}/hand-in/", HTTP_ACCEPT="application/json")
    assert response.status_code == 409 and "Start the assignment first" in response.json()["error"]
    assert not Submission.objects.exists()


@pytest.mark.django_db
@override_settings(ASSIGNMENT_CHECKS_PER_10MIN=2)
def test_hand_ins_and_checks_are_rate_limited() -> None:
    local_backend_or_skip()
    _, olive, _, classroom = _class()
    assignment = _assignment(classroom, checks="")  # no checks: nothing queued, only the limit counts
    client = _client(olive)
    client.post(f"/assignments/{assignment.pk}/start/")
    answers = [client.post(f"/assignments/{assignment.pk}/check/", HTTP_ACCEPT="application/json").status_code for _ in range(3)]
    assert answers == [201, 201, 429]


@pytest.mark.django_db
def test_grade_and_feedback_are_shown_to_the_student() -> None:
    tess, olive, carl, classroom = _class()
    assignment = _assignment(classroom)
    submission = Submission.objects.create(assignment=assignment, student=olive, checks_status="done", checks_passed=2, checks_total=3)
    teacher = _client(tess)
    response = teacher.post(f"/teach/submissions/{submission.pk}/grade/", {"score": "8.5", "feedback": "Nearly: check the sign in add."})
    assert response.status_code == 302
    assert teacher.post(f"/teach/submissions/{submission.pk}/grade/", {"score": "11"}).status_code == 302  # over the points: refused
    submission.refresh_from_db()
    assert str(submission.score) == "8.50"
    page = _client(olive).get(f"/assignments/{assignment.pk}/").content.decode()
    assert "8.50 / 10" in page and "Nearly: check the sign in add." in page
    assert "8.50" not in _client(carl).get(f"/assignments/{assignment.pk}/").content.decode()
    # Handed in again after the grade: the grade stays in sight, said to be for the earlier hand-in.
    Submission.objects.create(assignment=assignment, student=olive, checks_status="none")
    page = _client(olive).get(f"/assignments/{assignment.pk}/").content.decode()
    assert "8.50 / 10" in page and "graded the newer one yet" in page


@pytest.mark.django_db
def test_grades_csv_has_the_header_first_and_escapes_formulas() -> None:
    tess, olive, carl, classroom = _class()
    carl.first_name = "=HYPERLINK(\"http://evil\")"
    carl.save()
    assignment = _assignment(classroom, due_at=timezone.now() - timedelta(hours=1))
    Submission.objects.create(assignment=assignment, student=olive, late=True, checks_status="done", checks_passed=2,
                              checks_total=3, score="7.00")
    response = _client(tess).get(f"/teach/assignments/{assignment.pk}/grades.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(_body(response).decode())))
    assert rows[0][:6] == ["student", "name", "handed_in_at", "late", "checks_passed", "checks_total"]
    assert rows[0][6] == "score"
    by_student = {row[0]: row for row in rows[1:]}
    assert by_student["olive"][3:7] == ["yes", "2", "3", "7.00"] and by_student["olive"][2]
    assert by_student["carl"][1] == "'=HYPERLINK(\"http://evil\")"
    assert by_student["carl"][2:7] == ["", "", "", "", ""]


@pytest.mark.django_db
def test_class_export_zip_holds_valid_notebooks_hand_ins_and_grades() -> None:
    tess, olive, carl, classroom = _class()
    assignment = _assignment(classroom)
    session = ChatSession.objects.create(owner=olive, title="Olive's adding", classroom=classroom, assignment=assignment)
    ChatSession.objects.create(owner=olive, title="Private scratch")  # not the class's: left out
    Execution.objects.create(session=session, seq=1, code="print(1 + 1)", language="python", user=olive, status="succeeded")
    submission = Submission.objects.create(assignment=assignment, student=olive, session=session, checks_status="none",
                                           runs=[{"seq": 1, "code": "print(1 + 1)", "status": "succeeded"}])
    SubmissionFile.objects.create(submission=submission, path="../../etc/answer.txt", data=b"42", size_bytes=2)
    response = _client(tess).get(f"/teach/classrooms/{classroom.pk}/export.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(_body(response)))
    names = archive.namelist()
    notebooks = [n for n in names if n.endswith(".ipynb")]
    assert len(notebooks) == 1 and notebooks[0].startswith("olive/sessions/Olive")
    notebook = nbformat.reads(archive.read(notebooks[0]).decode(), as_version=4)
    nbformat.validate(notebook)
    assert any(cell.source == "print(1 + 1)" for cell in notebook.cells)
    files = [n for n in names if "/files/" in n]
    assert len(files) == 1 and ".." not in files[0] and archive.read(files[0]) == b"42"
    assert any(n.startswith("olive/submissions/Adding/1-") and n.endswith("/runs.json") for n in names)
    grades = [n for n in names if n.startswith("grades/")]
    assert len(grades) == 1 and archive.read(grades[0]).decode().startswith("student,")


def test_checks_split_into_one_per_def_check_or_per_assert_block() -> None:
    functions = services.checks_plan(source=CHECKS)
    assert [c.name for c in functions.checks] == ["check_add", "check_starter_file", "check_answer_file"]
    blocks = services.checks_plan(source="import math\n\nassert math.pi > 3\nassert math.e > 2\n\nx = 1\nassert x == 1, 'one'\n")
    assert [c.code for c in blocks.checks] == ["assert math.pi > 3\nassert math.e > 2", "x = 1\nassert x == 1, 'one'"]
    assert blocks.steps[0] == "import math"


def _checks_of_sync(submission_id: int) -> Submission:
    return Submission.objects.get(pk=submission_id)


async def _wait_for_checks(submission_id: int, timeout_s: float) -> Submission:
    """The submission once its checks are done (run by housekeeping on this loop, so never block it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        submission = await sync_to_async(_checks_of_sync)(submission_id)
        if not submission.checks_pending or time.monotonic() > deadline:
            return submission
        await asyncio.sleep(0.2)


@pytest.mark.django_db(transaction=True)
async def test_checks_run_in_a_fresh_sandbox_and_patching_the_live_kernel_gains_nothing(connect: Connect) -> None:
    """olive's live kernel ends up with a right `add` (from a run that then failed), her own
    always-passing `check_add`, and a patched AssertionError; the checks replay only her successful
    runs in a fresh sandbox, after the starter file and her files are put back, so `add` is her
    wrong one and check_add fails, while the file checks pass: 2 of 3."""
    local_backend_or_skip()
    _, olive, _, classroom = await sync_to_async(_class)()
    assignment = await sync_to_async(_assignment)(classroom)
    session, problem = await services.assignment_start(assignment=assignment, student=olive)
    assert problem == ""
    socket = await connect(olive, session)
    assert (await receive(socket))["type"] == "hello"
    for code in [
        "def add(a, b):\n    return a - b",
        "def check_add():\n    pass\nimport builtins\nbuiltins.AssertionError = type('Fake', (Exception,), {})",
        "open('answer.txt', 'w').write('42')",
        "def add(a, b):\n    return a + b\nraise RuntimeError('this run failed, so it is not replayed')",
    ]:
        await run(socket, code)
        await receive_until_finished(socket)
    live_kernel_sandbox = (await ChatSession.objects.aget(pk=session.pk)).sandbox_id
    assert live_kernel_sandbox
    submission = await services.assignment_hand_in(assignment=assignment, student=olive)
    assert submission.checks_status == "queued"
    # Housekeeping (started by the socket) claims it in the background.
    submission = await _wait_for_checks(submission.pk, 180)
    assert submission.checks_status == "done", submission.checks_message
    assert (submission.checks_passed, submission.checks_total) == (2, 3)
    results = {r["name"]: r for r in submission.check_results}
    assert results["check_add"]["passed"] is False
    assert results["check_add"]["message"] == "AssertionError: add(2, 3) should be 5"
    assert results["check_starter_file"]["passed"] and results["check_answer_file"]["passed"]
    # The checks had a sandbox of their own, billed to olive and closed; her live kernel is untouched.
    lease = await SandboxLease.objects.filter(user=olive, session__isnull=True).aget()
    assert lease.ended_at is not None and lease.sandbox_id != live_kernel_sandbox
    assert (await ChatSession.objects.aget(pk=session.pk)).sandbox_id == live_kernel_sandbox
    await run(socket, "print(add(2, 3))")
    frames = await receive_until_finished(socket)
    assert "5" in "".join(f.get("text", "") for f in frames if f["type"] == "execution.output")


@pytest.mark.django_db
def test_check_my_work_is_not_a_hand_in() -> None:
    local_backend_or_skip()
    tess, olive, _, classroom = _class()
    assignment = _assignment(classroom)
    client = _client(olive)
    client.post(f"/assignments/{assignment.pk}/start/")
    response = client.post(f"/assignments/{assignment.pk}/check/", HTTP_ACCEPT="application/json")
    assert response.status_code == 201 and response.json()["check"]["status"] == "queued"
    again = client.post(f"/assignments/{assignment.pk}/check/", HTTP_ACCEPT="application/json")
    assert again.status_code == 409  # one at a time: the first is still being checked
    assert not Submission.objects.handed_in().exists()
    assert {row.name: row.state for row in selectors.assignment_grid(assignment=assignment)}["Olive"] == "working"
    status = client.get(f"/assignments/{assignment.pk}/status.json").json()
    assert status["state"] == "working" and status["check"]["hand_in"] is False


@pytest.mark.django_db
def test_hidden_checks_show_only_their_names_and_the_teachers_messages() -> None:
    _, olive, _, classroom = _class()
    source = "secret = 41\nassert secret == 42\n\nassert 1 + 1 == 2, 'arithmetic works'\n"
    assignment = _assignment(classroom, checks=source, show_checks=False)
    Submission.objects.create(
        assignment=assignment, student=olive, is_hand_in=False, checks_status="done", checks_passed=1, checks_total=2,
        check_results=[
            {"name": "check 1", "description": "assert secret == 42", "passed": False, "message": "Failed: assert secret == 42"},
            {"name": "check 2", "description": "assert 1 + 1 == 2, 'arithmetic works'", "passed": True, "message": ""},
        ],
    )
    page = _client(olive).get(f"/assignments/{assignment.pk}/").content.decode()
    assert "1 of 2 checks passed" in page and "check 1" in page
    assert "secret" not in page
    assignment.show_checks = True
    assignment.save()
    assert "assert secret == 42" in _client(olive).get(f"/assignments/{assignment.pk}/").content.decode()


@pytest.mark.django_db
def test_an_assignments_session_stays_in_its_class() -> None:
    _, olive, _, classroom = _class()
    assignment = _assignment(classroom)
    session = ChatSession.objects.create(owner=olive, title="Adding", classroom=classroom, assignment=assignment)
    response = _client(olive).post(f"/sessions/{session.id}/classroom/", {"classroom": ""})
    assert response.status_code == 400
    session.refresh_from_db()
    assert session.classroom_id == classroom.pk


@pytest.mark.django_db
@override_settings(SANDBOX_WORKSPACE_QUOTA_MB=1)
def test_starter_files_are_checked_like_uploads_and_kept_within_the_quota() -> None:
    tess, _, _, classroom = _class()
    client = _client(tess)
    url = f"/teach/classrooms/{classroom.pk}/assignments/new/"
    # Django's upload parser already strips folders from names; the service checks again, as uploads do.
    with pytest.raises(ValidationError):
        services.assignment_save(classroom=classroom, assignment=None, fields=services.AssignmentFields(title="Bad name"),
                                 uploads=[services.Upload(name="../evil.py", data=b"x")])
    assert not Assignment.objects.filter(title="Bad name").exists()
    big = [io.BytesIO(b"x" * 600_000), io.BytesIO(b"y" * 600_000)]
    big[0].name, big[1].name = "a.bin", "b.bin"
    client.post(url, {"title": "Too big", "files": big})
    assert not Assignment.objects.filter(title="Too big").exists()
    big[0].seek(0)
    response = client.post(url, {"title": "Fits", "files": big[:1], "checks": "assert True", "points": "5"})
    assignment = Assignment.objects.get(title="Fits")
    assert response["Location"] == f"/teach/assignments/{assignment.pk}/"
    assert list(assignment.files.values_list("name", "size_bytes")) == [("a.bin", 600_000)]
    client.post(f"/teach/assignments/{assignment.pk}/edit/", {"title": "Broken checks", "checks": "assert (", "points": "5"})
    assignment.refresh_from_db()
    assert assignment.title == "Fits"


@pytest.mark.django_db
def test_the_teacher_opens_a_hand_in_read_only_with_its_runs_and_files() -> None:
    tess, olive, _, classroom = _class()
    assignment = _assignment(classroom)
    submission = Submission.objects.create(
        assignment=assignment, student=olive, checks_status="done", checks_passed=1, checks_total=1,
        check_results=[{"name": "check_add", "description": "add(2, 3) is 5", "passed": True, "message": ""}],
        runs=[{"seq": 1, "language": "python", "code": "def add(a, b):\n    return a + b", "status": "succeeded", "output": ""}],
    )
    SubmissionFile.objects.create(submission=submission, path="notes/answer.txt", data=b"forty-two", size_bytes=9)
    page = _client(tess).get(f"/teach/submissions/{submission.pk}/").content.decode()
    assert "return a + b" in page and "notes/answer.txt" in page and "forty-two" in page and "1 of 1 checks passed" in page
    grid_page = _client(tess).get(f"/teach/assignments/{assignment.pk}/").content.decode()
    assert "Handed in" in grid_page and "1 of 1" in grid_page and "Not started" in grid_page


@pytest.mark.django_db
def test_instructions_are_rendered_as_markdown_and_sanitised() -> None:
    _, olive, _, classroom = _class()
    assignment = _assignment(classroom, instructions='Use **range**.\n\n<script>window.pwned=1</script><img src=x onerror="alert(1)">')
    page = _client(olive).get(f"/assignments/{assignment.pk}/").content.decode()
    assert "<strong>range</strong>" in page
    assert "<script>window.pwned" not in page and "onerror" not in page
