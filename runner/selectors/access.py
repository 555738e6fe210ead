"""Who may see or run what in a chat session."""

from __future__ import annotations

import uuid
from typing import Literal

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from runner.models import ChatSession
from runner.services.runtime import db

# "owner" may run and stop; "viewer" may watch (read-only). Teachers become viewers of their
# students' sessions in a later issue: add that rule to `session_access` and nothing else changes.
SessionAccess = Literal["owner", "viewer"]


def session_access(*, user: AbstractBaseUser | AnonymousUser, session: ChatSession) -> SessionAccess | None:
    """What `user` may do in `session`: "owner", "viewer", or None (may not see it)."""
    if not user.is_authenticated:
        return None
    if session.owner_id == user.pk:
        return "owner"
    if getattr(user, "is_superuser", False):
        return "viewer"  # admins audit runs; they never run code in someone else's sandbox
    return None


def _session_with_access_sync(
    *, session_id: uuid.UUID, user: AbstractBaseUser | AnonymousUser
) -> tuple[ChatSession | None, SessionAccess | None]:
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        return None, None
    return session, session_access(user=user, session=session)


async def session_with_access(
    *, session_id: uuid.UUID, user: AbstractBaseUser | AnonymousUser
) -> tuple[ChatSession | None, SessionAccess | None]:
    """The session (None when it doesn't exist) and what `user` may do in it."""
    return await db(_session_with_access_sync)(session_id=session_id, user=user)
