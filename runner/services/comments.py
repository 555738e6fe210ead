"""Writes for comments on runs: create, edit, delete (author only), each published live to the
session's sockets as a `comment.event` once it commits."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from runner import events
from runner.models import ChatSession, Comment, Execution
from runner.services.output import publish
from runner.services.ratelimit import ratelimit_hit_sync


class CommentRateLimited(Exception):
    """The author posted or edited more than COMMENTS_PER_MINUTE comments in the last minute."""


def _clean_body(body: object) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ValidationError("A comment cannot be empty.")
    body = body.replace("\r\n", "\n").strip()
    if len(body) > settings.COMMENT_MAX_CHARS:
        raise ValidationError(
            f"A comment can be at most {settings.COMMENT_MAX_CHARS:,} characters; this one has {len(body):,}."
        )
    return body


def _check_rate(author: User) -> None:
    if not ratelimit_hit_sync(scope="comment", user_id=author.pk, limit=settings.COMMENTS_PER_MINUTE, window_s=60).allowed:
        raise CommentRateLimited(f"Too many comments: at most {settings.COMMENTS_PER_MINUTE} a minute.")


def _publish(comment: Comment, session_id: uuid.UUID) -> None:
    message: events.CommentMessage = {"type": "comment.event", "comment_id": comment.pk}
    group = events.session_group(str(session_id))
    # Best effort: the comment is stored, and a socket that misses this catches up on reconnect.
    transaction.on_commit(lambda: async_to_sync(publish)(group, dict(message)))


def comment_create(*, author: User, execution: Execution, body: object) -> Comment:
    """A new comment by `author` on `execution` (the caller has checked that `author` may comment).

    Raises ValidationError for an empty or too long body (COMMENT_MAX_CHARS), CommentRateLimited.
    """
    cleaned = _clean_body(body)
    _check_rate(author)
    comment = Comment.objects.create(execution=execution, author=author, body=cleaned)
    _publish(comment, execution.session_id)
    return comment


def comment_edit(*, comment: Comment, author: User, body: object) -> Comment:
    """Replace the body. Raises PermissionDenied unless `author` wrote it; ValidationError; CommentRateLimited."""
    if comment.author_id != author.pk:
        raise PermissionDenied("Only the author can edit a comment.")
    cleaned = _clean_body(body)
    _check_rate(author)
    Comment.objects.filter(pk=comment.pk).update(
        body=cleaned, edited_at=timezone.now(), version=F("version") + 1, seen_at=None,  # the new text is unread
    )
    comment.refresh_from_db()
    _publish(comment, comment.execution.session_id)
    return comment


def comment_delete(*, comment: Comment, author: User) -> None:
    """Delete (a tombstone: body cleared, so reconnecting sockets learn of it). Raises PermissionDenied
    unless `author` wrote it."""
    if comment.author_id != author.pk:
        raise PermissionDenied("Only the author can delete a comment.")
    Comment.objects.filter(pk=comment.pk).update(body="", deleted_at=timezone.now(), version=F("version") + 1)
    _publish(comment, comment.execution.session_id)


def comments_mark_seen(*, session: ChatSession, comment_ids: list[int]) -> int:
    """Mark these comments on `session`'s runs seen by its owner (the caller checked that the owner
    asks); ids of other sessions' comments, deleted or already seen ones are left alone. Returns how
    many were marked."""
    return Comment.objects.filter(
        execution__session=session, pk__in=comment_ids, seen_at__isnull=True, deleted_at__isnull=True
    ).update(seen_at=timezone.now())
