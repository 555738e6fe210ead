"""The admin's usage view: `/admin/usage/` (per-user table, cost-per-day chart, alerts, actions),
`/admin/usage.csv` (the same table, streamed), and one user's drill-down with their runs.

Only active staff see any of it; everyone else gets a 404, as for a URL that doesn't exist.
Pages use the Django admin's look (they extend admin/base_site.html).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runner.models import Execution
from runner.selectors import usage as usage_selectors
from runner.selectors.usage import DayCost, UsageReport, UsageRow
from runner.services import admin_actions

RUNS_PER_PAGE = 50
# The per-user table shows this many users a page (sorted over everyone; totals cover everyone).
USERS_PER_PAGE = 100
# The longest range one page or CSV covers (the chart has a bar per day).
MAX_RANGE_DAYS = 400

PRESETS = [("today", "Today"), ("7d", "Last 7 days"), ("month", "This month")]
COLUMNS: list[tuple[str, str]] = [
    ("user", "User"),
    ("runs", "Runs"),
    ("exec_s", "Exec s"),
    ("sandbox_s", "Sandbox s"),
    ("e2b_usd", "E2B $"),
    ("local_usd", "Local $"),
    ("usd", "Total $"),
    ("errors", "Errors"),
    ("timeouts", "Timeouts"),
    ("killed", "Stopped by admin or budget"),
    ("last_active", "Last active"),
    ("budget_pct", "% of budget (month)"),
]


def staff_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Active staff only; anyone else gets the 404 an unknown URL gets."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            raise Http404
        return view(request, *args, **kwargs)

    return guarded


# --- request parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class RangeChoice:
    start: date
    end: date
    preset: str
    error: str

    def query(self, **extra: Any) -> str:
        return urlencode({"start": self.start.isoformat(), "end": self.end.isoformat(), **extra})


def _range_from(request: HttpRequest) -> RangeChoice:
    """The date range from `?preset=` or `?start=&end=` (default: the last 7 days)."""
    preset = request.GET.get("preset", "")
    if preset in ("today", "7d", "month"):
        start, end = usage_selectors.usage_range_preset(preset=preset)
        return RangeChoice(start, end, preset, "")
    default_start, default_end = usage_selectors.usage_range_preset(preset="7d")
    try:
        start = date.fromisoformat(request.GET["start"]) if request.GET.get("start") else default_start
        end = date.fromisoformat(request.GET["end"]) if request.GET.get("end") else default_end
    except ValueError:
        return RangeChoice(default_start, default_end, "7d", "Dates are YYYY-MM-DD; showing the last 7 days.")
    if end < start:
        return RangeChoice(default_start, default_end, "7d", "The end is before the start; showing the last 7 days.")
    if (end - start).days >= MAX_RANGE_DAYS:
        return RangeChoice(default_start, default_end, "7d", f"Ranges are at most {MAX_RANGE_DAYS} days; showing the last 7 days.")
    return RangeChoice(start, end, "", "")


def _sort_from(request: HttpRequest) -> tuple[str, bool]:
    sort = request.GET.get("sort", "usd")
    if sort not in usage_selectors.SORT_COLUMNS:
        sort = "usd"
    return sort, request.GET.get("dir", "desc") != "asc"


# --- shaping ------------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else ""


def usage_cells(row: UsageRow) -> list[str]:
    """One table row as shown on the page and written to the CSV (the same strings)."""
    pct = row.budget_pct
    return [
        row.username,
        str(row.runs),
        f"{row.exec_s:.1f}",
        f"{round(row.sandbox_s)}",
        f"{usage_selectors.round_cents(row.e2b_usd)}",
        f"{usage_selectors.round_cents(row.local_usd)}",
        f"{usage_selectors.round_cents(row.usd)}",
        str(row.errors),
        str(row.timeouts),
        str(row.killed),
        _when(row.last_active),
        "" if pct is None else f"{pct}%",
    ]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    backend: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]
    max_usd: str
    baseline_y: float


def cost_chart(days: list[DayCost], *, width: int = 720, height: int = 220) -> Chart:
    """A stacked bar per day (E2B below, local above), scaled to the dearest day."""
    left, bottom, top = 48.0, 24.0, 12.0
    plot_h = height - bottom - top
    slot = (width - left - 8) / max(1, len(days))
    peak = max((d.usd for d in days), default=0.0) or 1.0
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    every = max(1, len(days) // 10)
    for i, day in enumerate(days):
        x = left + i * slot + slot * 0.15
        base = height - bottom
        for backend, usd in (("e2b", day.e2b_usd), ("local", day.local_usd)):
            h = plot_h * usd / peak
            if h > 0:
                bars.append(Bar(round(x, 1), round(base - h, 1), round(slot * 0.7, 1), round(h, 1), backend,
                                f"{day.day:%Y-%m-%d} {backend}: ${usage_selectors.round_cents(usd)}"))
                base -= h
        if i % every == 0:
            labels.append((round(x + slot * 0.35, 1), f"{day.day:%m-%d}"))
    top_usd = max((d.usd for d in days), default=0.0)
    return Chart(width, height, bars, labels, f"{usage_selectors.round_cents(top_usd)}", height - bottom)


def _headers(choice: RangeChoice, sort: str, descending: bool) -> list[dict[str, Any]]:
    headers = []
    for key, label in COLUMNS:
        active = key == sort
        next_dir = "asc" if active and descending else "desc"
        headers.append({
            "key": key, "label": label, "active": active, "descending": descending,
            "url": "?" + choice.query(sort=key, dir=next_dir),
        })
    return headers


# --- views --------------------------------------------------------------------------------------


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "time_zone": settings.TIME_ZONE, **extra}


@require_GET
@staff_only
def usage_page(request: HttpRequest) -> HttpResponse:
    choice = _range_from(request)
    sort, descending = _sort_from(request)
    report: UsageReport = usage_selectors.usage_report(start=choice.start, end=choice.end, sort=sort, descending=descending)
    page = Paginator(report.rows, USERS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "admin/runner/usage.html", _context(
        request, title="Usage, cost and budgets", choice=choice, report=report,
        headers=_headers(choice, sort, descending), page=page,
        page_query=choice.query(sort=sort, dir="desc" if descending else "asc"),
        rows=[(row, usage_cells(row)) for row in page], totals=usage_cells(report.totals),
        chart=cost_chart(report.days), csv_query=choice.query(sort=sort, dir="desc" if descending else "asc"),
        alerts=usage_selectors.budget_alerts_recent(), actions=usage_selectors.admin_actions_recent(),
        presets=PRESETS,
    ))


class _Echo:
    """csv.writer's file: hands each formatted line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


# A cell starting with one of these is a formula to a spreadsheet (CSV injection): it gets a "'".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(cells: list[str]) -> list[str]:
    """The cells with any that a spreadsheet would run as a formula prefixed with "'"."""
    return [f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell for cell in cells]


@require_GET
@staff_only
def usage_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The table as CSV: the header row first; the range and its time zone are in the file name."""
    choice = _range_from(request)
    sort, descending = _sort_from(request)
    report = usage_selectors.usage_report(start=choice.start, end=choice.end, sort=sort, descending=descending, with_days=False)
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([label for _key, label in COLUMNS])
        for row in report.rows:
            yield writer.writerow(csv_safe(usage_cells(row)))
        yield writer.writerow(csv_safe(usage_cells(report.totals)))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    zone = re.sub(r"[^A-Za-z0-9+-]+", "-", settings.TIME_ZONE)
    response["Content-Disposition"] = f'attachment; filename="usage-{choice.start}-to-{choice.end}-days-in-{zone}.csv"'
    return response


@require_GET
@staff_only
def usage_user(request: HttpRequest, user_id: int) -> HttpResponse:
    person = get_object_or_404(get_user_model(), pk=user_id)
    choice = _range_from(request)
    status = request.GET.get("status", "")
    if status not in Execution.Status.values:
        status = ""
    runs = usage_selectors.usage_runs_for_user(user_id=user_id, start=choice.start, end=choice.end, status=status)
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    run_rows = [
        (run, None if run.duration_ms is None else run.duration_ms / 1000,
         usage_selectors.execution_cost_usd(backend=run.session.backend, duration_ms=run.duration_ms))
        for run in page
    ]
    return render(request, "admin/runner/usage_user.html", _context(
        request, title=f"Usage of {person.get_username()}", person=person, choice=choice, status=status, presets=PRESETS,
        statuses=Execution.Status.choices, page=page, run_rows=run_rows,
        page_query=choice.query(**({"status": status} if status else {})),
        days=usage_selectors.usage_by_user_day(user_id=user_id, start=choice.start, end=choice.end),
        limits=usage_selectors.usage_limits_for_user(user_id=user_id), quota=usage_selectors.usage_quota_status(user_id=user_id),
        leases=usage_selectors.leases_open_for_user(user_id=user_id),
        actions=usage_selectors.admin_actions_recent(target_user_id=user_id, limit=50),
    ))


async def _staff_or_404(request: HttpRequest) -> Any:
    user = await request.auser()
    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise Http404
    return user


@require_POST
async def usage_user_kill(request: HttpRequest, user_id: int) -> HttpResponse:
    """Close all of a user's sandboxes (asks for a reason; recorded)."""
    actor = await _staff_or_404(request)
    person = await aget_object_or_404(get_user_model(), pk=user_id)
    back = reverse("usage_user", args=[user_id])
    try:
        action = await admin_actions.admin_sandboxes_kill(actor=actor, user_id=person.pk, reason=request.POST.get("reason"))
    except admin_actions.ActionRefused as refused:
        messages.error(request, refused.message)
        return HttpResponseRedirect(back)
    messages.success(request, f"{person.get_username()}: {action.outcome}.")
    return HttpResponseRedirect(back)


@require_POST
async def usage_run_stop(request: HttpRequest, execution_id: int) -> HttpResponse:
    """Stop one run on its owner's behalf (asks for a reason; recorded)."""
    actor = await _staff_or_404(request)
    run = await aget_object_or_404(Execution, pk=execution_id)
    back = reverse("usage_user", args=[run.user_id])
    try:
        action = await admin_actions.admin_run_stop(actor=actor, execution_id=execution_id, reason=request.POST.get("reason"))
    except admin_actions.ActionRefused as refused:
        messages.error(request, refused.message)
        return HttpResponseRedirect(back)
    messages.success(request, action.outcome + ".")
    return HttpResponseRedirect(back)


urlpatterns = [
    path("admin/usage/", usage_page, name="usage"),
    path("admin/usage.csv", usage_csv, name="usage_csv"),
    path("admin/usage/users/<int:user_id>/", usage_user, name="usage_user"),
    path("admin/usage/users/<int:user_id>/kill/", usage_user_kill, name="usage_user_kill"),
    path("admin/usage/runs/<int:execution_id>/stop/", usage_run_stop, name="usage_run_stop"),
]
