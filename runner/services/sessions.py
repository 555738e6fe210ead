"""Writes for chat sessions themselves (runs: admission.py, lifecycle.py, cancel.py)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from runner import events
from runner.models import LANGUAGE_CHOICES, ChatSession, Classroom, Execution
from runner.sandboxes.base import backend_name_from_settings
from runner.services.output import publish
from runner.services.sandboxes import sandbox_restart

TITLE_MAX_CHARS = ChatSession._meta.get_field("title").max_length or 200
_LANGUAGES = {code for code, _ in LANGUAGE_CHOICES}


def session_create(
    *, owner: User, language: str = "python", title: str = "", classroom: Classroom | None = None
) -> ChatSession:
    """A new, empty session owned by `owner`, in `classroom` (the caller has checked that `owner`
    is a member of it) or private. Raises ValidationError for an unknown language."""
    if language not in _LANGUAGES:
        raise ValidationError(f"Unknown language {language!r}; choose one of {', '.join(sorted(_LANGUAGES))}.")
    try:
        backend = backend_name_from_settings()
    except Exception:  # a broken backend setting is degraded mode; the session still exists
        backend = ""
    now = timezone.now()
    return ChatSession.objects.create(
        owner=owner,
        language=language,
        title=(title.strip()[:TITLE_MAX_CHARS] or "Untitled session"),
        backend=backend,
        classroom=classroom,
        created_at=now,
        last_activity_at=now,
    )


def session_rename(*, session: ChatSession, title: str) -> ChatSession:
    """Set the title (trimmed, at most 200 characters). Raises ValidationError for an empty one."""
    title = " ".join(title.split())
    if not title:
        raise ValidationError("A title cannot be empty.")
    session.title = title[:TITLE_MAX_CHARS]
    session.save(update_fields=["title", "updated_at"])
    return session


def session_classroom_set(*, session: ChatSession, classroom: Classroom | None) -> ChatSession:
    """Move the session to `classroom` (the caller has checked the owner is a member) or to private
    (None). Sockets open on it re-ask the access rule after the change commits, so the teachers of
    the class it left are closed out at once. Raises ValidationError for an API session (always
    private) and for an assignment's session (always in the assignment's class)."""
    if classroom is not None and session.kind == ChatSession.Kind.API:
        raise ValidationError("Sessions made through the API stay private.")
    if session.assignment_id is not None and (classroom.pk if classroom else None) != session.classroom_id:
        # Its teachers grade it from here: moving it would hide the work they set.
        raise ValidationError("An assignment's session stays in its class.")
    if session.classroom_id == (classroom.pk if classroom else None):
        return session
    session.classroom = classroom
    session.save(update_fields=["classroom", "updated_at"])
    group = events.session_group(session.id)

    def recheck() -> None:  # best effort, as every publish
        message: events.AccessRecheckMessage = {"type": "access.recheck"}
        async_to_sync(publish)(group, dict(message))

    transaction.on_commit(recheck)
    return session


class SessionBusy(Exception):
    """The session has a run going or waiting, so its sandbox can't be restarted now."""


async def session_sandbox_restart(*, session: ChatSession) -> None:
    """Close the session's sandbox wherever it is held (lease reason "restart", `sandbox_id`
    cleared, an E2B sandbox killed by id); the next run starts a fresh one.

    Raises SessionBusy while a run is queued or running.
    """
    if await Execution.objects.filter(session=session).active().aexists():
        raise SessionBusy("Stop the running code first, then restart the sandbox.")
    await sandbox_restart(session_id=session.id)
    session.sandbox_id = ""
