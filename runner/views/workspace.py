"""A session's workspace over HTTP: the files panel's contract, and the Packages dialog."""

from __future__ import annotations

import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from runner import selectors, services
from runner.models import ChatSession
from runner.sandboxes.base import FileTooLarge, SandboxError, SandboxUnavailable
from runner.services.workspace import NoWorkspace
from runner.views.auth import AuthenticatedRequest

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
async def files(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
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
    entries = [{"name": f.name, "path": f.path, "type": f.type, "size": f.size, "modified": f.modified}
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
async def files_download(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    try:
        path, data = await _file_for(request, session_id)
    except FILES_ERRORS as exc:
        return _files_error(exc)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, path.rsplit("/", 1)[-1]) or "attachment"
    return response


@login_required
@require_GET
async def files_preview(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """What the panel shows for a file: text (first 64 KiB), an image, or a CSV table (200 rows)."""
    try:
        path, data = await _file_for(request, session_id)
    except FILES_ERRORS as exc:
        return _files_error(exc)
    return JsonResponse({"path": path, "size": len(data), **selectors.workspace_preview(name=path, data=data)})


@login_required
@require_POST
async def files_delete(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    session = await _files_session(request, session_id, write=True)
    try:
        await services.workspace_delete(session=session, path=request.POST.get("path", ""))
    except FILES_ERRORS as exc:
        return _files_error(exc)
    return JsonResponse({"ok": True})


@login_required
@require_POST
async def files_rename(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    session = await _files_session(request, session_id, write=True)
    try:
        await services.workspace_rename(session=session, path=request.POST.get("path", ""), to=request.POST.get("to", ""))
    except FILES_ERRORS as exc:
        return _files_error(exc)
    return JsonResponse({"ok": True})


@login_required
@require_GET
async def packages(request: AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
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
