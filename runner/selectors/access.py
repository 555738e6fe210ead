"""Who may see or do what: the one rule every path asks (pages, exports, output, comments, the
websocket, the admin's changelists).

- A student (anyone) sees their own sessions: "owner", who may run and stop.
- A teacher of a classroom sees a session that belongs to that classroom while its owner is still
  a student of it: "teacher", who watches and comments but never runs. A session without a
  classroom (`classroom=None`, every API session) is private: its owner and admins only.
- An admin (Django staff) sees everything, read-only: "viewer".
- Everyone else sees nothing; callers answer exactly as for an unknown id (404, or 4404 vs 4403
  only on the websocket, whose contract names both).
"""

from __future__ import annotations

import uuid
from typing import Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Exists, OuterRef, Q, QuerySet

from runner.db import db
from runner.models import ChatSession, Classroom, Comment, Execution

SessionAccess = Literal["owner", "teacher", "viewer"]
AnyUser = User | AnonymousUser


def user_is_admin(*, user: AnyUser) -> bool:
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_staff", False))


def _visible_q(user: User) -> Q:
    """The sessions `user` may see, as a filter on ChatSession: their own, and those in a classroom
    they teach whose owner is still a student of that classroom."""
    still_enrolled = Classroom.students.through.objects.filter(
        classroom_id=OuterRef("classroom_id"), user_id=OuterRef("owner_id")
    )
    taught = Q(classroom__teachers=user) & Q(Exists(still_enrolled))
    return Q(owner=user) | Q(pk__in=ChatSession.objects.filter(taught).values("pk"))


def sessions_visible_to(*, user: AnyUser) -> QuerySet[ChatSession]:
    """Every session `user` may see: the queryset form of `session_access` (lists, search, admin)."""
    if isinstance(user, AnonymousUser) or not user.is_active:  # AnonymousUser: not authenticated
        return ChatSession.objects.none()
    if user_is_admin(user=user):
        return ChatSession.objects.all()
    return ChatSession.objects.filter(_visible_q(user))


def session_access(*, user: AnyUser, session: ChatSession) -> SessionAccess | None:
    """What `user` may do in `session`: "owner", "teacher", "viewer", or None (may not see it).

    Asks the database each time (no caching), so leaving or being removed from a classroom
    takes effect on the next request.
    """
    if not user.is_authenticated or not user.is_active:
        return None
    if session.owner_id == user.pk:
        return "owner"
    if (
        session.classroom_id is not None
        and Classroom.objects.filter(pk=session.classroom_id, teachers=user, students=session.owner_id).exists()
    ):
        return "teacher"
    if user_is_admin(user=user):
        return "viewer"  # admins audit runs; they never run code in someone else's sandbox
    return None


def session_visible(*, user: AnyUser, session_id: uuid.UUID | str) -> tuple[ChatSession, SessionAccess] | None:
    """The session and `user`'s access to it, or None when it is unknown or not theirs to see."""
    try:
        session = ChatSession.objects.select_related("owner").filter(pk=session_id).first()
    except (ValueError, TypeError):
        return None
    if session is None:
        return None
    access = session_access(user=user, session=session)
    return None if access is None else (session, access)


def execution_of_session(*, session: ChatSession, execution_id: int) -> Execution | None:
    """The run `execution_id` if it belongs to `session` (already found visible), else None: a run of
    another session answers exactly as an unknown id."""
    return Execution.objects.filter(session=session, pk=execution_id).first()


def comment_visible(*, user: AnyUser, comment_id: int) -> tuple[Comment, SessionAccess] | None:
    """A live (not deleted) comment on a run of a session `user` may see, and that access; else None."""
    comment = (
        Comment.objects.select_related("execution__session", "author")
        .filter(pk=comment_id, deleted_at__isnull=True)
        .first()
    )
    if comment is None:
        return None
    access = session_access(user=user, session=comment.execution.session)
    return None if access is None else (comment, access)


def _session_with_access_sync(*, session_id: uuid.UUID, user: AnyUser) -> tuple[ChatSession | None, SessionAccess | None]:
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        return None, None
    return session, session_access(user=user, session=session)


async def session_with_access(
    *, session_id: uuid.UUID, user: AnyUser
) -> tuple[ChatSession | None, SessionAccess | None]:
    """The session (None when it doesn't exist) and what `user` may do in it (the websocket's
    4404 / 4403 split, which its contract names)."""
    return await db(_session_with_access_sync)(session_id=session_id, user=user)


def _session_access_fresh(*, session: ChatSession, user: AnyUser) -> SessionAccess | None:
    fresh = ChatSession.objects.filter(pk=session.pk).first()
    return None if fresh is None else session_access(user=user, session=fresh)


async def session_access_now(*, session: ChatSession, user: AnyUser) -> SessionAccess | None:
    """`session_access` from async code, on the session's row as stored now (its classroom may have
    changed since the socket opened): an open socket re-asks it when memberships or the class change."""
    return await db(_session_access_fresh)(session=session, user=user)


def _credentials_current_sync(*, user: User) -> bool:
    return get_user_model()._default_manager.filter(pk=user.pk, is_active=True, password=user.password).exists()


async def user_credentials_current(*, user: User) -> bool:
    """Whether `user` (as loaded when their socket authenticated) is still active with the same
    password: a socket that authenticated just before a deactivation or password change asks this
    after joining its user's group, so it can't miss the change."""
    return await db(_credentials_current_sync)(user=user)
