"""Classrooms: `/teach/` (a teacher's classes, rosters and runs), creating a class, its join code,
and joining by code. Nothing here needs the Django admin.

A classroom id the user doesn't teach answers the same 404 as an unknown one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from runner import selectors, services
from runner.models import LANGUAGE_CHOICES, Classroom
from runner.views.auth import AuthenticatedRequest

NOT_FOUND = "No such classroom."


def _taught_or_404(request: AuthenticatedRequest, classroom_id: int) -> Classroom:
    classroom = selectors.classroom_for_teacher(user=request.user, classroom_id=classroom_id)
    if classroom is None:
        raise Http404(NOT_FOUND)
    return classroom


def _join_url(request: HttpRequest, code: str) -> str:
    return request.build_absolute_uri(reverse("join_code", args=[code]))


@login_required
@require_GET
def teach(request: AuthenticatedRequest) -> HttpResponse:
    """The teacher's classrooms, one line each with its counts and links (rosters are on the class pages)."""
    return render(request, "runner/teach.html", {"classrooms": selectors.classrooms_overview(user=request.user)})


@login_required
@require_POST
def classroom_new(request: AuthenticatedRequest) -> HttpResponse:
    """Create a classroom taught by the user (anyone may: that is how one becomes a teacher)."""
    try:
        classroom = services.classroom_create(teacher=request.user, name=request.POST.get("name", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("teach")
    return redirect("classroom_detail", classroom_id=classroom.pk)


def _filters(request: HttpRequest) -> tuple[selectors.RunFilters, list[str]]:
    problems: list[str] = []

    def date(name: str) -> dt.date | None:
        raw = request.GET.get(name, "").strip()
        if not raw:
            return None
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            problems.append(f"{name.replace('_', ' ')} must be a date like 2026-01-31.")
            return None

    student_raw = request.GET.get("student", "").strip()
    student_id = int(student_raw) if student_raw.isdigit() else None
    language = request.GET.get("language", "")
    filters = selectors.RunFilters(
        student_id=student_id,
        date_from=date("date_from"),
        date_to=date("date_to"),
        language=language if language in dict(LANGUAGE_CHOICES) else "",
        failed_only=request.GET.get("failed") == "1",
        query=request.GET.get("q", "").strip()[:200],
    )
    return filters, problems


ROSTER_COLUMNS = [("name", "Student"), ("sessions", "Sessions"), ("runs", "Runs"), ("error_rate", "Error rate"),
                  ("running_time", "Time running"), ("last_run", "Last run")]
RUN_COLUMNS = [("when", "When"), ("student", "Student"), ("session", "Session"), ("language", "Language"), ("status", "Status")]
ROSTER_PAGE = 100


@dataclass(frozen=True)
class Column:
    label: str
    url: str  # this page sorted by the column (the other way round when it is the current sort)
    aria_sort: str  # "ascending", "descending" or "none"


@dataclass(frozen=True)
class Pager:
    """ "200 of 516": which rows of how many this page shows, and links to the pages either side."""

    first: int
    last: int
    total: int
    previous_url: str
    next_url: str


def _url_with(request: HttpRequest, **changes: str) -> str:
    query = request.GET.copy()
    for name, value in changes.items():
        if value:
            query[name] = value
        else:
            query.pop(name, None)
    encoded = query.urlencode()
    return f"{request.path}?{encoded}" if encoded else request.path


def _sort(request: HttpRequest, param: str, allowed: Sequence[str], default: str) -> str:
    raw = request.GET.get(param, "")
    return raw if raw.lstrip("-") in allowed else default


def _columns(request: HttpRequest, *, param: str, page_param: str, current: str, columns: Sequence[tuple[str, str]],
             descending_first: Sequence[str]) -> list[Column]:
    """Sortable headers: a click sorts by the column (numbers and times biggest first), a second
    click turns it round; sorting goes back to the first page."""
    headers = []
    for key, label in columns:
        if current.lstrip("-") == key:
            aria = "descending" if current.startswith("-") else "ascending"
            target = key if current.startswith("-") else f"-{key}"
        else:
            aria = "none"
            target = f"-{key}" if key in descending_first else key
        headers.append(Column(label, _url_with(request, **{param: target, page_param: ""}), aria))
    return headers


def _pager(request: HttpRequest, *, param: str, total: int, size: int) -> tuple[int, Pager]:
    raw = request.GET.get(param, "")
    pages = max(1, -(-total // size))
    number = min(max(int(raw), 1), pages) if raw.isdigit() else 1
    offset = (number - 1) * size
    return offset, Pager(
        first=offset + 1 if total else 0,
        last=min(offset + size, total),
        total=total,
        previous_url=_url_with(request, **{param: str(number - 1) if number > 2 else ""}) if number > 1 else "",
        next_url=_url_with(request, **{param: str(number + 1)}) if number < pages else "",
    )


GRID_COLUMNS = [("name", "Student"), ("state", "State"), ("last_run", "Last run"), ("failures", "Failures in a row"),
                ("error", "Last error"), ("progress", "Assignments"), ("stuck", "Stuck")]


def _grid_json(tiles: Sequence[selectors.GridTile]) -> dict[str, object]:
    students = [
        {**tile.as_json(), "watch_url": reverse("session_detail", args=[tile.session_id]) if tile.session_id else ""}
        for tile in tiles
    ]
    return {"students": students, "stuck": sum(tile.stuck for tile in tiles)}


def _grid_context(classroom: Classroom) -> dict[str, object]:
    grid = selectors.classroom_grid(classroom=classroom)
    return {
        "grid": grid,
        "grid_data": _grid_json(grid),  # the script's first rows, so it needn't ask again on load
        "grid_stuck": sum(tile.stuck for tile in grid),
        "grid_url": reverse("classroom_grid", args=[classroom.pk]),
        "grid_columns": GRID_COLUMNS,
        "stuck_failures": settings.CLASS_STUCK_FAILURES,
        "stuck_idle_min": f"{settings.CLASS_STUCK_IDLE_S / 60:g}",
        "stuck_within_min": f"{settings.CLASS_STUCK_WITHIN_S / 60:g}",
    }


@login_required
@require_GET
def classroom_detail(request: AuthenticatedRequest, classroom_id: int) -> HttpResponse:
    """One classroom: join code, roster, and its runs filtered by student, date, language, failure,
    or searched by code and output text. The roster (over the same dates) and the runs sort by any
    column (`roster_sort`, `sort`; "-column" descending) and come in pages (`roster_page`, `page`)."""
    classroom = _taught_or_404(request, classroom_id)
    filters, problems = _filters(request)
    roster_sort = _sort(request, "roster_sort", selectors.ROSTER_SORTS, "name")
    run_sort = _sort(request, "sort", list(selectors.RUN_SORTS), "-when")
    summary = selectors.classroom_summary(classroom=classroom, filters=filters, sort=roster_sort)
    roster_offset, roster_pager = _pager(request, param="roster_page", total=len(summary.students), size=ROSTER_PAGE)
    run_offset, run_pager = _pager(
        request, param="page", total=selectors.classroom_runs_count(classroom=classroom, filters=filters), size=selectors.RUNS_LIST_MAX,
    )
    numeric = ("sessions", "runs", "error_rate", "running_time", "last_run", "when")
    context = {
        "summary": summary,
        "roster": summary.students[roster_offset:roster_offset + ROSTER_PAGE],
        "roster_pager": roster_pager,
        "roster_columns": _columns(request, param="roster_sort", page_param="roster_page", current=roster_sort,
                                   columns=ROSTER_COLUMNS, descending_first=numeric),
        "run_columns": _columns(request, param="sort", page_param="page", current=run_sort, columns=RUN_COLUMNS,
                                descending_first=numeric),
        "run_pager": run_pager,
        "code_column": ["Code"],
        "join_url": _join_url(request, classroom.join_code),
        "filters": filters,
        "problems": problems,
        "languages": LANGUAGE_CHOICES,
        "runs": selectors.classroom_runs(classroom=classroom, filters=filters, offset=run_offset, sort=run_sort),
        "student_sessions": (
            selectors.classroom_student_sessions(classroom=classroom, student_id=filters.student_id)
            if filters.student_id is not None else []
        ),
        "live_url": reverse("classroom_live", args=[classroom.pk]),
        **_grid_context(classroom),
        "assignments": selectors.assignments_for_classroom(classroom=classroom),
    }
    return render(request, "runner/classroom.html", context)


@login_required
@require_GET
def classroom_live(request: AuthenticatedRequest, classroom_id: int) -> JsonResponse:
    """The roster's live dots: `{"running": [student ids with a run going]}` (the page polls it)."""
    classroom = _taught_or_404(request, classroom_id)
    return JsonResponse({"running": selectors.classroom_live_students(classroom=classroom)})


@login_required
@require_GET
def classroom_grid(request: AuthenticatedRequest, classroom_id: int) -> JsonResponse:
    """The live grid (the class page polls it): `{"students": [tile, ...], "stuck": n}`, one tile
    per current student by name (`selectors.GridTile.as_json` plus `watch_url`, their newest class session)."""
    classroom = _taught_or_404(request, classroom_id)
    return JsonResponse(_grid_json(selectors.classroom_grid(classroom=classroom)))


@login_required
@require_POST
def classroom_code_regenerate(request: AuthenticatedRequest, classroom_id: int) -> HttpResponse:
    """A new join code; the old one stops working."""
    classroom = _taught_or_404(request, classroom_id)
    services.classroom_code_regenerate(classroom=classroom)
    messages.success(request, "New join code made; the old one no longer works.")
    return redirect("classroom_detail", classroom_id=classroom.pk)


@login_required
@require_POST
def classroom_student_remove(request: AuthenticatedRequest, classroom_id: int, student_id: int) -> HttpResponse:
    """Take a student off the roster; the class's teachers stop seeing their sessions at once."""
    classroom = _taught_or_404(request, classroom_id)
    if not services.classroom_student_remove(classroom=classroom, student_id=student_id):
        raise Http404("No such student in this classroom.")
    messages.success(request, "Student removed from the classroom.")
    return redirect("classroom_detail", classroom_id=classroom.pk)


@login_required
@require_POST
def classroom_student_remove_picked(request: AuthenticatedRequest, classroom_id: int) -> HttpResponse:
    """The class page's one "Remove a student" form: POST `student` (an id on the roster)."""
    raw = request.POST.get("student", "").strip()
    if not raw.isdigit():
        _taught_or_404(request, classroom_id)  # an unknown class answers its 404 first
        raise Http404("No such student in this classroom.")
    return classroom_student_remove(request, classroom_id, int(raw))


@login_required
@require_POST
def classroom_leave(request: AuthenticatedRequest, classroom_id: int) -> HttpResponse:
    """The user leaves the classroom (as student and as teacher); access it gave ends at once."""
    classroom = selectors.classroom_for_member(user=request.user, classroom_id=classroom_id)
    if classroom is None:
        raise Http404(NOT_FOUND)
    services.classroom_leave(classroom=classroom, user=request.user)
    messages.success(request, f"You left {classroom.name}.")
    return redirect("teach" if selectors.user_teaches(user=request.user) else "join")


def _join_page(request: AuthenticatedRequest, *, code: str = "", error: str = "", status: int = 200) -> HttpResponse:
    context = {"code": code, "error": error, "joined": selectors.classrooms_joined(user=request.user)}
    return render(request, "runner/join.html", context, status=status)


def _join_post(request: AuthenticatedRequest, code: str) -> HttpResponse:
    try:
        classroom = services.classroom_join(user=request.user, code=code)
    except services.JoinRefused as refused:
        return _join_page(request, code=code, error=refused.message, status=429 if refused.rate_limited else 400)
    messages.success(request, f"You joined {classroom.name}. Its teachers see the sessions you put in it (pick the class when you start a session, or from a session's header) and comment on their runs.")
    return redirect("join")


@login_required
@require_http_methods(["GET", "POST"])
def join(request: AuthenticatedRequest) -> HttpResponse:
    """Enter a join code (POST `code`); the page also lists the classes the user attends."""
    if request.method == "POST":
        return _join_post(request, request.POST.get("code", ""))
    return _join_page(request)


@login_required
@require_http_methods(["GET", "POST"])
def join_code(request: AuthenticatedRequest, code: str) -> HttpResponse:
    """A shared join link. GET only shows the form filled in: joining is a POST, so a link or image
    planted elsewhere can't enrol anyone (which would open their sessions to that class's teachers)."""
    if request.method == "POST":
        return _join_post(request, code)
    return _join_page(request, code=code[:40])
