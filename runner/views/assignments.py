"""Assignments: the student's list and page (start, check my work, hand in), the teacher's page of
one assignment (a grid of students, the edit form), a hand-in read-only with its grade form, the
grades CSV, and the class's export zip.

An assignment, submission or class id the user may not see answers the same 404 as an unknown one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runner import selectors, services
from runner.models import LANGUAGE_CHOICES, Assignment, Submission
from runner.views.auth import AuthenticatedRequest

NOT_FOUND = "No such assignment."
NO_SUCH_SUBMISSION = "No such submission."
NO_SUCH_CLASSROOM = "No such classroom."


def _student_or_404(request: AuthenticatedRequest, assignment_id: int) -> Assignment:
    assignment = selectors.assignment_for_student(user=request.user, assignment_id=assignment_id)
    if assignment is None:
        raise Http404(NOT_FOUND)
    return assignment


def _teacher_or_404(request: AuthenticatedRequest, assignment_id: int) -> Assignment:
    assignment = selectors.assignment_for_teacher(user=request.user, assignment_id=assignment_id)
    if assignment is None:
        raise Http404(NOT_FOUND)
    return assignment


def _wants_json(request: AuthenticatedRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _check_json(submission: Submission | None) -> dict[str, Any] | None:
    if submission is None:
        return None
    return {
        "id": submission.pk, "hand_in": submission.is_hand_in, "status": submission.checks_status,
        "passed": submission.checks_passed, "total": submission.checks_total, "results": submission.check_results,
        "message": submission.checks_message, "created_at": submission.created_at.isoformat(),
    }


async def _streamed(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    """A sync generator (which reads the database) served chunk by chunk under ASGI: Django would
    first read a sync iterator to the end, holding the whole zip in memory."""
    end = object()

    def step() -> Any:
        return next(chunks, end)

    while True:
        chunk = await sync_to_async(step, thread_sensitive=True)()
        if chunk is end:
            return
        yield chunk


# --- the student's side -----------------------------------------------------------------------------


@login_required
@require_GET
def assignments(request: AuthenticatedRequest) -> HttpResponse:
    """The assignments of the user's classes, soonest due first, with their own state."""
    return render(request, "runner/assignments.html", {"rows": selectors.assignments_for_student(user=request.user)})


@login_required
@require_GET
def assignment_detail(request: AuthenticatedRequest, assignment_id: int) -> HttpResponse:
    """A student's page of one assignment: instructions, due date, their state, the last checks'
    results, and their grade and feedback once given."""
    assignment = _student_or_404(request, assignment_id)
    status = selectors.assignment_student_state(assignment=assignment, student=request.user)
    context = {
        "assignment": assignment,
        "instructions_html": selectors.assignment_instructions_html(assignment=assignment),
        "due_text": selectors.due_text(assignment.due_at),
        "status": status,
        "checks_count": services.checks_count(source=assignment.checks),
        "status_url": reverse("assignment_status", args=[assignment.pk]),
        "is_past_due": assignment.is_late_at(timezone.now()),
        "check_rows": selectors.check_rows(submission=status.last_check, reveal=assignment.show_checks),
    }
    return render(request, "runner/assignment.html", context)


@login_required
@require_GET
def assignment_status(request: AuthenticatedRequest, assignment_id: int) -> JsonResponse:
    """`{"state", "check": {...} | null}`: the page polls it while checks are pending."""
    assignment = _student_or_404(request, assignment_id)
    status = selectors.assignment_student_state(assignment=assignment, student=request.user)
    return JsonResponse({"state": status.state, "check": _check_json(status.last_check)})


@login_required
@require_POST
def assignment_start(request: AuthenticatedRequest, assignment_id: int) -> HttpResponse:
    """Make (once) or return the student's session for the assignment; redirects to it."""
    assignment = _student_or_404(request, assignment_id)
    session, problem = async_to_sync(services.assignment_start)(assignment=assignment, student=request.user)
    if problem:
        messages.warning(request, problem)
    return redirect("session_detail", session_id=session.id)


def _submit(request: AuthenticatedRequest, assignment_id: int, *, is_hand_in: bool) -> HttpResponse:
    assignment = _student_or_404(request, assignment_id)
    try:
        submission = async_to_sync(services.assignment_hand_in)(assignment=assignment, student=request.user, is_hand_in=is_hand_in)
    except services.HandInRefused as refused:
        if _wants_json(request):
            return JsonResponse({"error": refused.message}, status=429 if refused.rate_limited else 409)
        messages.error(request, refused.message)
        return redirect("assignment_detail", assignment_id=assignment.pk)
    if _wants_json(request):
        return JsonResponse({"check": _check_json(submission)}, status=201)
    if is_hand_in:
        late = " It is past the due date, so it is marked late." if submission.late else ""
        messages.success(request, f"Handed in.{late} You can hand in again until your teacher grades it; the last one counts.")
    else:
        messages.success(request, "Checking your work in a fresh sandbox; the result appears here in a moment.")
    return redirect("assignment_detail", assignment_id=assignment.pk)


@login_required
@require_POST
def assignment_hand_in(request: AuthenticatedRequest, assignment_id: int) -> HttpResponse:
    """Hand in: a snapshot of the session's runs and files, checked in a fresh sandbox."""
    return _submit(request, assignment_id, is_hand_in=True)


@login_required
@require_POST
def assignment_check(request: AuthenticatedRequest, assignment_id: int) -> HttpResponse:
    """"Check my work": the hand-in's checks, without handing in."""
    return _submit(request, assignment_id, is_hand_in=False)


# --- the teacher's side -----------------------------------------------------------------------------


def _due_at(raw: str) -> dt.datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError("The due date must be a date and time like 2026-01-31T17:00.") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _fields(request: AuthenticatedRequest) -> services.AssignmentFields:
    post = request.POST
    points_raw = post.get("points", "10").strip() or "10"
    if not points_raw.isdigit():
        raise ValidationError("Points must be a whole number.")
    return services.AssignmentFields(
        title=post.get("title", ""), instructions=post.get("instructions", ""), language=post.get("language", "python"),
        starter_code=post.get("starter_code", ""), due_at=_due_at(post.get("due_at", "")), checks=post.get("checks", ""),
        show_checks=post.get("show_checks") == "1", points=int(points_raw),
    )


def _uploads(request: AuthenticatedRequest) -> list[services.Upload]:
    return [services.Upload(name=f.name or "", data=f.read()) for f in request.FILES.getlist("files")]


@login_required
@require_POST
def assignment_new(request: AuthenticatedRequest, classroom_id: int) -> HttpResponse:
    """Create an assignment in a class the user teaches."""
    classroom = selectors.classroom_for_teacher(user=request.user, classroom_id=classroom_id)
    if classroom is None:
        raise Http404(NO_SUCH_CLASSROOM)
    try:
        assignment = services.assignment_save(classroom=classroom, assignment=None, fields=_fields(request), uploads=_uploads(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("classroom_detail", classroom_id=classroom.pk)
    messages.success(request, f"Assignment “{assignment.title}” created; the class's students see it now.")
    return redirect("teach_assignment", assignment_id=assignment.pk)


@login_required
@require_GET
def teach_assignment(request: AuthenticatedRequest, assignment_id: int) -> HttpResponse:
    """The teacher's page of one assignment: a grid of students (state, checks, score) and the edit form."""
    assignment = _teacher_or_404(request, assignment_id)
    context = {
        "assignment": assignment,
        "grid": selectors.assignment_grid(assignment=assignment),
        "instructions_html": selectors.assignment_instructions_html(assignment=assignment),
        "due_text": selectors.due_text(assignment.due_at),
        "due_value": timezone.localtime(assignment.due_at).strftime("%Y-%m-%dT%H:%M") if assignment.due_at else "",
        "languages": LANGUAGE_CHOICES,
        "files": list(assignment.files.values("name", "size_bytes")),
        "checks_count": services.checks_count(source=assignment.checks),
    }
    return render(request, "runner/teach_assignment.html", context)


@login_required
@require_POST
def assignment_edit(request: AuthenticatedRequest, assignment_id: int) -> HttpResponse:
    assignment = _teacher_or_404(request, assignment_id)
    try:
        services.assignment_save(
            classroom=assignment.classroom, assignment=assignment, fields=_fields(request),
            uploads=_uploads(request), remove_files=request.POST.getlist("remove_file"),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Assignment saved.")
    return redirect("teach_assignment", assignment_id=assignment.pk)


def _submission_or_404(request: AuthenticatedRequest, submission_id: int) -> Submission:
    submission = selectors.submission_for_teacher(user=request.user, submission_id=submission_id)
    if submission is None:
        raise Http404(NO_SUCH_SUBMISSION)
    return submission


@login_required
@require_GET
def submission_detail(request: AuthenticatedRequest, submission_id: int) -> HttpResponse:
    """A hand-in, read-only: its runs and files as handed in, the checks' results, the grade form."""
    submission = _submission_or_404(request, submission_id)
    context = {
        "submission": submission,
        "assignment": submission.assignment,
        "student_name": selectors.author_name(submission.student),
        "files": selectors.submission_files(submission=submission),
        "check_rows": selectors.check_rows(submission=submission, reveal=True),
    }
    return render(request, "runner/submission.html", context)


@login_required
@require_POST
def submission_grade(request: AuthenticatedRequest, submission_id: int) -> HttpResponse:
    """Score and feedback for a hand-in; the student sees both on the assignment's page."""
    submission = _submission_or_404(request, submission_id)
    try:
        services.submission_grade(submission=submission, score=request.POST.get("score", ""), feedback=request.POST.get("feedback", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Grade saved; the student sees it.")
    return redirect("submission_detail", submission_id=submission.pk)


@login_required
@require_GET
def assignment_grades_csv(request: AuthenticatedRequest, assignment_id: int) -> StreamingHttpResponse:
    """grades.csv: header row first, one row per current student (their last hand-in counts)."""
    assignment = _teacher_or_404(request, assignment_id)
    response = StreamingHttpResponse(_streamed(selectors.assignment_grades_lines(assignment=assignment)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="grades-assignment-{assignment.pk}.csv"'
    return response


@login_required
@require_GET
def classroom_export(request: AuthenticatedRequest, classroom_id: int) -> StreamingHttpResponse:
    """The class's work as a zip, streamed: notebooks, hand-ins and grades."""
    classroom = selectors.classroom_for_teacher(user=request.user, classroom_id=classroom_id)
    if classroom is None:
        raise Http404(NO_SUCH_CLASSROOM)
    response = StreamingHttpResponse(_streamed(selectors.classroom_export_chunks(classroom=classroom)), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="classroom-{classroom.pk}-{timezone.localdate():%Y-%m-%d}.zip"'
    return response
