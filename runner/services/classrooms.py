"""Writes for classrooms: create, join by code, regenerate the code, leave, remove a student.

A membership change ends access at once: every open socket on the affected students' sessions is
told to re-ask the access rule (`access.recheck`) after the change commits.
"""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from runner import events
from runner.models import ChatSession, Classroom, new_join_code
from runner.services.output import publish
from runner.services.ratelimit import ratelimit_hit_sync

NAME_MAX_CHARS = Classroom._meta.get_field("name").max_length or 200


class JoinRefused(Exception):
    """A join code that is wrong, old (regenerated), for an archived classroom, or tried too often."""

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.rate_limited = rate_limited


def classroom_create(*, teacher: User, name: str) -> Classroom:
    """A new classroom taught by `teacher`, with a fresh join code. Raises ValidationError for an empty name."""
    name = " ".join(name.split())
    if not name:
        raise ValidationError("A classroom needs a name.")
    classroom = Classroom.objects.create(name=name[:NAME_MAX_CHARS])
    classroom.teachers.add(teacher)
    return classroom


def classroom_code_regenerate(*, classroom: Classroom) -> str:
    """Give the classroom a new join code; the old one stops working at once. Returns the new code."""
    classroom.join_code = new_join_code()
    classroom.save(update_fields=["join_code"])
    return classroom.join_code


def normalise_join_code(code: str) -> str:
    """What a student typed, as stored: upper case, without spaces or dashes."""
    return "".join(code.split()).replace("-", "").upper()


def classroom_join(*, user: User, code: str) -> Classroom:
    """Enrol `user` as a student of the open classroom whose join code is `code`.

    Raises JoinRefused for a wrong, old or archived code, and when `user` has tried too many codes
    (JOIN_ATTEMPTS_PER_10MIN). Joining twice is harmless.
    """
    if not ratelimit_hit_sync(scope="join", user_id=user.pk, limit=settings.JOIN_ATTEMPTS_PER_10MIN, window_s=600).allowed:
        raise JoinRefused("Too many join attempts; wait a few minutes and try again.", rate_limited=True)
    normalised = normalise_join_code(code)
    classroom = Classroom.objects.open().filter(join_code=normalised).first() if normalised else None
    if classroom is None:
        raise JoinRefused("That join code doesn't match any open classroom. Check it with your teacher; codes can be renewed.")
    classroom.students.add(user)
    return classroom


def classroom_leave(*, classroom: Classroom, user: User) -> None:
    """`user` stops being a student and a teacher of `classroom`. Access ends at once."""
    student_ids = [user.pk] + list(classroom.students.values_list("pk", flat=True))
    classroom.students.remove(user)
    classroom.teachers.remove(user)
    access_recheck_for_students(student_ids=student_ids)


def classroom_student_remove(*, classroom: Classroom, student_id: int) -> bool:
    """Remove one student; their teachers' access to their sessions ends at once. False if not enrolled."""
    if not classroom.students.filter(pk=student_id).exists():
        return False
    classroom.students.remove(student_id)
    access_recheck_for_students(student_ids=[student_id])
    return True


def access_recheck_for_students(*, student_ids: Iterable[int]) -> None:
    """After the current transaction commits, tell every socket on these students' sessions to
    re-ask the access rule (sockets whose user lost access close with 4403)."""
    ids = list(set(student_ids))
    if not ids:
        return

    def recheck() -> None:
        # Best effort (output.publish): the membership change is committed either way.
        message: events.AccessRecheckMessage = {"type": "access.recheck"}
        for session_id in ChatSession.objects.filter(owner__in=ids).values_list("pk", flat=True).iterator():
            async_to_sync(publish)(events.session_group(session_id), dict(message))

    transaction.on_commit(recheck)
