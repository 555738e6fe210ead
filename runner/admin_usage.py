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
from runner.selectors.spreadsheet import CsvEcho, csv_safe
from runner.selectors.usage import DayCost, UsageReport, UsageRow
from runner.services import admin_actions

RUNS_PER_PAGE = 50
# The per-user table shows this many users a page (sorted over everyone; totals cover everyone).
USERS_PER_PAGE = 100
# The longest range one page or CSV covers (the chart has a bar per day).
MAX_RANGE_DAYS = 400

PRESETS = [("today", "Today"), ("7d", "Last 7 days"), ("month", "This month")]
# (key, label): the table's columns, on the page and in the CSV. Sortable where the key is in SORT_COLUMNS.
COLUMNS: list[tuple[str, str]] = [
    ("user", "User"),
    ("name", "Name"),
    ("email", "Email"),
    ("classes", "Classes"),
    ("runs", "Runs"),
    ("exec_s", "Exec time"),
    ("sandbox_s", "Sandbox time"),
    ("e2b_usd", "E2B $"),
    ("local_usd", "Local $"),
    ("usd", "Total $"),
    ("errors", "Errors"),
    ("timeouts", "Timeouts"),
    ("killed", "Stopped by admin or budget"),
    ("last_active", "Last active"),
    ("budget_pct", "% of budget (month)"),
]
# The CSV's header for the two duration columns: exact seconds there.
CSV_LABELS = {"exec_s": "Exec s", "sandbox_s": "Sandbox s"}
CHART_MEASURES = [("usd", "Cost"), ("hours", "Sandbox-hours")]


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
        return RangeChoice(
            default_start, default_end, "7d",
            f"“From” ({start.isoformat()}) is after “to” ({end.isoformat()}): pick a From date on or before the To date. Showing the last 7 days.",
        )
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


def duration_text(seconds: float) -> str:
    """Seconds as an admin reads them at a glance: "125 h 32 min", "7 min", "45 s"."""
    whole = int(seconds)
    hours, minutes = whole // 3600, whole % 3600 // 60
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{whole} s"


@dataclass(frozen=True)
class Cell:
    """One table cell: `text` on the page (with `title` on hover) and `csv` in the CSV."""

    text: str
    csv: str
    title: str = ""


def _plain(text: str) -> Cell:
    return Cell(text, text)


def usage_cells(row: UsageRow, classes: list[str] | None = None) -> list[Cell]:
    """One table row as shown on the page and written to the CSV: the same figures, durations
    in hours and minutes on the page (exact seconds on hover) and in exact seconds in the CSV."""
    pct = row.budget_pct
    exec_exact, sandbox_exact = f"{row.exec_s:.1f}", f"{round(row.sandbox_s)}"
    return [
        _plain(row.username),
        _plain(row.full_name),
        _plain(row.email),
        _plain(", ".join(classes or [])),
        _plain(str(row.runs)),
        Cell(duration_text(row.exec_s), exec_exact, f"{exec_exact} s"),
        Cell(duration_text(row.sandbox_s), sandbox_exact, f"{sandbox_exact} s"),
        _plain(f"{usage_selectors.round_cents(row.e2b_usd)}"),
        _plain(f"{usage_selectors.round_cents(row.local_usd)}"),
        _plain(f"{usage_selectors.round_cents(row.usd)}"),
        _plain(str(row.errors)),
        _plain(str(row.timeouts)),
        _plain(str(row.killed)),
        _plain(_when(row.last_active)),
        _plain("" if pct is None else f"{pct}%"),
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
    max_usd: str  # the top of the scale, as its label reads ("3.00" dollars or "12.5" hours)
    baseline_y: float
    measure: str = "usd"

    @property
    def max_label(self) -> str:
        return f"${self.max_usd}" if self.measure == "usd" else f"{self.max_usd} h"

    @property
    def zero_label(self) -> str:
        return "$0" if self.measure == "usd" else "0 h"


def cost_chart(days: list[DayCost], *, width: int = 720, height: int = 220, measure: str = "usd") -> Chart:
    """A stacked bar per day (E2B below, local above), scaled to the biggest day: cost in $
    (`measure="usd"`) or sandbox-hours (`"hours"`)."""
    left, bottom, top = 48.0, 24.0, 12.0
    plot_h = height - bottom - top
    slot = (width - left - 8) / max(1, len(days))

    def parts(day: DayCost) -> tuple[tuple[str, float], tuple[str, float]]:
        if measure == "hours":
            return ("e2b", day.e2b_s / 3600), ("local", day.local_s / 3600)
        return ("e2b", day.e2b_usd), ("local", day.local_usd)

    def shown(value: float) -> str:
        return f"${usage_selectors.round_cents(value)}" if measure == "usd" else f"{value:.1f} h"

    peak_value = max((sum(v for _b, v in parts(d)) for d in days), default=0.0)
    peak = peak_value or 1.0
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    every = max(1, len(days) // 10)
    for i, day in enumerate(days):
        x = left + i * slot + slot * 0.15
        base = height - bottom
        for backend, value in parts(day):
            h = plot_h * value / peak
            if h > 0:
                bars.append(Bar(round(x, 1), round(base - h, 1), round(slot * 0.7, 1), round(h, 1), backend,
                                f"{day.day:%Y-%m-%d} {backend}: {shown(value)}"))
                base -= h
        if i % every == 0:
            labels.append((round(x + slot * 0.35, 1), f"{day.day:%m-%d}"))
    top_label = f"{usage_selectors.round_cents(peak_value)}" if measure == "usd" else f"{peak_value:.1f}"
    return Chart(width, height, bars, labels, top_label, height - bottom, measure)


def chart_measure(request: HttpRequest, days: list[DayCost]) -> str:
    """`?chart=usd|hours`; by default cost, or sandbox-hours when the range cost nothing (a local
    price of 0) but sandboxes ran, so the chart is never an empty "$0.00"."""
    asked = request.GET.get("chart", "")
    if asked in ("usd", "hours"):
        return asked
    costless = not any(d.usd > 0 for d in days) and any(d.e2b_s + d.local_s > 0 for d in days)
    return "hours" if costless else "usd"


def _headers(choice: RangeChoice, sort: str, descending: bool, **extra: Any) -> list[dict[str, Any]]:
    headers = []
    for key, label in COLUMNS:
        active = key == sort
        next_dir = "asc" if active and descending else "desc"
        sortable = key in usage_selectors.SORT_COLUMNS
        headers.append({
            "key": key, "label": label, "active": active, "descending": descending,
            "url": "?" + choice.query(sort=key, dir=next_dir, **extra) if sortable else "",
        })
    return headers


# --- views --------------------------------------------------------------------------------------


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "time_zone": settings.TIME_ZONE, **extra}


def _class_row(c: usage_selectors.ClassUsage) -> dict[str, Any]:
    """A per-class table row: durations in hours and minutes, exact seconds for the hover."""
    return {
        "c": c, "exec": Cell(duration_text(c.total.exec_s), f"{c.total.exec_s:.1f}", f"{c.total.exec_s:.1f} s"),
        "sandbox": Cell(duration_text(c.total.sandbox_s), f"{round(c.total.sandbox_s)}", f"{round(c.total.sandbox_s)} s"),
        "per_student": Cell(duration_text(c.per_student_sandbox_s), f"{round(c.per_student_sandbox_s)}", f"{round(c.per_student_sandbox_s)} s"),
        "usd": usage_selectors.round_cents(c.total.usd), "per_student_usd": usage_selectors.round_cents(c.per_student_usd),
    }


def _classroom_from(request: HttpRequest, by_class: dict[int, tuple[str, set[int]]]) -> int | None:
    value = request.GET.get("classroom", "")
    return int(value) if value.isdigit() and int(value) in by_class else None


@require_GET
@staff_only
def usage_page(request: HttpRequest) -> HttpResponse:
    choice = _range_from(request)
    sort, descending = _sort_from(request)
    report: UsageReport = usage_selectors.usage_report(start=choice.start, end=choice.end, sort=sort, descending=descending)
    classes_of, by_class = usage_selectors.usage_class_memberships()
    classroom_id = _classroom_from(request, by_class)
    rows, totals = report.rows, report.totals
    extra: dict[str, Any] = {}
    if classroom_id is not None:  # one class's students, per student, with the class's total
        members = by_class[classroom_id][1]
        rows = [row for row in rows if row.user_id in members]
        totals = usage_selectors.usage_total(rows, label=f"Total: {by_class[classroom_id][0]}")
        extra["classroom"] = classroom_id
    page = Paginator(rows, USERS_PER_PAGE).get_page(request.GET.get("page"))
    measure = chart_measure(request, report.days)
    order = {"sort": sort, "dir": "desc" if descending else "asc", **extra}
    return render(request, "admin/runner/usage.html", _context(
        request, title="Usage, cost and budgets", choice=choice, report=report,
        headers=_headers(choice, sort, descending, **extra), page=page, page_query=choice.query(**order),
        rows=[(row, usage_cells(row, classes_of.get(row.user_id))) for row in page], totals=usage_cells(totals),
        chart=cost_chart(report.days, measure=measure), csv_query=choice.query(**order),
        chart_links=[(key, label, key == measure, "?" + choice.query(**order, chart=key)) for key, label in CHART_MEASURES],
        classes=[_class_row(c) for c in usage_selectors.usage_by_class(report, by_class)], classroom_id=classroom_id,
        classroom_name=by_class[classroom_id][0] if classroom_id is not None else "",
        alerts=usage_selectors.budget_alerts_recent(), actions=usage_selectors.admin_actions_recent(),
        presets=PRESETS,
    ))


@require_GET
@staff_only
def usage_csv(request: HttpRequest) -> StreamingHttpResponse:
    """The table as CSV: the header row first; the range and its time zone are in the file name."""
    choice = _range_from(request)
    sort, descending = _sort_from(request)
    report = usage_selectors.usage_report(start=choice.start, end=choice.end, sort=sort, descending=descending, with_days=False)
    classes_of, by_class = usage_selectors.usage_class_memberships()
    classroom_id = _classroom_from(request, by_class)
    rows, totals = report.rows, report.totals
    if classroom_id is not None:
        rows = [row for row in rows if row.user_id in by_class[classroom_id][1]]
        totals = usage_selectors.usage_total(rows, label=f"Total: {by_class[classroom_id][0]}")
    writer = csv.writer(CsvEcho())

    def lines() -> Iterator[str]:
        yield writer.writerow([CSV_LABELS.get(key, label) for key, label in COLUMNS])
        for row in rows:
            yield writer.writerow(csv_safe([cell.csv for cell in usage_cells(row, classes_of.get(row.user_id))]))
        yield writer.writerow(csv_safe([cell.csv for cell in usage_cells(totals)]))

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
        request, title=f"Usage of {_person(person)}", person=person, choice=choice, status=status, presets=PRESETS,
        statuses=Execution.Status.choices, page=page, run_rows=run_rows,
        page_query=choice.query(**({"status": status} if status else {})),
        days=[
            (d, Cell(duration_text(d.exec_s), f"{d.exec_s:.1f}", f"{d.exec_s:.1f} s"),
             Cell(duration_text(d.sandbox_s), f"{round(d.sandbox_s)}", f"{round(d.sandbox_s)} s"))
            for d in usage_selectors.usage_by_user_day(user_id=user_id, start=choice.start, end=choice.end)
        ],
        limits=usage_selectors.usage_limits_for_user(user_id=user_id), quota=usage_selectors.usage_quota_status(user_id=user_id),
        leases=usage_selectors.leases_open_for_user(user_id=user_id),
        actions=usage_selectors.admin_actions_recent(target_user_id=user_id, limit=50),
        back_query=urlencode([(key, request.GET[key]) for key in BACK_KEYS if request.GET.get(key)]),
        person_text=_person(person),
    ))


def _person(user: Any) -> str:
    """"Alice Liddell <alice@example.org> (alice)" where the name and email are set, else the username."""
    name, email = user.get_full_name().strip(), (user.email or "").strip()
    parts = [p for p in (name, f"<{email}>" if email else "") if p]
    return f"{' '.join(parts)} ({user.get_username()})" if parts else user.get_username()


# The query keys an action's redirect carries back, so the page keeps its range, filter and page.
BACK_KEYS = ("preset", "start", "end", "status", "page", "sort", "dir", "classroom")


def _back(request: HttpRequest, url: str) -> str:
    query = urlencode([(key, request.GET[key]) for key in BACK_KEYS if request.GET.get(key)])
    return f"{url}?{query}" if query else url


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
    back = _back(request, reverse("usage_user", args=[user_id]))
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
    back = _back(request, reverse("usage_user", args=[run.user_id]))
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
