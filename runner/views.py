"""Thin HTTP layer: each view calls a selector or a service, then renders."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from runner import selectors, services
from runner.models import LANGUAGE_CHOICES, ChatSession
from runner.sandboxes.base import FileTooLarge, SandboxError, SandboxUnavailable
from runner.selectors.sessions import truncation_notice
from runner.services.workspace import NoWorkspace

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


def _own_session_or_404(request: HttpRequest, session_id: uuid.UUID) -> ChatSession:
    session = selectors.session_for_user(user=request.user, session_id=session_id)
    if session is None:
        raise Http404("No such session.")
    return session


def _chat_context(request: HttpRequest, session: ChatSession | None) -> dict[str, Any]:
    health = async_to_sync(selectors.sandbox_status)()
    query = request.GET.get("q", "")
    page_data: dict[str, Any] = {
        "can_run": health.ok,
        "degraded_reason": "" if health.ok else health.detail.rstrip(". "),
        "truncation_notice": truncation_notice(),
        "new_session_url": reverse("session_new"),
    }
    context: dict[str, Any] = {
        "sessions": selectors.sessions_for_sidebar(user=request.user, query=query),
        "filter_query": query,
        "session": session,
        "health": health,
        "backend_label": BACKEND_LABELS.get(health.backend, health.backend),
        "degraded_reason": health.detail.rstrip(". "),
        "languages": LANGUAGE_CHOICES,
        "truncation_notice": truncation_notice(),
        "page_data": page_data,
    }
    if session is not None:
        turns = selectors.session_history(session=session)
        context["turns"] = turns
        state = "unavailable" if not health.ok else "ready" if session.sandbox_id else "closed"
        context["sandbox_state"] = state
        context["sandbox_state_text"] = SANDBOX_STATE_TEXT[state] if turns or state != "closed" else "starts on your first run"
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
                "files_url": reverse("files", args=[session.id]),
                "packages_url": reverse("packages", args=[session.id]),
            }
        )
    return context


@login_required
@require_GET
def chat_home(request: HttpRequest) -> HttpResponse:
    """The chat: the sidebar and the most recent session, or a prompt to start one."""
    session = selectors.session_latest_for_user(user=request.user)
    return render(request, "runner/chat.html", _chat_context(request, session))


@login_required
@require_GET
def session_detail(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = _own_session_or_404(request, session_id)
    return render(request, "runner/chat.html", _chat_context(request, session))


@login_required
@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    try:
        session = services.session_create(owner=request.user, language=request.POST.get("language", "python"))
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    return redirect("session_detail", session_id=session.id)


@login_required
@require_POST
def session_rename(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """Rename from the header's in-place title: JSON for the page's fetch, a redirect for a plain form."""
    session = _own_session_or_404(request, session_id)
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
async def session_restart(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """Restart the session's sandbox (the page asks first and says variables will be lost)."""
    user = await request.auser()
    session = await sync_to_async(selectors.session_for_user)(user=user, session_id=session_id)
    if session is None:
        raise Http404("No such session.")
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
def session_export_ipynb(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = _own_session_or_404(request, session_id)
    notebook = selectors.session_export_notebook(session=session)
    response = HttpResponse(json.dumps(notebook, indent=1, ensure_ascii=False), content_type="application/x-ipynb+json")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(session, "ipynb")}"'
    return response


@login_required
@require_GET
def session_export_markdown(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = _own_session_or_404(request, session_id)
    response = HttpResponse(selectors.session_export_markdown(session=session), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(session, "md")}"'
    return response


@login_required
@require_GET
def execution_output(request: HttpRequest, session_id: uuid.UUID, execution_id: int) -> HttpResponse:
    """One run's output as server-rendered, sanitised HTML: "show all", and rich results arriving live.

    With `?index=N` only the block holding chunk N is returned.
    """
    session = _own_session_or_404(request, session_id)
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


# --- the session's files (the files panel, and scripts) ------------------------------------------

FILES_NOTE = {
    "local": "Files stay with this session: they survive a sandbox restart and the idle timeout.",
    "e2b": "Files live in the E2B sandbox: when it closes (Restart, or idle for a while) they are gone. Download what you want to keep.",
}


def _files_error(exc: Exception) -> JsonResponse:
    """The HTTP answer for a refused files request (the message is fit for the page)."""
    if isinstance(exc, FileTooLarge):
        status = 413
    elif isinstance(exc, FileExistsError):
        status = 409
    elif isinstance(exc, (FileNotFoundError, NoWorkspace)):
        status = 404
    elif isinstance(exc, ValueError):
        status = 400
    elif isinstance(exc, SandboxUnavailable):
        status = 503
    else:
        status = 502
    message = str(exc.args[0]) if exc.args else str(exc)
    return JsonResponse({"ok": False, "message": message}, status=status)


async def _files_session(request: HttpRequest, session_id: uuid.UUID, *, write: bool) -> ChatSession:
    """The session if the user may see it (else 404); for `write`, only its owner (else 403)."""
    user = await request.auser()
    session, access = await selectors.session_with_access(session_id=session_id, user=user)
    if session is None or access is None:
        raise Http404("No such session.")
    if write and access != "owner":
        raise PermissionDenied("This session's files are read-only for you.")
    return session


FILES_ERRORS = (ValueError, OSError, NoWorkspace, SandboxError)


@login_required
async def files(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """GET: a folder's listing (`?path=`). POST (multipart: `file` fields, optional `path` and
    `overwrite=1`): upload, 201 with the written entries."""
    if request.method == "GET":
        session = await _files_session(request, session_id, write=False)
        try:
            listing = await selectors.workspace_listing(session=session, path=request.GET.get("path", ""))
        except FILES_ERRORS as exc:
            return _files_error(exc)
        backend = services.backend_name()
        return JsonResponse({**listing.as_json(), "backend": backend, "persistence": FILES_NOTE.get(backend, "")})
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    session = await _files_session(request, session_id, write=True)
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.FILES_UPLOAD_MAX_BYTES:
        return _files_error(FileTooLarge(
            f"The upload is larger than {settings.FILES_UPLOAD_MAX_BYTES // 2**20} MiB; send fewer files at once."))
    try:
        uploads = await sync_to_async(_read_uploads, thread_sensitive=False)(request)
        written = await services.workspace_upload(
            session=session, folder=request.POST.get("path", ""), uploads=uploads,
            overwrite=request.POST.get("overwrite") == "1",
        )
    except FILES_ERRORS as exc:
        return _files_error(exc)
    entries = [{"name": f.name, "path": f.path, "type": "dir" if f.is_dir else "file", "size": f.size, "modified": f.modified}
               for f in written]
    return JsonResponse({"ok": True, "entries": entries}, status=201)


def _read_uploads(request: HttpRequest) -> list[services.Upload]:
    """The complete `file` parts of a multipart body (Django drops a part that was cut short)."""
    try:
        parts = request.FILES.getlist("file")
    except MultiPartParserError as exc:
        raise ValueError(f"The upload is not a well-formed multipart body: {exc}") from None
    return [services.Upload(name=part.name or "", data=part.read()) for part in parts]


async def _file_for(request: HttpRequest, session_id: uuid.UUID) -> tuple[str, bytes]:
    """`?path=` and that file's bytes, if the user may see the session (raises FILES_ERRORS)."""
    session = await _files_session(request, session_id, write=False)
    path = request.GET.get("path", "")
    return path, await selectors.workspace_file(session=session, path=path)


@login_required
@require_GET
async def files_download(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    try:
        path, data = await _file_for(request, session_id)
    except FILES_ERRORS as exc:
        return _files_error(exc)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, path.rsplit("/", 1)[-1])
    return response


@login_required
@require_GET
async def files_preview(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """What the panel shows for a file: text (first 64 KiB), an image, or a CSV table (200 rows)."""
    try:
        path, data = await _file_for(request, session_id)
    except FILES_ERRORS as exc:
        return _files_error(exc)
    return JsonResponse({"path": path, "size": len(data), **selectors.workspace_preview(name=path, data=data)})


@login_required
@require_POST
async def files_delete(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = await _files_session(request, session_id, write=True)
    try:
        await services.workspace_delete(session=session, path=request.POST.get("path", ""))
    except FILES_ERRORS as exc:
        return _files_error(exc)
    return JsonResponse({"ok": True})


@login_required
@require_POST
async def files_rename(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = await _files_session(request, session_id, write=True)
    try:
        await services.workspace_rename(session=session, path=request.POST.get("path", ""), to=request.POST.get("to", ""))
    except FILES_ERRORS as exc:
        return _files_error(exc)
    return JsonResponse({"ok": True})


@login_required
@require_GET
async def packages(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The Python packages installed into the session (the Packages dialog); installing is a run
    of `%pip install <name>`, so its output streams like any run's."""
    session = await _files_session(request, session_id, write=False)
    try:
        found = await selectors.packages_installed(session=session)
    except FILES_ERRORS as exc:
        return _files_error(exc)
    backend = services.backend_name()
    note = ("Packages are installed system-wide in the E2B sandbox and last as long as it does."
            if backend == "e2b" else "Packages install into this session's workspace and stay with it.")
    return JsonResponse({"packages": [{"name": n, "version": v} for n, v in found], "backend": backend, "note": note})


# --- search over the user's own runs ---------------------------------------------------------------


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """`?q=` over the user's session titles, code and output; HTML, or JSON for `Accept: application/json`."""
    query = request.GET.get("q", "").strip()[:200]
    hits = selectors.runs_search(user=request.user, query=query)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"query": query, "hits": [
            {"session_id": str(h.session_id), "session_title": h.session_title, "execution_id": h.execution_id,
             "seq": h.seq, "where": h.where, "snippet_html": h.snippet_html, "url": h.url} for h in hits
        ]})
    return render(request, "runner/search.html", {"query": query, "hits": hits})
