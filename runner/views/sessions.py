"""The chat page and its session endpoints. Who may see a session is `selectors.session_visible`
(the one access rule); only its owner may rename or restart it."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from runner import selectors, services
from runner.models import LANGUAGE_CHOICES, ChatSession, Classroom
from runner.selectors.sessions import truncation_notice
from runner.views.auth import AuthenticatedRequest

BACKEND_LABELS = {"local": "Local sandbox", "e2b": "E2B cloud", "none": "No sandbox"}
# The header's sandbox chip; static/runner/notices.js says the same for the states it moves to live.
SANDBOX_STATE_TEXT = {
    "ready": "ready",
    "closed": "closed when idle · starts on your next run",
    "unavailable": "unavailable",
}


async def healthz(request: HttpRequest) -> JsonResponse:
    status = await selectors.sandbox_status()
    body = {"ok": status.ok, "backend": status.backend, "detail": status.detail}
    return JsonResponse(body, status=200 if status.ok else 503)


NOT_FOUND = "No such session."
NO_SUCH_CLASSROOM = "No such classroom."


def visible_session_or_404(request: AuthenticatedRequest, session_id: uuid.UUID) -> tuple[ChatSession, selectors.SessionAccess]:
    """The session and the user's access, or the same 404 for an unknown id and one they may not see."""
    found = selectors.session_visible(user=request.user, session_id=session_id)
    if found is None:
        raise Http404(NOT_FOUND)
    return found


def _owned_session(request: AuthenticatedRequest, session_id: uuid.UUID) -> ChatSession:
    """The session if the user owns it; 404 when they may not see it, 403 when they only watch it."""
    session, access = visible_session_or_404(request, session_id)
    if access != "owner":
        raise PermissionDenied("Only the session's owner can change it.")
    return session


def _chat_context(request: AuthenticatedRequest, session: ChatSession | None, access: selectors.SessionAccess | None = "owner") -> dict[str, Any]:
    health = async_to_sync(selectors.sandbox_status)()
    query = request.GET.get("q", "")
    page_data: dict[str, Any] = {
        "can_run": health.ok,
        "degraded_reason": "" if health.ok else health.detail.rstrip(". "),
        "truncation_notice": truncation_notice(),
        "code_max_bytes": settings.RUN_CODE_MAX_BYTES,
        "file_max_bytes": settings.SANDBOX_FILE_MAX_BYTES,
        "new_session_url": reverse("session_new"),
        "activity_url": reverse("sessions_activity"),
    }
    watched_class = session.classroom if session is not None and access == "teacher" else None
    context: dict[str, Any] = {
        # The watch view's sidebar is the class's sessions (_watch_context), not the teacher's own.
        "sessions": [] if watched_class is not None else selectors.sessions_for_sidebar(user=request.user, query=query),
        "filter_query": query,
        "session": session,
        "health": health,
        "backend_label": BACKEND_LABELS.get(health.backend, health.backend),
        "degraded_reason": health.detail.rstrip(". "),
        "languages": LANGUAGE_CHOICES,
        "truncation_notice": truncation_notice(),
        "page_data": page_data,
        "access": access,
        "is_teacher": selectors.user_teaches(user=request.user),
        "usage_meter": selectors.usage_quota_status(user_id=request.user.pk),
        "session_classrooms": selectors.classrooms_for_sessions(user=request.user),
        "default_classroom": selectors.classroom_default_for_new_session(user=request.user),
        "has_assignments": selectors.student_has_assignments(user=request.user),
    }
    page_data["usage_url"] = reverse("account_usage")
    if session is not None:
        turns = selectors.session_history(session=session, viewer=request.user)
        context["turns"] = turns
        if session.assignment is not None and access == "owner":
            context["assignment_due_text"] = selectors.due_text(session.assignment.due_at)
            if not turns:  # the assignment's starter code, until the first run
                context["composer_text"] = session.assignment.starter_code
        state = "unavailable" if not health.ok else "ready" if session.sandbox_id else "closed"
        stop_reason = selectors.session_sandbox_stop_reason(session=session) if state == "closed" else ""
        text = SANDBOX_STATE_TEXT[state] if turns or state != "closed" else "starts on your first run"
        if stop_reason:
            state, text = "stopped", services.STOPPED_CHIP_TEXT[stop_reason]
        context["sandbox_state"] = state
        context["sandbox_state_text"] = text
        page_data.update(
            {
                "session_id": str(session.id),
                "ws_path": f"/ws/sessions/{session.id}/",
                "last": selectors.session_resume_point(session=session),
                "language": session.language,
                "rename_url": reverse("session_rename", args=[session.id]),
                "restart_url": reverse("session_restart", args=[session.id]),
                "output_url": reverse("execution_output", args=[session.id, 0]).replace("/0/", "/{id}/"),
                "history": [t.execution.code for t in turns][-50:],  # ↑ in an empty composer walks back
                "access": access,
                "files_url": reverse("files", args=[session.id]),
                "packages_url": reverse("packages", args=[session.id]),
            }
        )
        if access == "owner":
            page_data["comments_seen_url"] = reverse("comments_seen", args=[session.id])
        else:
            page_data["can_run"] = False
            context["owner_name"] = selectors.author_name(session.owner)
        if access == "teacher":
            _watch_context(request, session, context, page_data)
    return context


def _watch_context(request: AuthenticatedRequest, session: ChatSession, context: dict[str, Any], page_data: dict[str, Any]) -> None:
    """The teacher's watch view: the class's sessions as the sidebar, the previous / next student, the comment box."""
    if session.classroom is not None:
        # The poll of the teacher's own activity would put their sessions back, so it is off here.
        context["sessions"] = selectors.classroom_sessions_for_sidebar(classroom=session.classroom, query=request.GET.get("q", ""))
        context["watching_class"] = session.classroom
        context["watch_nav"] = selectors.classroom_watch_neighbours(classroom=session.classroom, student_id=session.owner_id)
        page_data["activity_url"] = ""
    page_data["comment_url"] = reverse("comment_new", args=[session.id])
    page_data["comment_edit_url"] = reverse("comment_edit", args=[0]).replace("/0/", "/{id}/")
    page_data["comment_delete_url"] = reverse("comment_delete", args=[0]).replace("/0/", "/{id}/")
    context["snippets"] = selectors.comment_snippets(author=request.user)
    context["comment_max_chars"] = settings.COMMENT_MAX_CHARS
    context["comment_max_chars_text"] = f"{settings.COMMENT_MAX_CHARS:,}"


@login_required
@require_GET
def chat_home(request: AuthenticatedRequest) -> HttpResponse:
    """The chat: the sidebar and the most recent session, or a prompt to start one."""
    session = selectors.session_latest_for_user(user=request.user)
    return render(request, "runner/chat.html", _chat_context(request, session))


@login_required
@require_GET
def session_detail(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """One session's chat: its owner's, or read-only (with a comment box for a teacher)."""
    session, access = visible_session_or_404(request, session_id)
    return render(request, "runner/chat.html", _chat_context(request, session, access))


@login_required
@require_GET
def sessions_activity(request: AuthenticatedRequest) -> JsonResponse:
    """The sidebar's sessions, newest activity first, with which have a run going: the page polls it
    (and adds the ones it doesn't list yet, such as a sandbox just made through the API)."""
    items = selectors.sessions_for_sidebar(user=request.user)
    return JsonResponse({"sessions": [
        {
            "id": str(item.id), "title": item.title, "is_running": item.is_running,
            "running_since": item.running_since.isoformat() if item.running_since else None,
            "last_activity_at": item.last_activity_at.isoformat(),
            # What a sidebar needs to add an entry for a session it hasn't listed (one the API made).
            "url": reverse("session_detail", args=[item.id]), "language": item.language,
            "language_label": item.language_label, "kind": item.kind, "classroom_name": item.classroom_name,
            "unread_comments": item.unread_comments,
        }
        for item in items
    ]})


def _member_classroom_or_404(request: AuthenticatedRequest) -> Classroom | None:
    """The POST's `classroom` (a class the user attends or teaches), None for "" (private); any
    other value answers exactly as an unknown id."""
    raw = request.POST.get("classroom", "").strip()
    if not raw:
        return None
    classroom = selectors.classroom_for_member(user=request.user, classroom_id=int(raw)) if raw.isdigit() else None
    if classroom is None:
        raise Http404(NO_SUCH_CLASSROOM)
    return classroom


@login_required
@require_POST
def session_new(request: AuthenticatedRequest) -> HttpResponse:
    """POST `language` and optional `classroom` (an id of a class the user is in; absent or "" is private)."""
    classroom = _member_classroom_or_404(request)
    try:
        session = services.session_create(
            owner=request.user, language=request.POST.get("language", "python"), classroom=classroom
        )
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    return redirect("session_detail", session_id=session.id)


@login_required
@require_POST
def session_classroom(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """The owner moves the session to one of their classes (POST `classroom`) or to private (""):
    JSON for the page's fetch, a redirect for a plain form."""
    session = _owned_session(request, session_id)
    classroom = _member_classroom_or_404(request)
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        services.session_classroom_set(session=session, classroom=classroom)
    except ValidationError as exc:
        if wants_json:
            return JsonResponse({"ok": False, "message": " ".join(exc.messages)}, status=400)
        return HttpResponseBadRequest(" ".join(exc.messages))
    if wants_json:
        return JsonResponse({"ok": True, "classroom": classroom.name if classroom else None})
    return redirect("session_detail", session_id=session.id)


@login_required
@require_POST
def session_rename(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """Rename from the header's in-place title: JSON for the page's fetch, a redirect for a plain form."""
    session = _owned_session(request, session_id)
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        services.session_rename(session=session, title=request.POST.get("title", ""))
    except ValidationError as exc:
        if wants_json:
            return JsonResponse({"ok": False, "message": " ".join(exc.messages)}, status=400)
        return HttpResponseBadRequest(" ".join(exc.messages))
    if wants_json:
        return JsonResponse({"ok": True, "title": session.title})
    return redirect("session_detail", session_id=session.id)


@login_required
@require_POST
async def session_restart(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """Restart the session's sandbox (the page asks first and says variables will be lost)."""
    session = await sync_to_async(_owned_session)(request, session_id)
    try:
        await services.session_sandbox_restart(session=session)
    except services.SessionBusy as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    return redirect("session_detail", session_id=session.id)


def _download_name(session: ChatSession, extension: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", session.title).strip("-")[:60] or "session"
    return f"{stem}.{extension}"


@login_required
@require_GET
def session_export_ipynb(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    session, _ = visible_session_or_404(request, session_id)
    notebook = selectors.session_export_notebook(session=session)
    response = HttpResponse(json.dumps(notebook, indent=1, ensure_ascii=False), content_type="application/x-ipynb+json")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(session, "ipynb")}"'
    return response


@login_required
@require_GET
def session_export_markdown(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    session, _ = visible_session_or_404(request, session_id)
    response = HttpResponse(selectors.session_export_markdown(session=session), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(session, "md")}"'
    return response


@login_required
@require_GET
def execution_output(request: AuthenticatedRequest, session_id: uuid.UUID, execution_id: int) -> HttpResponse:
    """One run's output as server-rendered, sanitised HTML: "show all", and rich results arriving live.

    With `?index=N` only the block holding chunk N is returned.
    """
    session, _ = visible_session_or_404(request, session_id)
    turn = selectors.execution_for_session(session=session, execution_id=execution_id)
    if turn is None:
        raise Http404("No such run.")
    blocks = turn.blocks
    if "index" in request.GET:
        try:
            index = int(request.GET["index"])
        except ValueError:
            return HttpResponseBadRequest("index must be a number")
        blocks = [b for b in blocks if b.first_index <= index <= b.last_index]
        if not blocks:
            raise Http404("No such output.")
    context = {"blocks": blocks, "turn": turn, "truncation_notice": truncation_notice(), "whole": "index" not in request.GET}
    return render(request, "runner/_output.html", context)


@login_required
@require_GET
def account_usage(request: AuthenticatedRequest) -> JsonResponse:
    """The user's usage against each of their limits (none when unlimited), for the page's meter."""
    limits = selectors.usage_quota_status(user_id=request.user.pk)
    return JsonResponse({"limits": [{"name": q.name, "text": q.text, "percent": q.percent, "warn": q.warn} for q in limits]})
