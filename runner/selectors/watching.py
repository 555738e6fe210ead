"""Reads behind the teacher's watch view: the previous and next student of the class, each at
their most recent session in it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Subquery

from runner.models import ChatSession, Classroom
from runner.selectors.comments import author_name


@dataclass(frozen=True)
class StudentLink:
    session_id: uuid.UUID
    student_name: str


@dataclass(frozen=True)
class WatchNeighbours:
    """Where the watched student stands among the class's students who have a session in it."""

    previous: StudentLink | None
    next: StudentLink | None
    position: int  # 1-based; 0 when the student isn't among them
    total: int


def _students_with_sessions(classroom: Classroom) -> list[tuple[int, StudentLink]]:
    """The class's current students who have a session in it, in the roster's name order, each with
    their most recent one (latest activity)."""
    latest = (
        ChatSession.objects.filter(classroom=classroom, owner=OuterRef("pk"))
        .order_by("-last_activity_at", "-pk").values("pk")[:1]
    )
    students = (
        get_user_model().objects.filter(classrooms_joined=classroom)
        .annotate(latest_session=Subquery(latest)).exclude(latest_session=None)
    )
    rows = [(s.pk, author_name(s), s.get_username(), s.latest_session) for s in students]  # type: ignore[attr-defined]
    rows.sort(key=lambda r: (r[1].casefold(), r[2]))  # the roster's "name" sort
    return [(pk, StudentLink(session_id=session_id, student_name=name)) for pk, name, _, session_id in rows]


def classroom_watch_neighbours(*, classroom: Classroom, student_id: int) -> WatchNeighbours:
    """The students before and after `student_id` in the roster's name order (None at the ends),
    skipping students without a session in the class; a student who left isn't listed."""
    students = _students_with_sessions(classroom)
    index = next((i for i, (pk, _) in enumerate(students) if pk == student_id), None)
    if index is None:
        return WatchNeighbours(previous=None, next=None, position=0, total=len(students))
    return WatchNeighbours(
        previous=students[index - 1][1] if index > 0 else None,
        next=students[index + 1][1] if index + 1 < len(students) else None,
        position=index + 1,
        total=len(students),
    )
