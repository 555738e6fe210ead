"""Reads for comments: what the page renders under each run, the live frames, and a teacher's snippets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from runner import events
from runner.db import db
from runner.models import ChatSession, Comment
from runner.selectors.rendering import markdown_to_safe_html

SNIPPETS_MAX = 10


@dataclass(frozen=True)
class CommentView:
    id: int
    execution_id: int
    version: int
    author_name: str
    body: str
    html: str  # safe markup (markdown rendered, then nh3)
    created_at: datetime
    edited_at: datetime | None
    can_edit: bool
    unread: bool = False  # only ever true on the session owner's page: they haven't seen it yet


def author_name(user: User) -> str:
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def comment_view(*, comment: Comment, viewer: User | AnonymousUser, owner_id: int | None = None) -> CommentView:
    """`comment` as `viewer` sees it; `owner_id` is the session's owner, for whom an unseen one is unread."""
    return CommentView(
        id=comment.pk,
        execution_id=comment.execution_id,
        version=comment.version,
        author_name=author_name(comment.author),
        body=comment.body,
        html=markdown_to_safe_html(comment.body),
        created_at=comment.created_at,
        edited_at=comment.edited_at,
        can_edit=viewer.is_authenticated and comment.author_id == viewer.pk,
        unread=_unread_for(comment, viewer, owner_id),
    )


def _unread_for(comment: Comment, viewer: User | AnonymousUser, owner_id: int | None) -> bool:
    return comment.seen_at is None and owner_id is not None and viewer.is_authenticated and viewer.pk == owner_id


def comments_by_execution(
    *, execution_ids: list[int], viewer: User | AnonymousUser, owner_id: int | None = None
) -> dict[int, list[CommentView]]:
    """Live comments of these runs, oldest first, grouped by run (for the server-rendered page);
    `owner_id` (the session's owner) marks the unseen ones unread when the viewer is that owner."""
    grouped: dict[int, list[CommentView]] = {}
    comments = Comment.objects.filter(execution_id__in=execution_ids, deleted_at__isnull=True).select_related("author")
    for comment in comments.order_by("created_at", "pk"):
        view = comment_view(comment=comment, viewer=viewer, owner_id=owner_id)
        grouped.setdefault(comment.execution_id, []).append(view)
    return grouped


def comments_unread_per_session() -> Coalesce:
    """An annotation for a ChatSession queryset: its live comments the owner hasn't seen (0 for none)."""
    unread = (
        Comment.objects.filter(execution__session=OuterRef("pk"), seen_at__isnull=True, deleted_at__isnull=True)
        .values("execution__session").annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(unread), 0)


def comments_unread_count(*, session: ChatSession) -> int:
    """How many live comments on the session's runs its owner hasn't seen yet."""
    return Comment.objects.filter(execution__session=session, seen_at__isnull=True, deleted_at__isnull=True).count()


def _frame(comment: Comment, viewer: User | AnonymousUser) -> dict[str, object]:
    if comment.is_deleted:
        deleted: events.CommentDeletedFrame = {
            "type": "comment.deleted", "comment_id": comment.pk, "execution_id": comment.execution_id, "version": comment.version,
        }
        return dict(deleted)
    view = comment_view(comment=comment, viewer=viewer, owner_id=comment.execution.session.owner_id)
    frame: events.CommentFrame = {
        "type": "comment.added" if comment.version == 1 else "comment.changed",
        "comment_id": comment.pk,
        "execution_id": comment.execution_id,
        "version": comment.version,
        "author": view.author_name,
        "body": view.body,
        "html": view.html,
        "created_at": comment.created_at.isoformat(),
        "edited_at": comment.edited_at.isoformat() if comment.edited_at else None,
        "can_edit": view.can_edit,
        "unread": view.unread,
    }
    return dict(frame)


def _comment_frame_sync(*, comment_id: int, session_id: uuid.UUID, viewer: User | AnonymousUser) -> dict[str, object] | None:
    comment = (
        Comment.objects.select_related("author", "execution__session").filter(pk=comment_id, execution__session_id=session_id).first()
    )
    return None if comment is None else _frame(comment, viewer)


async def comment_frame(*, comment_id: int, session_id: uuid.UUID, viewer: User | AnonymousUser) -> dict[str, object] | None:
    """The comment's current state as a frame for `viewer`'s socket on `session_id`, or None when it
    isn't a comment of that session."""
    return await db(_comment_frame_sync)(comment_id=comment_id, session_id=session_id, viewer=viewer)


def _comment_replay_sync(*, session_id: uuid.UUID, viewer: User | AnonymousUser) -> list[dict[str, object]]:
    comments = (
        Comment.objects.filter(execution__session_id=session_id).select_related("author", "execution__session").order_by("created_at", "pk")
    )
    return [_frame(comment, viewer) for comment in comments]


async def comment_replay(*, session_id: uuid.UUID, viewer: User | AnonymousUser) -> list[dict[str, object]]:
    """Every comment of the session as it stands now (deleted ones as `comment.deleted`), oldest
    first: sent after the run replay on a reconnect, so edits and deletions made while away arrive."""
    return await db(_comment_replay_sync)(session_id=session_id, viewer=viewer)


def comment_snippets(*, author: User, limit: int = SNIPPETS_MAX) -> list[str]:
    """The author's most recent distinct comment bodies, newest first: reusable feedback."""
    snippets: list[str] = []
    bodies = Comment.objects.filter(author=author, deleted_at__isnull=True).order_by("-created_at").values_list("body", flat=True)
    for body in bodies[: limit * 5]:
        if body not in snippets:
            snippets.append(body)
        if len(snippets) >= limit:
            break
    return snippets
