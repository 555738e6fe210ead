"""Comment endpoints: a teacher comments on a run; only the author edits or deletes.

Each answers JSON when the page's fetch asks for it (`Accept: application/json`), otherwise
redirects back to the run, so the comment box works without JavaScript too. A session or comment
the user may not see is the same 404 as an unknown id.
"""

from __future__ import annotations

import re
import uuid

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from runner import selectors, services
from runner.models import Comment
from runner.views.auth import AuthenticatedRequest
from runner.views.sessions import visible_session_or_404


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _problem(request: HttpRequest, message: str, status: int) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"ok": False, "message": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _done(request: HttpRequest, comment: Comment) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"ok": True, "comment_id": comment.pk, "version": comment.version})
    return redirect(reverse("session_detail", args=[comment.execution.session_id]) + f"#run-{comment.execution_id}")


def _execution_id(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("execution_id", ""))
    except ValueError:
        raise Http404("No such run.") from None


@login_required
@require_POST
def comment_new(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """POST `execution_id`, `body`: a teacher of the session's owner comments on that run."""
    session, access = visible_session_or_404(request, session_id)
    if access != "teacher":
        raise PermissionDenied("Only the student's teachers comment on runs.")
    execution = selectors.execution_of_session(session=session, execution_id=_execution_id(request))
    if execution is None:
        raise Http404("No such run.")
    try:
        comment = services.comment_create(author=request.user, execution=execution, body=request.POST.get("body", ""))
    except ValidationError as exc:
        return _problem(request, " ".join(exc.messages), 400)
    except services.CommentRateLimited as exc:
        return _problem(request, str(exc), 429)
    return _done(request, comment)


def _visible_comment_or_404(request: AuthenticatedRequest, comment_id: int) -> Comment:
    found = selectors.comment_visible(user=request.user, comment_id=comment_id)
    if found is None:
        raise Http404("No such comment.")
    return found[0]


@login_required
@require_POST
def comment_edit(request: AuthenticatedRequest, comment_id: int) -> HttpResponse:
    """POST `body`: the author replaces their comment (403 for anyone else who can see it)."""
    comment = _visible_comment_or_404(request, comment_id)
    try:
        comment = services.comment_edit(comment=comment, author=request.user, body=request.POST.get("body", ""))
    except ValidationError as exc:
        return _problem(request, " ".join(exc.messages), 400)
    except services.CommentRateLimited as exc:
        return _problem(request, str(exc), 429)
    return _done(request, comment)


@login_required
@require_POST
def comment_delete(request: AuthenticatedRequest, comment_id: int) -> HttpResponse:
    """The author deletes their comment (403 for anyone else who can see it)."""
    comment = _visible_comment_or_404(request, comment_id)
    services.comment_delete(comment=comment, author=request.user)
    return _done(request, comment)


SEEN_IDS_MAX = 500
_COMMENT_ID = re.compile(r"[0-9]{1,18}")


@login_required
@require_POST
def comments_seen(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """POST `comment_id` (repeated): the owner's page had these comments on screen, so they are no
    longer unread. Answers the session's unread count left (403 for watchers, 404 for the rest)."""
    session, access = visible_session_or_404(request, session_id)
    if access != "owner":
        raise PermissionDenied("Only the session's owner marks its comments seen.")
    raw = request.POST.getlist("comment_id")
    if len(raw) > SEEN_IDS_MAX or not all(_COMMENT_ID.fullmatch(value) for value in raw):
        return _problem(request, f"comment_id must be up to {SEEN_IDS_MAX} comment numbers.", 400)
    marked = services.comments_mark_seen(session=session, comment_ids=[int(value) for value in raw])
    unread = selectors.comments_unread_count(session=session)
    if _wants_json(request):
        return JsonResponse({"ok": True, "marked": marked, "unread": unread})
    return redirect("session_detail", session_id=session.id)
