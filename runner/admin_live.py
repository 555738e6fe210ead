"""The admin's view of now: `/admin/live/` (every live sandbox on every process, sortable, with
Kill and Stop, and each process's capacity and heartbeat) and `/admin/live.json` (the same
figures, which the page polls every LIVE_STATS_S).

Kill and Stop go through `services.admin_actions`, as the usage drill-down's do: they ask why and
are recorded in `AdminAction`. Only active staff see any of it; everyone else gets a 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import aget_object_or_404, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runner.admin_usage import duration_text, staff_only
from runner.models import ChatSession, Execution
from runner.selectors import live as live_selectors
from runner.selectors.live import LiveProcess, LiveReport, LiveSandbox, Waiting
from runner.services import admin_actions

MIB = 1024 * 1024
# (key, label) of the sandbox table's columns; each sorts by `?sort=<key>`.
COLUMNS: list[tuple[str, str]] = [
    ("owner", "Owner"),
    ("session", "Session"),
    ("class", "Class"),
    ("backend", "Backend"),
    ("process", "Process"),
    ("started", "Started"),
    ("activity", "Last activity"),
    ("cpu", "CPU"),
    ("memory", "Memory"),
    ("run", "Run in progress"),
    ("cost", "Cost so far"),
]
# Columns whose first click sorts ascending (names); the figures start with the biggest.
ASCENDING_FIRST = {"owner", "session", "class", "backend", "process"}


def _sort_from(request: HttpRequest) -> tuple[str, bool]:
    sort = request.GET.get("sort", "started")
    if sort not in live_selectors.SORT_KEYS:
        sort = "started"
    default_dir = "asc" if sort in ASCENDING_FIRST else "desc"
    return sort, request.GET.get("dir", default_dir) != "asc"


# --- shaping (one dict per row: the template renders it, the JSON carries it) -------------------


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{duration_text(seconds)} ago"


def _when(value: datetime, now: datetime) -> str:
    local = timezone.localtime(value)
    return local.strftime("%H:%M:%S") if local.date() == timezone.localtime(now).date() else local.strftime("%Y-%m-%d %H:%M")


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.0f} MiB"


def _size(value: int | None) -> str:
    """Bytes as an admin reads them: MiB below 10 GiB, else GiB."""
    if value is None:
        return "n/a"
    return f"{value / MIB / 1024:,.1f} GiB" if value >= 10 * 1024 * MIB else _mib(value)


def _money(usd: float) -> str:
    if usd == 0:
        return "$0.00"
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def sandbox_row(row: LiveSandbox, now: datetime) -> dict[str, Any]:
    """One live sandbox as the page shows it: texts, and the raw figures the sort uses."""
    if row.measured:
        cpu_text = "n/a" if row.cpu_percent is None else f"{row.cpu_percent:.1f}%"
        memory_text = "n/a" if row.memory_bytes is None else f"{_mib(row.memory_bytes)} of {_mib(row.memory_limit_bytes)}"
    else:  # not published yet (a new sandbox), or its process is gone
        cpu_text = memory_text = "measuring…" if row.process_alive else "n/a"
    run = None
    if row.run is not None:
        run = {
            "execution_id": row.run.execution_id, "seq": row.run.seq, "status": row.run.status,
            "since": row.run.since.isoformat(), "elapsed_s": round(row.run.elapsed_s, 1),
            "text": f"#{row.run.seq} {row.run.status}, {duration_text(row.run.elapsed_s)}",
            "url": reverse("admin:runner_execution_change", args=[row.run.execution_id]),
        }
    person = row.full_name or row.username
    return {
        "lease_id": row.lease_id, "session_id": str(row.session_id), "session_title": row.session_title,
        "session_url": reverse("session_detail", args=[row.session_id]), "api": row.session_kind == ChatSession.Kind.API,
        "owner": person, "username": row.username, "email": row.email,
        "owner_title": f"{person} <{row.email}> ({row.username})" if row.email else f"{person} ({row.username})",
        "owner_url": reverse("usage_user", args=[row.user_id]), "classroom": row.classroom, "backend": row.backend,
        "sandbox_id": row.sandbox_id,
        "process": f"{row.host}:{row.pid}" if row.host else f"gone ({row.boot_id[:8] or '?'})",
        "process_alive": row.process_alive, "boot_id": row.boot_id,
        "started": _when(row.started_at, now), "started_at": row.started_at.isoformat(),
        "started_title": f"{timezone.localtime(row.started_at):%Y-%m-%d %H:%M:%S} ({_ago((now - row.started_at).total_seconds())})",
        "activity": _ago((now - row.last_activity_at).total_seconds()), "activity_at": row.last_activity_at.isoformat(),
        "cpu": row.cpu_percent, "cpu_text": cpu_text, "memory": row.memory_bytes, "memory_text": memory_text,
        "run": run, "cost": round(row.cost_usd, 6), "cost_text": _money(row.cost_usd),
        "kill_url": reverse("live_kill", args=[row.session_id]),
        "stop_url": reverse("live_stop", args=[row.run.execution_id]) if row.run is not None else "",
    }


def process_row(process: LiveProcess, now: datetime) -> dict[str, Any]:
    """One server process: its heartbeat, and the capacity it last published."""
    cap = process.capacity
    if cap:
        if cap.get("max_live"):
            live_text = f"{cap.get('live', 0)} of {cap['max_live']}"
        else:
            live_text = f"{cap.get('live', 0)} (the cap is what memory allows, at most {cap.get('ceiling', '?')})"
        memory_text = _size(cap.get("sandboxes_memory_bytes"))
        left_text = (f"{_size(cap.get('left_bytes'))} ({_size(cap.get('available_bytes'))} free, "
                     f"{_size(cap.get('headroom_bytes'))} kept)")
        warm_text = f"{cap.get('warm', 0)} warm" + (f", {cap['warming']} starting" if cap.get("warming") else "")
        full = not cap.get("has_room", True)
    else:
        live_text = f"{process.sandboxes} (E2B's fleet)" if process.backend == "e2b" else f"{process.sandboxes}"
        memory_text = left_text = warm_text = "n/a"
        full = False
    return {
        "boot_id": process.boot_id, "process": f"{process.hostname}:{process.pid}", "boot_short": process.boot_id[:8],
        "alive": process.alive, "heartbeat": _ago(process.heartbeat_age_s), "heartbeat_at": process.seen_at.isoformat(),
        "started": _when(process.started_at, now), "backend": process.backend or "—", "sandboxes": process.sandboxes,
        "live_text": live_text, "memory_text": memory_text, "left_text": left_text, "warm_text": warm_text,
        "queued": process.queued, "full": full,
        "stats": _ago((now - process.stats_at).total_seconds()) if process.stats_at else "never",
    }


def waiting_row(waiting: Waiting) -> dict[str, Any]:
    return {
        "session_id": str(waiting.session_id), "session_title": waiting.session_title,
        "session_url": reverse("session_detail", args=[waiting.session_id]), "owner": waiting.full_name or waiting.username,
        "boot_short": waiting.boot_id[:8], "waited": duration_text(waiting.waited_s), "since": waiting.since.isoformat(),
    }


def live_data(report: LiveReport, *, sort: str, descending: bool) -> dict[str, Any]:
    """The page's figures, as the template renders them and /admin/live.json sends them."""
    backends = ", ".join(f"{count} {name}" for name, count in sorted(report.by_backend.items()))
    return {
        "now": report.now.isoformat(), "updated": timezone.localtime(report.now).strftime("%H:%M:%S"), "sort": sort, "dir": "desc" if descending else "asc",
        "every_s": settings.LIVE_STATS_S,
        "summary": {
            "live": len(report.sandboxes), "by_backend": backends, "running": report.runs_running,
            "queued": report.runs_queued, "waiting": len(report.waiting),
            "processes": sum(1 for p in report.processes if p.alive),
        },
        "sandboxes": [sandbox_row(row, report.now) for row in report.sandboxes],
        "processes": [process_row(p, report.now) for p in report.processes],
        "waiting": [waiting_row(w) for w in report.waiting],
    }


def _headers(sort: str, descending: bool) -> list[dict[str, Any]]:
    headers = []
    for key, label in COLUMNS:
        active = key == sort
        if active:
            next_dir = "asc" if descending else "desc"
        else:
            next_dir = "asc" if key in ASCENDING_FIRST else "desc"
        headers.append({"key": key, "label": label, "active": active, "descending": descending,
                        "url": "?" + urlencode({"sort": key, "dir": next_dir})})
    return headers


# --- views --------------------------------------------------------------------------------------


@require_GET
@staff_only
def live_page(request: HttpRequest) -> HttpResponse:
    sort, descending = _sort_from(request)
    data = live_data(live_selectors.live_report(sort=sort, descending=descending), sort=sort, descending=descending)
    return render(request, "admin/runner/live.html", {
        **admin.site.each_context(request), "title": "Live sandboxes", "data": data, "headers": _headers(sort, descending),
        "query": urlencode({"sort": sort, "dir": data["dir"]}), "time_zone": settings.TIME_ZONE,
    })


@require_GET
@staff_only
def live_json(request: HttpRequest) -> JsonResponse:
    sort, descending = _sort_from(request)
    data = live_data(live_selectors.live_report(sort=sort, descending=descending), sort=sort, descending=descending)
    response = JsonResponse(data)
    response["Cache-Control"] = "no-store"
    return response


async def _staff_or_404(request: HttpRequest) -> Any:
    user = await request.auser()
    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise Http404
    return user


def _back(request: HttpRequest) -> str:
    query = urlencode([(key, request.GET[key]) for key in ("sort", "dir") if request.GET.get(key)])
    url = reverse("live")
    return f"{url}?{query}" if query else url


@require_POST
async def live_kill(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """Close one session's sandbox (asks for a reason; recorded), wherever it is held."""
    actor = await _staff_or_404(request)
    session = await aget_object_or_404(ChatSession.objects.select_related("owner"), pk=session_id)
    try:
        action = await admin_actions.admin_sandboxes_kill(
            actor=actor, user_id=session.owner_id, session_id=session.pk, reason=request.POST.get("reason"),
        )
    except admin_actions.ActionRefused as refused:
        messages.error(request, refused.message)
        return HttpResponseRedirect(_back(request))
    messages.success(request, f"{session.owner.get_username()}: {action.outcome}.")
    return HttpResponseRedirect(_back(request))


@require_POST
async def live_stop(request: HttpRequest, execution_id: int) -> HttpResponse:
    """Stop one run on its owner's behalf (asks for a reason; recorded); the sandbox stays."""
    actor = await _staff_or_404(request)
    await aget_object_or_404(Execution, pk=execution_id)
    try:
        action = await admin_actions.admin_run_stop(actor=actor, execution_id=execution_id, reason=request.POST.get("reason"))
    except admin_actions.ActionRefused as refused:
        messages.error(request, refused.message)
        return HttpResponseRedirect(_back(request))
    messages.success(request, action.outcome + ".")
    return HttpResponseRedirect(_back(request))


urlpatterns = [
    path("admin/live/", live_page, name="live"),
    path("admin/live.json", live_json, name="live_json"),
    path("admin/live/sessions/<uuid:session_id>/kill/", live_kill, name="live_kill"),
    path("admin/live/runs/<int:execution_id>/stop/", live_stop, name="live_stop"),
]
