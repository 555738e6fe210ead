"""Search over the user's own sessions: titles, code and output."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runner import selectors
from runner.views.auth import AuthenticatedRequest


@login_required
@require_GET
def search(request: AuthenticatedRequest) -> HttpResponse:
    """`?q=` over the user's session titles, code and output; HTML, or JSON for `Accept: application/json`."""
    query = request.GET.get("q", "").strip()[:200]
    hits = selectors.runs_search(user=request.user, query=query)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"query": query, "hits": [
            {"session_id": str(h.session_id), "session_title": h.session_title, "execution_id": h.execution_id,
             "seq": h.seq, "where": h.where, "snippet_html": h.snippet_html, "url": h.url} for h in hits
        ]})
    return render(request, "runner/search.html", {"query": query, "hits": hits})
