"""The classroom cast, for access tests over HTTP and websockets.

Who is who (and who may see what):
- `owner` (olive) is a student in class A and owns `session` (in class A) with one stored run (`execution`);
  she sees and runs her own session.
- `classmate` (carl) is another student in class A: he must never see olive's session.
- `other_student` (sam) is a student in class B: nothing of class A.
- `teacher` (tess) teaches class A: she sees olive's session read-only, and comments (`comment`).
- `other_teacher` (tom) teaches class B: nothing of class A.
- `admin` (ada) is staff: sees everything, read-only, never comments.
- `assignment` is set to class A (its students see it; its teacher edits and grades it);
  `submission` is olive's hand-in of it (only class A's teachers open it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from runner.models import Assignment, ChatSession, Classroom, Comment, Execution, OutputChunk, Submission

PASSWORD = "a-long-test-password-1"
ROLES = ("owner", "classmate", "other_student", "teacher", "other_teacher", "admin", "anonymous")


@dataclass
class Cast:
    owner: Any
    classmate: Any
    other_student: Any
    teacher: Any
    other_teacher: Any
    admin: Any
    class_a: Classroom
    class_b: Classroom
    session: ChatSession
    execution: Execution
    comment: Comment
    assignment: Assignment
    submission: Submission

    def user(self, role: str) -> Any:
        return None if role == "anonymous" else getattr(self, role)


def make_cast(*, password: str | None = None) -> Cast:
    """The cast; users get `password` only when asked (hashing six passwords per test is slow, and
    the test client's force_login needs none)."""
    User = get_user_model()
    owner = User.objects.create_user("olive", password=password, first_name="Olive", last_name="Owner")
    classmate = User.objects.create_user("carl", password=password, first_name="Carl")
    other_student = User.objects.create_user("sam", password=password, first_name="Sam")
    teacher = User.objects.create_user("tess", password=password, first_name="Tess", last_name="Teacher")
    other_teacher = User.objects.create_user("tom", password=password, first_name="Tom")
    admin = User.objects.create_superuser("ada", password=password, email="")
    class_a = Classroom.objects.create(name="Class A")
    class_a.teachers.add(teacher)
    class_a.students.add(owner, classmate)
    class_b = Classroom.objects.create(name="Class B")
    class_b.teachers.add(other_teacher)
    class_b.students.add(other_student)
    session = ChatSession.objects.create(owner=owner, title="Olive's loops", classroom=class_a)
    now = timezone.now()
    execution = Execution.objects.create(
        session=session, seq=1, code="for i in range(3):\n    print(i)", language="python", user=owner,
        status="failed", error_name="NameError", error_value="name 'x' is not defined",
        started_at=now, finished_at=now, duration_ms=40,
    )
    OutputChunk.objects.create(execution=execution, index=0, kind="stdout", text="0\n1\n2\n")
    comment = Comment.objects.create(execution=execution, author=teacher, body="Nice loop; now **fix** the NameError.")
    assignment = Assignment.objects.create(classroom=class_a, title="Loops", instructions="Print **0 to 9**.", points=10)
    submission = Submission.objects.create(assignment=assignment, student=owner, checks_status=Submission.ChecksStatus.NONE)
    return Cast(owner, classmate, other_student, teacher, other_teacher, admin, class_a, class_b, session, execution, comment,
                assignment, submission)


@pytest.fixture
def cast(db: None) -> Cast:
    return make_cast()


@pytest.fixture
def live_cast(transactional_db: None) -> Cast:
    """The cast, committed, with passwords (PASSWORD): for websocket tests and a live server."""
    return make_cast(password=PASSWORD)
